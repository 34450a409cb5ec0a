"""Rate limits (the ``limits`` library): per client IP, per account, per session, and a ceiling.

Login counts every attempt per IP, and *failures* per (account, IP) and per account, each over
several windows, so repeated guessing slows down step by step; an attacker spreading guesses over
many IPs can hold one account back for at most the longest account window (15 minutes by default),
never lock it for good. Counters live in memory, or in Redis (``KEYTURN_REDIS_URL``) so that every
instance shares them. The client IP comes from the socket unless the peer is a trusted proxy.

If Redis cannot be reached (within one second), the request answers 503: without its counters
keyturn would let brute force through, so it fails closed, like a database outage.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from ..config import Settings
from ..errors import InvalidCredentials, InvalidRequest, RateLimited, Unavailable
from ..users import normalize_username

__all__ = ["RateLimits", "client_ip"]

_AUDIT_ONCE = parse_many("1/minute")[0]
_log = logging.getLogger("keyturn.ratelimit")


class RateLimits:
    """The deployment's limits, checked against one shared counter storage."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        if settings.redis_url:
            # Bounded waits: an unreachable Redis is an outage answered at once, not a hang.
            storage = storage_from_string(
                f"async+{settings.redis_url}", wrap_exceptions=True, connect_timeout=1.0, stream_timeout=1.0
            )
        else:
            storage = storage_from_string("async+memory://", wrap_exceptions=True)
        self._limiter = MovingWindowRateLimiter(storage)
        self.login_ip = parse_many(settings.rate_limit_login_ip)
        self.login_failures = parse_many(settings.rate_limit_login_failures)
        self.account_failures = parse_many(settings.rate_limit_account_failures)
        self.register_ip = parse_many(settings.rate_limit_register_ip)
        self.refresh_session = parse_many(settings.rate_limit_refresh_session)
        self.ceiling = parse_many(settings.rate_limit_global)

    async def hit(self, items: Sequence[RateLimitItem], *key: str) -> None:
        """Count one request against every window; raise when one of them is full.

        Raises:
            RateLimited: with the seconds until the fullest window has room again.
        """
        async with _storage():
            await self._enforce(self._limiter.hit, items, key)

    async def check(self, items: Sequence[RateLimitItem], *key: str) -> None:
        """Raise if any window is already full, without counting this request."""
        async with _storage():
            await self._enforce(self._limiter.test, items, key)

    async def _enforce(
        self, allowed: Callable[..., Awaitable[bool]], items: Sequence[RateLimitItem], key: tuple[str, ...]
    ) -> None:
        if self.enabled:
            for item in items:
                if not await allowed(item, *key):
                    raise await self._refusal(item, key)

    async def count(self, items: Sequence[RateLimitItem], *key: str) -> None:
        """Count an event (a failed login) against every window, never raising."""
        if self.enabled:
            async with _storage():
                for item in items:
                    await self._limiter.hit(item, *key)

    @asynccontextmanager
    async def login_attempt(self, username: object, ip: str) -> AsyncIterator[None]:
        """Guard one login: every attempt counts per IP; a failure counts per (account, IP) and
        per account, and a full failure window refuses further attempts until it has room."""
        account = _account_key(username)
        await self.hit(self.login_ip, "login-ip", ip)
        await self.check(self.login_failures, "login-fail", account, ip)
        await self.check(self.account_failures, "account-fail", account)
        try:
            yield
        except InvalidCredentials:
            await self.count(self.login_failures, "login-fail", account, ip)
            await self.count(self.account_failures, "account-fail", account)
            raise

    async def first_refusal(self, error: RateLimited, ip: str) -> bool:
        """Whether this refusal is the first of its kind from ``ip`` this minute (worth an audit row:
        a flood of 429s must not become a flood of database writes)."""
        async with _storage():
            return await self._limiter.hit(_AUDIT_ONCE, "audited", error.kind, ip)

    async def _refusal(self, item: RateLimitItem, key: tuple[str, ...]) -> RateLimited:
        stats = await self._limiter.get_window_stats(item, *key)
        return RateLimited(math.ceil(stats.reset_time - time.time()), limit=str(item), kind=key[0])


@asynccontextmanager
async def _storage() -> AsyncIterator[None]:
    """Turn a counter-storage failure into ``Unavailable`` (503), never a 500."""
    try:
        yield
    except StorageError as exc:
        _log.warning("rate-limit storage unavailable: %s", type(exc.storage_error).__name__)
        raise Unavailable() from exc


def client_ip(request: Request, trusted: Sequence[str]) -> str:
    """The client's address: the socket peer, or, behind trusted proxies, the first untrusted
    address from the right of ``X-Forwarded-For`` (anyone can write the rest of that header)."""
    peer = request.client.host if request.client else ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _account_key(username: object) -> str:
    try:
        return normalize_username(username)[1]
    except InvalidRequest:
        return "-invalid-"


def _is_trusted(address: str, trusted: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)
