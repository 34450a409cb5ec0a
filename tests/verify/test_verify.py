"""Tests of keyturn.verify and keyturn.verify.jwks: the offline Verifier and its JWKS cache.

Unit tests use a static JWK Set; the cache tests are integration tests against a tiny JWKS
server on loopback that counts its requests (no mocking of httpx).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from keyturn.core.errors import BadSignature, InsufficientScope, InvalidToken, TokenExpired, Unavailable, UnknownKey
from keyturn.core.keys import KeyRing, SigningKey, generate_key
from keyturn.core.tokens import issue_access_token, verify_access_token
from keyturn.verify import Verifier
from keyturn.verify.jwks import JwksPolicy

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
        client_id="keyturn", scope=scope, now=now, ttl=timedelta(minutes=15),
    )  # fmt: skip
    return value


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def test_static_jwks_verifies_and_returns_claims(key: SigningKey) -> None:
    """A token of the issuer verifies offline and yields its claims."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks_of(key))
    claims = verifier.verify(token(key), now=NOW)
    assert (claims.sub, claims.sid, claims.scope) == ("user-1", "s-1", ("profile",))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"issuer": "https://other.example"}, InvalidToken),
        ({"audience": "https://other-api.example"}, InvalidToken),
    ],
)
def test_other_issuer_or_audience_is_refused(key: SigningKey, kwargs: dict[str, str], error: type[Exception]) -> None:
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


@dataclass
class JwksServer:
    """A loopback JWKS endpoint whose keys, Cache-Control and availability the test controls."""

    url: str
    jwks: dict[str, Any]
    cache_control: str = "public, max-age=300"
    hits: list[str] = field(default_factory=list)
    down: bool = False
    metadata_issuer: str | None = None


@pytest.fixture
def jwks_server(key: SigningKey) -> Iterator[JwksServer]:
    state = JwksServer(url="", jwks=jwks_of(key))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            if state.down:
                self.send_response(503)
                self.end_headers()
                return
            if self.path == "/.well-known/oauth-authorization-server" and state.metadata_issuer is not None:
                payload: dict[str, Any] = {"issuer": state.metadata_issuer, "jwks_uri": f"{state.url}/keys/v2"}
            elif self.path in ("/.well-known/jwks.json", "/keys/v2"):
                payload = state.jwks
            else:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("cache-control", state.cache_control)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def fetches(server: JwksServer) -> int:
    return sum(1 for p in server.hits if p != "/.well-known/oauth-authorization-server")


def test_keys_are_discovered_and_cached_for_max_age(key: SigningKey, jwks_server: JwksServer) -> None:
    """One fetch serves until max-age runs out; then the keys are fetched again."""
    verifier = Verifier(jwks_server.url, AUDIENCE)
    for offset in (0, 60, 299):
        verifier.verify(
            token(key, issuer=jwks_server.url, now=NOW + timedelta(seconds=offset)), now=NOW + timedelta(seconds=offset)
        )
    assert fetches(jwks_server) == 1
    verifier.verify(
        token(key, issuer=jwks_server.url, now=NOW + timedelta(seconds=301)), now=NOW + timedelta(seconds=301)
    )
    assert fetches(jwks_server) == 2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("max-age=1", 30), ("max-age=999999", 3600), ("no-cache", 300), ("max-age=" + "9" * 20, 3600),
     ("max-age=" + "9" * 5000, 3600), ("max-age=" + "0" * 5000 + "60", 60)],
)  # fmt: skip
def test_max_age_is_clamped(key: SigningKey, jwks_server: JwksServer, header: str, seconds: int) -> None:
    """Cache-Control is honoured between a floor (30 s) and a ceiling (1 h); 5 min without max-age."""
    jwks_server.cache_control = header
    verifier = Verifier(jwks_server.url, AUDIENCE)
    verifier.verify(token(key, issuer=jwks_server.url), now=NOW)
    later = NOW + timedelta(seconds=seconds - 1)
    verifier.keys.ring(later)
    assert fetches(jwks_server) == 1
    verifier.keys.ring(later + timedelta(seconds=1))
    assert fetches(jwks_server) == 2


