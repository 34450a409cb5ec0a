"""Unit tests (no I/O) of keyturn.verify's Verifier: one verification path over any key source.

Most tests use a static JWK Set; the ``keys=`` tests use small classes implementing
``keyturn.core.keys.KeySource`` (and ``SyncKeySource``) over key rings held in memory, the way the
server's ``KeyManager`` serves the rings of its store. The JWKS cache is tested in ``test_jwks.py``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyturn.core.errors import BadSignature, InsufficientScope, InvalidToken, TokenExpired, UnknownKey
from keyturn.core.keys import KeyRing, SigningKey, generate_key
from keyturn.core.tokens import issue_access_token, verify_access_token
from keyturn.verify import Verifier

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://auth.example"
AUDIENCE = "https://api.example"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # the order of P-256 (SEC 2 §2.4.2)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("ES256", now=NOW)


def token(key: SigningKey, *, scope: str = "profile", now: datetime = NOW, issuer: str = ISSUER, **kw: Any) -> str:
    value, _ = issue_access_token(
        key, issuer=issuer, audience=kw.get("audience", AUDIENCE), subject="user-1", session_id="s-1",
        client_id="keyturn", scope=scope, now=now, ttl=timedelta(minutes=15), email_verified=kw.get("email_verified"),
    )  # fmt: skip
    return value


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def test_static_jwks_verifies_and_returns_claims(key: SigningKey) -> None:
    """A token of the issuer verifies offline and yields its claims."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    claims = verifier.verify(token(key), now=NOW)
    assert (claims.sub, claims.sid, claims.scope, claims.email_verified) == ("user-1", "s-1", ("profile",), None)


@pytest.mark.parametrize("verified", [True, False])
def test_the_verifier_says_whether_the_users_address_is_verified(verified: bool, key: SigningKey) -> None:
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    assert verifier.verify(token(key, email_verified=verified), now=NOW).email_verified is verified


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"issuer": "https://other.example"}, InvalidToken),
        ({"audience": "https://other-api.example"}, InvalidToken),
    ],
)
def test_other_issuer_or_audience_is_refused(key: SigningKey, kwargs: dict[str, Any], error: type[Exception]) -> None:
    """The same key cannot vouch for another issuer or audience."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    with pytest.raises(error):
        verifier.verify(token(key, **kwargs), now=NOW)


def test_token_of_another_instance_is_refused(key: SigningKey) -> None:
    """Another keyturn deployment's key is not in our JWKS: unknown kid."""
    other = generate_key("ES256", now=NOW)
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    with pytest.raises(UnknownKey):
        verifier.verify(token(other), now=NOW)


def test_required_scopes(key: SigningKey) -> None:
    """Verifier-wide and per-call scopes must all be present; the error names the missing ones."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key), scopes=["profile"])
    assert verifier.verify(token(key, scope="profile orders:read"), scopes=["orders:read"], now=NOW)
    with pytest.raises(InsufficientScope) as caught:
        verifier.verify(token(key, scope="profile"), scopes=["orders:read", "orders:write"], now=NOW)
    assert caught.value.required == ("orders:read", "orders:write")
    with pytest.raises(InsufficientScope):
        verifier.verify(token(key, scope="orders:read"), now=NOW)


def test_cache_hit_still_checks_expiry_and_scopes(key: SigningKey) -> None:
    """A remembered token is refused once expired, and scopes are checked on every call."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key), leeway=timedelta(0))
    value = token(key)
    first = verifier.verify(value, now=NOW)
    assert verifier.verify(value, now=NOW + timedelta(minutes=14)) is first  # from the cache
    with pytest.raises(InsufficientScope):
        verifier.verify(value, scopes=["admin"], now=NOW)
    with pytest.raises(TokenExpired):
        verifier.verify(value, now=NOW + timedelta(minutes=15))


def test_cache_is_bounded(key: SigningKey) -> None:
    """The verified-token cache never holds more than cache_size tokens."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key), cache_size=5)
    for i in range(20):
        verifier.verify(token(key, now=NOW + timedelta(seconds=i)), now=NOW + timedelta(seconds=i))
    assert len(verifier._cache) == 5


def test_refused_tokens_are_not_cached(key: SigningKey) -> None:
    """Only verified tokens are remembered: a tampered one fails every time."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    bad = token(key)[:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(bad, now=NOW)
    assert verifier._cache == {}


