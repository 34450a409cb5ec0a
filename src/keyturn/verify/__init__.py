"""Offline verification of keyturn access tokens, for any API that must know who is calling.

``Verifier`` checks a token with the server's own rules and code (``keyturn.core.tokens``)
against keys from a key source, and remembers tokens it has already verified, so a repeat costs
a dictionary lookup and an expiry check. It follows the issuer's revocation feed in the
background (``keyturn.verify.revocations``), so a token whose session has ended is refused within
seconds, with one more dictionary lookup per request. The key source is the issuer's JWKS by default (no
database, none of the server's packages); the server passes its own store's keys, so one path
verifies every keyturn token::

    from keyturn.verify import Verifier

    verifier = Verifier(issuer="https://auth.example.com", audience="https://api.example.com")
    claims = verifier.verify(token, scopes=["read"])  # raises keyturn.InvalidToken, InsufficientScope
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from ..core.errors import TokenExpired, UnknownKey
from ..core.keys import KeyRing, KeySource, SyncKeySource
from ..core.tokens import AccessClaims, scope_names, verify_access_token
from .jwks import JwksCache, JwksPolicy
from .resource import ProtectedResource
from .revocations import FeedStatus, RevocationFeed

__all__ = [
    "FeedStatus",
    "JwksPolicy",
    "KeySource",
    "ProtectedResource",
    "RevocationFeed",
    "SyncKeySource",
    "Verifier",
]


class Verifier:
    """Verifies access tokens of one issuer for one (or several) audiences. Thread- and task-safe."""

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        *,
        keys: KeySource | None = None,
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        scopes: Iterable[str] = (),
        leeway: timedelta = timedelta(seconds=5),
        cache_size: int = 10_000,
        policy: JwksPolicy | None = None,
        revocations: RevocationFeed | bool | None = None,
        require_sid: bool | None = None,
    ) -> None:
        """
        Args:
            issuer: the keyturn server's ``KEYTURN_ISSUER``; tokens must carry it as ``iss``.
            audience: what ``aud`` must contain (``KEYTURN_AUDIENCE`` of the server).
            keys: where the keys come from; default: a :class:`JwksCache` of the issuer's JWKS
                (``jwks_url``, ``jwks`` and ``policy`` configure it, so they go without ``keys``).
                A source with only ``ring_async`` serves :meth:`verify_async` alone.
            jwks_url: where the keys are; default: discovered from the issuer.
            jwks: a static JWK Set, or a single public JWK, instead of fetching (tests, air-gapped
                deployments).
            scopes: scopes every token must carry (routes can ask for more); a string is a
                space-separated list, here and in :meth:`verify`.
            leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
            cache_size: how many verified tokens to remember (0 turns the cache off).
            policy: JWKS caching and refetch limits.
            revocations: follow the issuer's revocation feed and refuse the tokens of ended
                sessions (``SessionEnded``). Default: on when the keys come from the issuer
                (not with ``keys`` or ``jwks``); ``False`` turns it off; a
                :class:`RevocationFeed` sets how (staleness, fail-open).
            require_sid: refuse tokens without ``sid``; default: with ``keys`` (the server's), or
                while following a feed (another issuer's RFC 9068 tokens need none).

        Raises:
            TypeError: ``keys`` together with ``jwks_url``, ``jwks`` or ``policy``.
        """
        if keys is not None and (jwks_url is not None or jwks is not None or policy is not None):
            raise TypeError("Verifier(keys=...) takes no jwks_url, jwks or policy: they configure the JWKS cache")
        self.issuer = issuer
        self.audience = audience
        self.scopes = scope_names(scopes)
        self.leeway = leeway
        self._leeway_s = leeway.total_seconds()
        self.keys: KeySource = (
            keys if keys is not None else JwksCache(issuer, jwks_url=jwks_url, jwks=jwks, policy=policy, leeway=leeway)
        )
        self._sync_keys = self.keys if _answers_sync(self.keys) else None
        self._require_sid = keys is not None if require_sid is None else require_sid
        remote = keys is None and jwks is None
        feed = _feed(revocations, remote=remote)
        self.revocations = None if feed is None else feed.attach(issuer, leeway)
        # The ended sessions' ids, read on every request: one dictionary lookup (the follower adds and drops).
        self._ended: Mapping[str, float] = {} if self.revocations is None else self.revocations.ended.ids
        self._cache: dict[str, AccessClaims] = {}
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def verify(self, token: object, *, scopes: Iterable[str] = (), now: datetime | None = None) -> AccessClaims:
        """Verify ``token`` and return its claims (sync; may fetch keys).

        Raises:
            InvalidToken: one of its subclasses; InsufficientScope: a required scope is missing;
            Unavailable: no keys could be fetched yet.
            TypeError: the key source answers only ``ring_async`` (use :meth:`verify_async`).
        """
        ts = time.time() if now is None else now.timestamp()
        claims = self._cache.get(token) if isinstance(token, str) else None
        if claims is None or ts >= claims.exp + self._leeway_s:
            claims = self._verified(token, now, claims)
        feed = self.revocations
        if feed is not None and (claims.sid in self._ended or ts >= feed.fresh_until):
            feed.catch_up(claims, now)
        return claims if not scopes and not self.scopes else self._authorized(claims, scopes)

    async def verify_async(
        self, token: object, *, scopes: Iterable[str] = (), now: datetime | None = None
    ) -> AccessClaims:
        """Like :meth:`verify`, asking the key source without blocking the event loop."""
        ts = time.time() if now is None else now.timestamp()
        claims = self._cache.get(token) if isinstance(token, str) else None
        if claims is None or ts >= claims.exp + self._leeway_s:
            claims = await self._verified_async(token, now, claims)
        feed = self.revocations
        if feed is not None and (claims.sid in self._ended or ts >= feed.fresh_until):
            await feed.catch_up_async(claims, now)
        return claims if not scopes and not self.scopes else self._authorized(claims, scopes)

    def status(self) -> FeedStatus | None:
        """The health of the revocation feed this verifier follows (None: it follows none)."""
        return None if self.revocations is None else self.revocations.status()

    def close(self) -> None:
        """Stop following the revocation feed (a later verification starts again)."""
        if self.revocations is not None:
            self.revocations.close()

    def _verified(self, token: object, now: datetime | None, expired: AccessClaims | None) -> AccessClaims:
        """The claims of a token the cache does not hold (sync; may fetch keys)."""
        self._refuse_expired(token, expired)
        keys = self._sync_keys
        if keys is None:
            raise TypeError(f"{type(self.keys).__name__} has no sync ring(): use Verifier.verify_async")
        moment = now or datetime.now(UTC)
        try:
            return self._check(token, keys.ring(moment), moment)
        except UnknownKey as exc:  # perhaps a key published after our last look: ask once more
            return self._check(token, keys.ring(moment, kid=exc.kid), moment)

    async def _verified_async(self, token: object, now: datetime | None, expired: AccessClaims | None) -> AccessClaims:
        """The claims of a token the cache does not hold (asking the key source without blocking)."""
        self._refuse_expired(token, expired)
        moment = now or datetime.now(UTC)
        try:
            return self._check(token, await self.keys.ring_async(moment), moment)
        except UnknownKey as exc:  # as in _verified(): one more look, for this kid
            return self._check(token, await self.keys.ring_async(moment, kid=exc.kid), moment)

    def _refuse_expired(self, token: object, cached: AccessClaims | None) -> None:
        """A cached token past its ``exp`` (and the leeway) leaves the cache, refused."""
        if cached is not None:
            self._cache.pop(token, None)  # type: ignore[call-overload]
            raise TokenExpired(cached.expires_at)

    def _check(self, token: object, ring: KeyRing, now: datetime) -> AccessClaims:
        claims = verify_access_token(
            token,
            ring,
            issuer=self.issuer,
            audience=self.audience,
            now=now,
            leeway=self.leeway,
            require_sid=self._require_sid,
        )
        if self._cache_size and isinstance(token, str):
            with self._cache_lock:
                while len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[token] = claims
        return claims

    def _authorized(self, claims: AccessClaims, scopes: Iterable[str]) -> AccessClaims:
        return claims.require((*self.scopes, *scope_names(scopes)) if self.scopes else scopes)


def _feed(value: RevocationFeed | bool | None, *, remote: bool) -> RevocationFeed | None:
    """The feed a ``Verifier(revocations=...)`` follows: the one given; a default one for
    ``True``, or for ``None`` when the keys come from the issuer; none for ``False``."""
    if isinstance(value, RevocationFeed):
        return value
    return RevocationFeed() if value is True or (value is None and remote) else None


def _answers_sync(keys: KeySource) -> TypeGuard[SyncKeySource]:
    """Whether ``keys`` has a sync ``ring()`` (the server's ``KeyManager.ring`` is a coroutine)."""
    ring = getattr(keys, "ring", None)
    return callable(ring) and not inspect.iscoroutinefunction(ring)