def test_random_unknown_kids_cause_at_most_one_fetch_per_interval(key: SigningKey, jwks_server: JwksServer) -> None:
    """A flood of tokens with made-up kids refetches once per 10 s, not once per token."""
    verifier = Verifier(jwks_server.url, AUDIENCE)
    verifier.verify(token(key, issuer=jwks_server.url), now=NOW)
    strangers = [generate_key("EdDSA", now=NOW) for _ in range(3)]
    for i in range(40):  # 20 s of strangers, two a second
        moment = NOW + timedelta(seconds=i / 2)
        with pytest.raises(UnknownKey):
            verifier.verify(token(strangers[i % 3], issuer=jwks_server.url, now=moment), now=moment)
    assert fetches(jwks_server) == 2  # the first load, then one refetch after 10 s


def test_new_key_is_picked_up_on_unknown_kid(key: SigningKey, jwks_server: JwksServer) -> None:
    """After a rotation on the server, a token signed by the new key triggers a refetch and verifies."""
    verifier = Verifier(jwks_server.url, AUDIENCE)
    verifier.verify(token(key, issuer=jwks_server.url), now=NOW)
    new_key = generate_key("ES256", now=NOW)
    jwks_server.jwks = jwks_of(new_key, key)
    later = NOW + timedelta(seconds=45)
    assert verifier.verify(token(new_key, issuer=jwks_server.url, now=later), now=later).sub == "user-1"


def test_last_good_keys_survive_an_outage(key: SigningKey, jwks_server: JwksServer) -> None:
    """When the server is down at refresh time, the keys we had keep working."""
    verifier = Verifier(jwks_server.url, AUDIENCE)
    verifier.verify(token(key, issuer=jwks_server.url), now=NOW)
    jwks_server.down = True
    later = NOW + timedelta(hours=2)
    assert verifier.verify(token(key, issuer=jwks_server.url, now=later), now=later)
    assert fetches(jwks_server) == 2


def test_no_keys_at_all_is_unavailable(key: SigningKey, jwks_server: JwksServer) -> None:
    """Never having fetched keys is an outage (503), not a bad token; retries are spaced out."""
    jwks_server.down = True
    verifier = Verifier(jwks_server.url, AUDIENCE)
    for seconds in (0, 1, 2):
        with pytest.raises(Unavailable):
            verifier.verify(token(key, issuer=jwks_server.url), now=NOW + timedelta(seconds=seconds))
    assert fetches(jwks_server) == 1
    jwks_server.down = False
    later = NOW + timedelta(seconds=6)
    assert verifier.verify(token(key, issuer=jwks_server.url, now=later), now=later)


def test_metadata_jwks_uri_is_used_only_for_our_issuer(key: SigningKey, jwks_server: JwksServer) -> None:
    """RFC 8414 §3.3: metadata naming another issuer is ignored; ours points to its jwks_uri."""
    jwks_server.metadata_issuer = jwks_server.url
    Verifier(jwks_server.url, AUDIENCE).keys.ring(NOW)
    assert "/keys/v2" in jwks_server.hits
    jwks_server.hits.clear()
    jwks_server.metadata_issuer = "https://evil.example"
    Verifier(jwks_server.url, AUDIENCE).keys.ring(NOW)
    assert "/keys/v2" not in jwks_server.hits
    assert "/.well-known/jwks.json" in jwks_server.hits


def test_policy_is_configurable(key: SigningKey, jwks_server: JwksServer) -> None:
    """A shorter unknown-kid interval allows a quicker refetch."""
    policy = JwksPolicy(unknown_kid_interval=timedelta(seconds=1))
    verifier = Verifier(jwks_server.url, AUDIENCE, policy=policy)
    verifier.keys.ring(NOW)
    verifier.keys.ring(NOW + timedelta(seconds=2), kid="unknown")
    assert fetches(jwks_server) == 2


def test_a_single_static_jwk_is_enough(key: SigningKey) -> None:
    """A Verifier can be given one public JWK instead of a set."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=key.public_jwk())
    assert verifier.verify(token(key), now=NOW).sub == "user-1"


def test_keyring_from_jwks_skips_unusable_keys(key: SigningKey) -> None:
    """Keys of other types in the set are skipped, not fatal."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks={"keys": [{"kty": "oct", "k": "abc"}, key.public_jwk(), "junk"]})
    ring: KeyRing = verifier.keys.ring(NOW)
    assert key.kid in ring
