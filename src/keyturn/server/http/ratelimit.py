"""Rate limits (``limits``' moving windows): per client IP, per account, per session, and a ceiling.

Login counts every attempt per IP, and *failures* per (account, IP) and per account, each over
several windows, so repeated guessing slows down step by step; an attacker spreading guesses over
many IPs can hold one account back for at most the longest account window (15 minutes by default),
never lock it for good. A password check (a sign-in, or the current password of a password
change) is charged to the failure windows *before* it runs, atomically (one moving-window
``hit`` per window), and refunded when it succeeds: concurrent guesses cannot all pass a check
that their own failures have not yet reached. Counters live in memory (``_windows``), or in Redis
(``KEYTURN_REDIS_URL``, ``limits``' storage) so that every instance shares them. The client IP
comes from the socket unless the peer is a trusted proxy.

If Redis cannot be reached (within one second), the request answers 503: without its counters
keyturn would let brute force through, so it fails closed, like a database outage.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, cast

from fastapi import Request
from limits import RateLimitItem, WindowStats, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from ...core.errors import InvalidCredentials, InvalidRequest, RateLimited, Unavailable
from ...core.users import normalize_username
from ..config import Settings
from ._windows import MovingWindows

__all__ = ["RateLimits", "client_ip"]

_AUDIT_ONCE = parse_many("1/minute")[0]
_log = logging.getLogger("keyturn.ratelimit")


class RateLimits:
    """The deployment's limits, checked against one shared counter storage."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self._limiter: _InRedis | MovingWindows
        if settings.redis_url:
            # Bounded waits: an unreachable Redis is an outage answered at once, not a hang.
            storage = storage_from_string(
                f"async+{settings.redis_url}", wrap_exceptions=True, connect_timeout=1.0, stream_timeout=1.0
            )
            assert isinstance(storage, RedisStorage)  # the settings take only redis URLs
            self._limiter = _InRedis(storage)
        else:
            self._limiter = MovingWindows()
        self.login_ip = parse_many(settings.rate_limit_login_ip)
        self.login_failures = parse_many(settings.rate_limit_login_failures)
        self.account_failures = parse_many(settings.rate_limit_account_failures)
        self.register_ip = parse_many(settings.rate_limit_register_ip)
        self.refresh_session = parse_many(settings.rate_limit_refresh_session)
        self.client_grant = parse_many(settings.rate_limit_client_grant)
        self.recovery_address = parse_many(settings.rate_limit_recovery_address)
        self.recovery_ip = parse_many(settings.rate_limit_recovery_ip)
        self.ceiling = parse_many(settings.rate_limit_global)

    async def close(self) -> None:
        """Let go of the connections to Redis (the app's shutdown); the memory storage holds none."""
        if isinstance(self._limiter, _InRedis):
            await self._limiter.close()

    async def hit(self, items: Sequence[RateLimitItem], *key: str) -> None:
        """Count one request against every window; raise when one of them is full.

        Raises:
            RateLimited: with the seconds until the fullest window has room again.
        """
        if not self.enabled:
            return
        async with _STORAGE_ERRORS:
            for item in items:
                if not await self._limiter.hit(item, *key):
                    raise await self._refusal(item, key)

    @asynccontextmanager
    async def login_attempt(self, username: object, ip: str) -> AsyncIterator[None]:
        """Guard one login: every attempt counts per IP, and the password check is charged to the
        failure windows before it runs (see ``password_check``)."""
        await self.hit(self.login_ip, "login-ip", ip)
        async with self.password_check(_account_key(username), ip):
            yield

    @asynccontextmanager
    async def password_check(self, account: str, ip: str) -> AsyncIterator[None]:
        """Guard one password check of ``account`` (its normalized key) from ``ip``: charged to the
        failure windows per (account, IP) and per account before it runs; a full window refuses
        it. The charge stays when the check fails (``InvalidCredentials``) and is refunded
        otherwise (a success, or a request that failed before any password was checked).

        Raises:
            RateLimited: a failure window is full; nothing is left charged.
        """
        charged = await self._charge(
            [(item, ("login-fail", account, ip)) for item in self.login_failures]
            + [(item, ("account-fail", account)) for item in self.account_failures]
        )
        try:
            yield
        except InvalidCredentials:
            raise
        except BaseException:
            await self._refund(charged)
            raise
        await self._refund(charged)

    async def _charge(self, windows: Sequence[tuple[RateLimitItem, tuple[str, ...]]]) -> list[str]:
        """Take one entry in every window, atomically per window (the check and the count are one
        operation of the storage); if one is full, give back those taken and refuse. Returns the
        storage keys charged."""
        charged: list[str] = []
        if not self.enabled:
            return charged
        async with _STORAGE_ERRORS:
            for item, key in windows:
                if not await self._limiter.hit(item, *key):
                    await self._refund(charged)
                    raise await self._refusal(item, key)
                charged.append(item.key_for(*key))
        return charged

    async def _refund(self, keys: Sequence[str]) -> None:
        """Give back one entry of each charged moving window."""
        async with _STORAGE_ERRORS:
            for key in keys:
                await self._limiter.give_back(key)

    async def first_refusal(self, error: RateLimited, ip: str) -> bool:
        """Whether this refusal is the first of its kind from ``ip`` this minute (worth an audit row:
        a flood of 429s must not become a flood of database writes)."""
        async with _STORAGE_ERRORS:
            return await self._limiter.hit(_AUDIT_ONCE, "audited", error.kind, ip)

    async def _refusal(self, item: RateLimitItem, key: tuple[str, ...]) -> RateLimited:
        stats = await self._limiter.get_window_stats(item, *key)
        return RateLimited(math.ceil(stats.reset_time - time.time()), limit=str(item), kind=key[0])


