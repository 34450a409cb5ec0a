"""Integration tests: ``keyturn.verify`` against another issuer's RFC 9068 access tokens, served by
a tiny stub issuer on loopback (a JWKS whose key has no ``alg``, tokens with no ``sid`` and an
``x5t#S256`` header, metadata that names no revocation feed); and the refusal of a token without
``sid`` where a feed is followed or a session is required.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyturn.core.errors import InvalidClaim, UnsupportedHeader
from keyturn.core.keys import KeyRing, SigningKey, generate_key
from keyturn.verify import RevocationFeed, Verifier
from tests.verify.issuer import stub_issuer


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def foreign_token(key: SigningKey, issuer: str, **header: Any) -> str:
    """An RFC 9068 token as another issuer makes it: no ``sid``, its own ``client_id``."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": "svc-7", "aud": issuer, "client_id": "billing", "jti": "j-1",
              "iat": now, "exp": now + 300, "scope": "read"}  # fmt: skip
    signing_input = f"{b64({'alg': key.alg, 'kid': key.kid, 'typ': 'at+jwt', **header})}.{b64(claims)}"
    signature = base64.urlsafe_b64encode(key.sign(signing_input.encode())).rstrip(b"=").decode()
    return f"{signing_input}.{signature}"


@pytest.fixture(scope="module", params=["ES256", "EdDSA", "RS256"])
def key(request: pytest.FixtureRequest) -> SigningKey:
    return generate_key(request.param, now=datetime.now(UTC) - timedelta(minutes=1))


@pytest.fixture
def issuer(key: SigningKey) -> Iterator[str]:
    """The stub: metadata naming only its JWKS, and a JWK without ``alg`` (RFC 7517 §4.4)."""
    jwk = {k: v for k, v in key.public_jwk().items() if k != "alg"}
    documents: dict[str, Any] = {"/jwks": {"keys": [jwk]}}
    with stub_issuer(documents) as url:
        documents["/.well-known/oauth-authorization-server"] = {"issuer": url, "jwks_uri": f"{url}/jwks"}
        yield url


def test_a_foreign_issuers_token_verifies(key: SigningKey, issuer: str) -> None:
    """Discovered keys without ``alg``, a token without ``sid`` and with ``x5t#S256``: verified,
    with an empty ``sid``; the issuer publishes no feed, so none is followed."""
    verifier = Verifier(issuer, issuer)
    try:
        claims = verifier.verify(foreign_token(key, issuer, **{"x5t#S256": "AAAA"}), scopes=["read"])
        assert (claims.sub, claims.client_id, claims.sid) == ("svc-7", "billing", "")
        status = verifier.status()
        assert status is not None
        assert status.state == "off"
    finally:
        verifier.close()


@pytest.mark.anyio
async def test_a_foreign_issuers_token_verifies_async(key: SigningKey, issuer: str) -> None:
    """The same through ``verify_async`` (the follower is a task: it finds no feed and stops)."""
    verifier = Verifier(issuer, issuer)
    try:
        assert (await verifier.verify_async(foreign_token(key, issuer))).sid == ""
    finally:
        verifier.close()


def test_dangerous_headers_are_still_refused(key: SigningKey, issuer: str) -> None:
    """Other issuers' harmless headers pass; ``jku``, ``x5u``, ``jwk``, ``x5c`` and ``crit`` do not."""
    verifier = Verifier(issuer, issuer, revocations=False)
    for name, value in [("jku", f"{issuer}/jwks"), ("x5u", issuer), ("jwk", {}), ("x5c", ["MIIB"]), ("crit", ["x"])]:
        with pytest.raises(UnsupportedHeader) as refused:
            verifier.verify(foreign_token(key, issuer, **{name: value}))
        assert (refused.value.header, refused.value.reason) == (name, "forbidden_header")


def test_a_token_without_sid_is_refused_where_a_session_is_required(key: SigningKey) -> None:
    """``require_sid=True`` (the server's default, with ``keys``) refuses a token naming no session."""
    issuer = "https://issuer.example"
    ring = KeyRing([key], token_ttl=timedelta(0), leeway=timedelta(0))

    class Keys:
        def ring(self, now: datetime, kid: object = None) -> KeyRing:
            return ring

        async def ring_async(self, now: datetime, kid: object = None) -> KeyRing:
            return ring

    for verifier in (
        Verifier(issuer, issuer, keys=Keys()),
        Verifier(issuer, issuer, jwks={"keys": [key.public_jwk()]}, require_sid=True),
    ):
        with pytest.raises(InvalidClaim) as refused:
            verifier.verify(foreign_token(key, issuer))
        assert refused.value.claim == "sid"
    relaxed = Verifier(issuer, issuer, jwks={"keys": [key.public_jwk()]})
    assert relaxed.verify(foreign_token(key, issuer)).sid == ""


def test_a_token_without_sid_is_refused_while_a_feed_is_followed(key: SigningKey) -> None:
    """Following an issuer's feed, a token naming no session could never be matched against it:
    refused (``InvalidClaim`` on ``sid``), not let through."""
    issuer = "https://issuer.example"
    feed = RevocationFeed(url="http://127.0.0.1:9/v1/revocations", timeout=0.5, wait=timedelta(seconds=1))
    verifier = Verifier(issuer, issuer, jwks={"keys": [key.public_jwk()]}, revocations=feed)
    feed.fresh_until = math.inf  # as if it had just answered
    try:
        with pytest.raises(InvalidClaim) as refused:
            verifier.verify(foreign_token(key, issuer))
        assert refused.value.claim == "sid"
        assert "revocation feed" in refused.value.description
    finally:
        verifier.close()
