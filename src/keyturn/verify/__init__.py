"""Offline verification of keyturn access tokens, for any API that must know who is calling.

``Verifier`` checks a token with the server's own rules and code (``keyturn.tokens``) against
keys from the server's JWKS, and remembers tokens it has already verified, so a repeat costs a
dictionary lookup and an expiry check. It needs no database and none of the server's packages::

    from . import Verifier

    verifier = Verifier(issuer="https://auth.example.com", audience="https://api.example.com")
    claims = verifier.verify(token, scopes=["read"])  # raises keyturn.InvalidToken, InsufficientScope
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.errors import InsufficientScope, TokenExpired, UnknownKey
from ..core.keys import KeyRing
from ..core.tokens import AccessClaims, verify_access_token
from .jwks import JwksCache, JwksPolicy

__all__ = ["JwksPolicy", "Verifier"]


class Verifier:
    """Verifies access tokens of one issuer for one (or several) audiences. Thread- and task-safe."""

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        *,
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        scopes: Iterable[str] = (),
        leeway: timedelta = timedelta(seconds=5),
        cache_size: int = 10_000,
        policy: JwksPolicy | None = None,
    ) -> None:
        """
        Args:
            issuer: the keyturn server's ``KEYTURN_ISSUER``; tokens must carry it as ``iss``.
            audience: what ``aud`` must contain (``KEYTURN_AUDIENCE`` of the server).
            jwks_url: where the keys are; default: discovered from the issuer.
            jwks: a static JWK Set, or a single public JWK, instead of fetching (tests, air-gapped
                deployments).
            scopes: scopes every token must carry (routes can ask for more).
            leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
            cache_size: how many verified tokens to remember (0 turns the cache off).
            policy: JWKS caching and refetch limits.
        """
        self.issuer = issuer
        self.audience = audience
        self.scopes = tuple(scopes)
        self.leeway = leeway
        self._leeway_s = leeway.total_seconds()
        self.keys = JwksCache(issuer, jwks_url=jwks_url, jwks=jwks, policy=policy, leeway=leeway)
        self._cache: dict[str, AccessClaims] = {}
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def verify(self, token: object, *, scopes: Iterable[str] = (), now: datetime | None = None) -> AccessClaims:
        """Verify ``token`` and return its claims (sync; may fetch keys).

        Raises:
            InvalidToken: one of its subclasses; InsufficientScope: a required scope is missing;
            Unavailable: no keys could be fetched yet.
        """
        claims = self._cached(token, now)
        if claims is None:
            moment = now or datetime.now(UTC)
            try:
                claims = self._check(token, self.keys.ring(moment), moment)
            except UnknownKey as exc:  # perhaps a key published after our last fetch
                claims = self._check(token, self.keys.ring(moment, kid=exc.kid), moment)
        return self._authorized(claims, scopes)

    async def verify_async(
        self, token: object, *, scopes: Iterable[str] = (), now: datetime | None = None
    ) -> AccessClaims:
        """Like :meth:`verify`, fetching keys without blocking the event loop."""
        claims = self._cached(token, now)
        if claims is None:
            moment = now or datetime.now(UTC)
            try:
                claims = self._check(token, await self.keys.ring_async(moment), moment)
            except UnknownKey as exc:
                claims = self._check(token, await self.keys.ring_async(moment, kid=exc.kid), moment)
        return self._authorized(claims, scopes)

    def _cached(self, token: object, now: datetime | None) -> AccessClaims | None:
        if not isinstance(token, str):
            return None
        claims = self._cache.get(token)
        if claims is None:
            return None
        ts = now.timestamp() if now is not None else time.time()
        if ts >= claims.exp + self._leeway_s:
            self._cache.pop(token, None)
            raise TokenExpired(claims.expires_at)
        return claims

    def _check(self, token: object, ring: KeyRing, now: datetime) -> AccessClaims:
        claims = verify_access_token(
            token, ring, issuer=self.issuer, audience=self.audience, now=now, leeway=self.leeway
        )
        if self._cache_size and isinstance(token, str):
            with self._cache_lock:
                while len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[token] = claims
        return claims

    def _authorized(self, claims: AccessClaims, scopes: Iterable[str]) -> AccessClaims:
        if not self.scopes and not scopes:  # the common case, on every cached verification
            return claims
        required = (*self.scopes, *scopes)
        if required:
            missing = tuple(s for s in required if s not in claims.scope)
            if missing:
                raise InsufficientScope(missing)
        return claims
