"""Fetching and caching a keyturn server's public keys (JWKS) for offline verification.

- The JWKS URL is the ``jwks_uri`` of the issuer's metadata (found by ``keyturn.verify.discovery``:
  RFC 8414 §3.1's path-aware location, then ``<issuer>/.well-known/oauth-authorization-server``,
  then OpenID Connect's ``<issuer>/.well-known/openid-configuration``; used only if its ``issuer``
  is exactly ours), else ``<issuer>/.well-known/jwks.json`` when the issuer has no metadata at all.
- Responses are cached for their ``Cache-Control: max-age``, clamped between a floor and a ceiling.
- A token with an unknown ``kid`` triggers a refetch at most once per interval, however many random
  kids arrive (so garbage tokens cannot make us hammer the server).
- When the server cannot be reached, the last good keys stay in use; only with no keys at all does
  verification fail, with ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from ..core.errors import ConfigurationError, KeyturnError, Unavailable
from ..core.keys import KeyRing, SigningKey
from .discovery import fetch_metadata, fetch_metadata_async, metadata_url

__all__ = ["JwksCache", "JwksPolicy", "metadata_url"]

_log = logging.getLogger("keyturn.jwks")
_MAX_AGE = re.compile(r"max-age=(\d+)")
_MAX_JWKS_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class JwksPolicy:
    """How long keys are trusted and how often the server may be asked again."""

    default_ttl: timedelta = timedelta(minutes=5)
    min_ttl: timedelta = timedelta(seconds=30)
    max_ttl: timedelta = timedelta(hours=1)
    unknown_kid_interval: timedelta = timedelta(seconds=10)
    retry_after_failure: timedelta = timedelta(seconds=5)
    timeout: float = 5.0


class JwksCache:
    """The key ring of one issuer, fetched with httpx (sync or async) and cached.

    A :class:`~keyturn.core.keys.SyncKeySource`: the default key source of ``Verifier``.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        policy: JwksPolicy | None = None,
        leeway: timedelta = timedelta(seconds=5),
    ) -> None:
        self.issuer = issuer
        self.policy = policy or JwksPolicy()
        self._url = jwks_url
        self._leeway = leeway
        self._ring: KeyRing | None = parse_jwks(jwks, leeway) if jwks is not None else None
        self._static = jwks is not None
        self._fresh_until: datetime | None = None
        self._last_attempt: datetime | None = None
        self._lock = threading.Lock()
        self._alock: asyncio.Lock | None = None

    def ring(self, now: datetime, kid: object = None) -> KeyRing:
        """The keys to verify with at ``now``, fetching first if needed (sync).

        Raises:
            Unavailable: no keys could ever be fetched.
        """
        if self._ring is None or self._due(now, kid):  # no keys yet: wait for a fetch under way
            with self._lock:
                if self._due(now, kid):
                    self._last_attempt = now
                    try:
                        with httpx.Client(timeout=self.policy.timeout, follow_redirects=False) as http:
                            self._store(self._fetch_sync(http), now)
                    except (httpx.HTTPError, ValueError, KeyturnError) as exc:
                        _log.warning("JWKS fetch from %s failed: %s", self.issuer, _describe(exc))
        return self._current()

    async def ring_async(self, now: datetime, kid: object = None) -> KeyRing:
        """The keys to verify with at ``now``, fetching first if needed (async)."""
        if self._ring is None or self._due(now, kid):  # as in ring()
            self._alock = self._alock or asyncio.Lock()
            async with self._alock:
                if self._due(now, kid):
                    self._last_attempt = now
                    try:
                        async with httpx.AsyncClient(timeout=self.policy.timeout, follow_redirects=False) as http:
                            self._store(await self._fetch_async(http), now)
                    except (httpx.HTTPError, ValueError, KeyturnError) as exc:
                        _log.warning("JWKS fetch from %s failed: %s", self.issuer, _describe(exc))
        return self._current()

    def _due(self, now: datetime, kid: object) -> bool:
        if self._static:
            return False
        last = self._last_attempt
        if last is not None and self._ring is None:
            return now - last >= self.policy.retry_after_failure
        if self._ring is None or self._fresh_until is None or now >= self._fresh_until:
            return last is None or now - last >= self.policy.retry_after_failure
        if kid is not None and kid not in self._ring:
            return last is None or now - last >= self.policy.unknown_kid_interval
        return False

    def _current(self) -> KeyRing:
        if self._ring is None:
            raise Unavailable("The issuer's signing keys could not be fetched.")
        return self._ring

    def _fetch_sync(self, http: httpx.Client) -> httpx.Response:
        if self._url is None:
            self._url = _jwks_uri(fetch_metadata(http, self.issuer), self.issuer)
        return http.get(self._url)

    async def _fetch_async(self, http: httpx.AsyncClient) -> httpx.Response:
        if self._url is None:
            self._url = _jwks_uri(await fetch_metadata_async(http, self.issuer), self.issuer)
        return await http.get(self._url)

    def _store(self, response: httpx.Response, now: datetime) -> None:
        response.raise_for_status()
        if len(response.content) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS too large")
        self._ring = parse_jwks(response.json(), self._leeway)
        self._fresh_until = now + self._ttl(response.headers.get("cache-control", ""))

    def _ttl(self, cache_control: str) -> timedelta:
        match = _MAX_AGE.search(cache_control)
        ttl = timedelta(seconds=_seconds(match.group(1))) if match else self.policy.default_ttl
        return max(self.policy.min_ttl, min(self.policy.max_ttl, ttl))


def _seconds(digits: str) -> int:
    """A max-age's digits as seconds, at most 10**9 (any more only means "past the ceiling"):
    int() refuses 4,300 digits and more, and timedelta() a number of 15 digits."""
    digits = digits.lstrip("0")
    return int(digits or "0") if len(digits) <= 9 else 10**9


def parse_jwks(jwks: Mapping[str, Any], leeway: timedelta) -> KeyRing:
    """A verification-only key ring from a JWK Set (or one JWK); keys we cannot use are skipped.

    Raises:
        ConfigurationError: no usable key at all.
    """
    if isinstance(jwks, Mapping) and "kty" in jwks:  # a single JWK rather than a set
        jwks = {"keys": [jwks]}
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    keys: list[SigningKey] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            keys.append(SigningKey.from_jwk(entry))
        except (ConfigurationError, TypeError, AttributeError):
            continue
    if not keys:
        raise ConfigurationError("jwks", "the JWK Set has no usable signing key")
    # Published keys are all valid: the server already dropped retired ones from its JWKS.
    return KeyRing(keys, token_ttl=timedelta(0), leeway=leeway)


def _jwks_uri(metadata: Mapping[str, Any] | None, issuer: str) -> str:
    """The metadata's ``jwks_uri`` (RFC 8414 §2); without one, or without metadata, the default path."""
    uri = None if metadata is None else metadata.get("jwks_uri")
    if isinstance(uri, str) and uri.startswith(("https://", "http://")):
        return uri
    return f"{issuer.rstrip('/')}/.well-known/jwks.json"


def _describe(exc: Exception) -> str:
    """A failure for the log: keyturn's and ours say what went wrong; httpx's, of what kind."""
    if isinstance(exc, KeyturnError):
        return exc.description
    return str(exc) if isinstance(exc, ValueError) else type(exc).__name__