class _InRedis:
    """The moving windows in Redis, shared by every instance: ``limits``' strategy on its storage."""

    def __init__(self, storage: RedisStorage) -> None:
        self._bridge = cast(_RedisBridge, storage.bridge)  # every bridge of the library has both methods
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, item: RateLimitItem, *key: str) -> bool:
        return await self._limiter.hit(item, *key)

    async def get_window_stats(self, item: RateLimitItem, *key: str) -> WindowStats:
        return await self._limiter.get_window_stats(item, *key)

    async def give_back(self, key: str) -> None:
        """Remove the newest entry of the moving window ``key`` (a refund of one ``hit``).

        ``limits`` has no refund, but its Redis moving window is a newest-first list of timestamps
        that the library's Lua script ``LPUSH``-es: removing its head is the exact inverse of one
        hit. Tested against a real Redis.
        """
        await self._bridge.get_connection().lpop(self._bridge.prefixed_key(key))

    async def close(self) -> None:
        client = self._bridge.get_connection()
        closing = client.connection_pool.disconnect()  # coredis: at once; redis-py: awaitable
        if inspect.isawaitable(closing):
            await closing


class _RedisPool(Protocol):
    def disconnect(self) -> object: ...


class _RedisClient(Protocol):
    connection_pool: _RedisPool

    async def lpop(self, key: str) -> object: ...


class _RedisBridge(Protocol):
    def get_connection(self) -> _RedisClient: ...

    def prefixed_key(self, key: str) -> str: ...


class _StorageErrors:
    """Turn a counter-storage failure into ``Unavailable`` (503), never a 500. A class rather than a
    generator function, as it runs around every rate-limited request's counting."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, _kind: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, StorageError):
            _log.warning("rate-limit storage unavailable: %s", type(exc.storage_error).__name__)
            raise Unavailable() from exc


_STORAGE_ERRORS = _StorageErrors()


def client_ip(request: Request, trusted: Sequence[str]) -> str:
    """The client's address: the socket peer, or, behind trusted proxies, the first untrusted
    address from the right of ``X-Forwarded-For`` (anyone can write the rest of that header)."""
    peer = request.client.host if request.client else ""
    networks = _networks(tuple(trusted))
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def _account_key(username: object) -> str:
    try:
        return normalize_username(username)[1]
    except InvalidRequest:
        return "-invalid-"


def _is_trusted(address: str, networks: Sequence[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    """``KEYTURN_TRUSTED_PROXIES`` parsed once (the settings never change), not once per
    forwarded hop and network: a long ``X-Forwarded-For`` costs one address parse a hop."""
    return tuple(ipaddress.ip_network(net, strict=False) for net in trusted)