def high_s_twin(value: str) -> str:
    """``value`` with its ES256 signature (r, s) replaced by (r, n - s), an equally valid ECDSA signature."""
    head, body, signature = value.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    twin = raw[:32] + (P256_N - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    return f"{head}.{body}.{base64.urlsafe_b64encode(twin).rstrip(b'=').decode()}"


def test_high_s_twin_of_an_es256_token_is_refused(key: SigningKey) -> None:
    """The high-S twin of a real token is refused as bad_signature by the core and by the Verifier."""
    original = token(key)
    twin = high_s_twin(original)
    ring = KeyRing([key], token_ttl=timedelta(minutes=15), leeway=timedelta(0))
    with pytest.raises(BadSignature) as by_core:
        verify_access_token(twin, ring, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    assert verifier.verify(original, now=NOW).sub == "user-1"  # remembered now; the twin is another string
    with pytest.raises(BadSignature) as by_verifier:
        verifier.verify(twin, now=NOW)
    assert by_core.value.reason == by_verifier.value.reason == "bad_signature"
    assert list(verifier._cache) == [original]


@pytest.mark.anyio
async def test_async_verification(key: SigningKey) -> None:
    """verify_async gives the same answer."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    assert (await verifier.verify_async(token(key), now=NOW)).sub == "user-1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


OLD = generate_key("ES256", now=NOW - timedelta(hours=1))
NEW = generate_key("ES256", now=NOW)


def ring(*keys: SigningKey) -> KeyRing:
    return KeyRing(keys, token_ttl=timedelta(minutes=15), leeway=timedelta(seconds=5))


class AsyncRings:
    """An async-only key source (as ``KeyManager``): its ring, and the ring a look for a kid finds."""

    def __init__(self, current: KeyRing, on_lookup: KeyRing | None = None) -> None:
        self.current = current
        self.on_lookup = on_lookup or current
        self.asked: list[object] = []  # the kid of each call (None: no particular key)

    async def ring_async(self, now: datetime, kid: object = None) -> KeyRing:
        self.asked.append(kid)
        if kid is not None:
            self.current = self.on_lookup
        return self.current


class SyncRings(AsyncRings):
    """A key source that also answers without an event loop (as ``JwksCache``)."""

    def ring(self, now: datetime, kid: object = None) -> KeyRing:
        self.asked.append(kid)
        if kid is not None:
            self.current = self.on_lookup
        return self.current


@pytest.mark.anyio
async def test_async_source_verifies_tokens() -> None:
    """A token signed by a key of the source's ring verifies; the source is asked once."""
    source = AsyncRings(ring(OLD))
    claims = await Verifier(ISSUER, AUDIENCE, keys=source).verify_async(token(OLD), now=NOW)
    assert (claims.sub, claims.scope) == ("user-1", ("profile",))
    assert source.asked == [None]


@pytest.mark.anyio
async def test_unknown_kid_asks_the_source_once_more_for_that_kid() -> None:
    """A key the source learns of later (made by another instance) is found by one retry naming its kid."""
    source = AsyncRings(ring(OLD), on_lookup=ring(OLD, NEW))
    claims = await Verifier(ISSUER, AUDIENCE, keys=source).verify_async(token(NEW), now=NOW)
    assert claims.sub == "user-1"
    assert source.asked == [None, NEW.kid]


@pytest.mark.anyio
async def test_a_kid_still_unknown_after_the_retry_is_refused() -> None:
    """The retry happens once: a kid the source never finds is refused unknown_kid after two asks."""
    source = AsyncRings(ring(OLD))
    with pytest.raises(UnknownKey) as excinfo:
        await Verifier(ISSUER, AUDIENCE, keys=source).verify_async(token(NEW), now=NOW)
    assert (excinfo.value.code, excinfo.value.reason) == ("invalid_token", "unknown_kid")
    assert source.asked == [None, NEW.kid]


def test_sync_source_serves_verify_with_the_same_retry() -> None:
    """verify() asks a sync source the same way verify_async() asks an async one."""
    source = SyncRings(ring(OLD), on_lookup=ring(OLD, NEW))
    assert Verifier(ISSUER, AUDIENCE, keys=source).verify(token(NEW), now=NOW).sub == "user-1"
    assert source.asked == [None, NEW.kid]


def test_sync_verify_over_an_async_only_source_is_a_type_error() -> None:
    """A source without a sync ring() (the server's KeyManager) cannot serve verify(): say so, not crash later."""
    with pytest.raises(TypeError, match="verify_async"):
        Verifier(ISSUER, AUDIENCE, keys=AsyncRings(ring(OLD))).verify(token(OLD), now=NOW)


def test_a_coroutine_named_ring_is_not_a_sync_source() -> None:
    """KeyManager has an async ring(now, kid=..., force=...): verify() refuses it instead of awaiting nothing."""

    class AsyncNamedRing(AsyncRings):
        async def ring(self, now: datetime, kid: object = None) -> KeyRing:  # pragma: no cover - never called
            return self.current

    with pytest.raises(TypeError, match="verify_async"):
        Verifier(ISSUER, AUDIENCE, keys=AsyncNamedRing(ring(OLD))).verify(token(OLD), now=NOW)


@pytest.mark.parametrize(
    "jwks_options",
    [{"jwks": {"keys": [OLD.public_jwk()]}}, {"jwks_url": "https://auth.example/jwks"}, {"policy": object()}],
)
def test_keys_excludes_the_jwks_options(jwks_options: dict[str, object]) -> None:
    """jwks, jwks_url and policy configure the default JWKS cache: with keys= they would be ignored, so refuse."""
    with pytest.raises(TypeError, match="keys="):
        Verifier(ISSUER, AUDIENCE, keys=AsyncRings(ring(OLD)), **jwks_options)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_cache_size_zero_asks_the_source_every_time() -> None:
    """cache_size=0 (the server's choice) verifies every token afresh; the default remembers it."""
    value = token(OLD)
    uncached, cached = AsyncRings(ring(OLD)), AsyncRings(ring(OLD))
    for source, size in ((uncached, 0), (cached, 10)):
        verifier = Verifier(ISSUER, AUDIENCE, keys=source, cache_size=size)
        for _ in range(3):
            await verifier.verify_async(value, now=NOW)
    assert (len(uncached.asked), len(cached.asked)) == (3, 1)


@pytest.mark.anyio
async def test_uncached_verification_still_refuses_expired_tokens() -> None:
    """With no cache the token's exp is checked by the core on every call (leeway as given)."""
    verifier = Verifier(ISSUER, AUDIENCE, keys=AsyncRings(ring(OLD)), cache_size=0, leeway=timedelta(0))
    with pytest.raises(TokenExpired) as excinfo:
        await verifier.verify_async(token(OLD), now=NOW + timedelta(minutes=15))
    assert (excinfo.value.code, excinfo.value.reason) == ("invalid_token", "expired")


@pytest.mark.parametrize(
    ("verifier_scopes", "route_scopes", "missing"),
    [
        ((), ("admin",), ("admin",)),
        (("orders",), ("admin",), ("orders", "admin")),
        ("orders admin", (), ("orders", "admin")),
    ],
)
@pytest.mark.anyio
async def test_scopes_are_checked_by_the_claims(
    verifier_scopes: tuple[str, ...] | str, route_scopes: tuple[str, ...], missing: tuple[str, ...]
) -> None:
    """Verifier-wide then per-call scopes, checked by AccessClaims.require: every missing one is named."""
    verifier = Verifier(ISSUER, AUDIENCE, keys=AsyncRings(ring(OLD)), scopes=verifier_scopes)
    with pytest.raises(InsufficientScope) as excinfo:
        await verifier.verify_async(token(OLD, scope="profile"), scopes=route_scopes, now=NOW)
    assert (excinfo.value.code, excinfo.value.required) == ("insufficient_scope", missing)
    assert await verifier.verify_async(token(OLD, scope="orders admin"), scopes=route_scopes, now=NOW)
