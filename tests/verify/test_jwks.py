"""Tests of keyturn.verify.jwks: the JWKS cache, the Verifier's default key source.

Integration tests against a tiny JWKS server on loopback that counts its requests (no mocking of
httpx), and unit tests of reading a static JWK Set.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from keyturn.core.errors import Unavailable, UnknownKey
from keyturn.core.keys import KeyRing, SigningKey, generate_key
from keyturn.verify import Verifier
from keyturn.verify.jwks import JwksCache, JwksPolicy
from tests.verify.test_verify import AUDIENCE, ISSUER, NOW, jwks_of, token


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("ES256", now=NOW)


def cache(verifier: Verifier) -> JwksCache:
    """The verifier's key source, a JWKS cache when it is given no ``keys``."""
    assert isinstance(verifier.keys, JwksCache)
    return verifier.keys


@dataclass
class JwksServer:
    """A loopback JWKS endpoint whose keys, Cache-Control and availability the test controls."""

    url: str
    jwks: dict[str, Any]
    cache_control: str = "public, max-age=300"
    hits: list[str] = field(default_factory=list)
    down: bool = False
    metadata_issuer: str | None = None
    delay: float = 0.0


@pytest.fixture
def jwks_server(key: SigningKey) -> Iterator[JwksServer]:
    state = JwksServer(url="", jwks=jwks_of(key))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            time.sleep(state.delay)
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
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)  # quick shutdown
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


METADATA = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION = "/.well-known/openid-configuration"


def fetches(server: JwksServer) -> int:
    """How many times the keys were fetched (metadata requests aside)."""
    return sum(1 for p in server.hits if p not in (METADATA, OPENID_CONFIGURATION))


def test_concurrent_first_requests_wait_for_the_one_fetch(jwks_server: JwksServer) -> None:
    """Threads asking a cold cache at once all get the keys of its one fetch (they were refused
    with Unavailable while the first one fetched)."""
    jwks_server.delay = 0.3
    keys = JwksCache(jwks_server.url)
    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: keys.ring(NOW), range(8)))
    assert all(ring is rings[0] for ring in rings)
    assert fetches(jwks_server) == 1


@pytest.mark.anyio
async def test_concurrent_first_requests_wait_for_the_one_fetch_async(jwks_server: JwksServer) -> None:
    """The same for tasks: every one gets the keys of the one fetch."""
    jwks_server.delay = 0.3
    keys = JwksCache(jwks_server.url)
    rings = await asyncio.gather(*(keys.ring_async(NOW) for _ in range(8)))
    assert all(ring is rings[0] for ring in rings)
    assert fetches(jwks_server) == 1


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
    cache(verifier).ring(later)
    assert fetches(jwks_server) == 1
    cache(verifier).ring(later + timedelta(seconds=1))
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
    """Never having fetched keys is an outage (503), not a bad token; retries are spaced out, and
    the metadata's 503 is a failure, not a reason to guess the JWKS's URL. Once the server is back
    (and has no metadata), the default JWKS path serves."""
    jwks_server.down = True
    verifier = Verifier(jwks_server.url, AUDIENCE, revocations=False)  # only the key cache asks
    for seconds in (0, 1, 2):
        with pytest.raises(Unavailable):
            verifier.verify(token(key, issuer=jwks_server.url), now=NOW + timedelta(seconds=seconds))
    assert jwks_server.hits == [METADATA]
    jwks_server.down = False
    later = NOW + timedelta(seconds=6)
    assert verifier.verify(token(key, issuer=jwks_server.url, now=later), now=later)
    assert jwks_server.hits == [METADATA, METADATA, OPENID_CONFIGURATION, "/.well-known/jwks.json"]


def test_metadata_jwks_uri_is_used_only_for_our_issuer(key: SigningKey, jwks_server: JwksServer) -> None:
    """RFC 8414 §3.3: our metadata points to its jwks_uri; metadata about another issuer (even one
    differing by a trailing slash) is refused: no keys, and no default JWKS path tried instead."""
    jwks_server.metadata_issuer = jwks_server.url
    cache(Verifier(jwks_server.url, AUDIENCE)).ring(NOW)
    assert jwks_server.hits == [METADATA, "/keys/v2"]
    for other in ("https://evil.example", f"{jwks_server.url}/"):
        jwks_server.hits.clear()
        jwks_server.metadata_issuer = other
        with pytest.raises(Unavailable):
            cache(Verifier(jwks_server.url, AUDIENCE)).ring(NOW)
        assert jwks_server.hits == [METADATA]


def test_policy_is_configurable(key: SigningKey, jwks_server: JwksServer) -> None:
    """A shorter unknown-kid interval allows a quicker refetch."""
    policy = JwksPolicy(unknown_kid_interval=timedelta(seconds=1))
    verifier = Verifier(jwks_server.url, AUDIENCE, policy=policy)
    cache(verifier).ring(NOW)
    cache(verifier).ring(NOW + timedelta(seconds=2), kid="unknown")
    assert fetches(jwks_server) == 2


def test_a_single_static_jwk_is_enough(key: SigningKey) -> None:
    """A Verifier can be given one public JWK instead of a set."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks=key.public_jwk())
    assert verifier.verify(token(key), now=NOW).sub == "user-1"


def test_keyring_from_jwks_skips_unusable_keys(key: SigningKey) -> None:
    """Keys of other types in the set are skipped, not fatal."""
    verifier = Verifier(ISSUER, AUDIENCE, jwks={"keys": [{"kty": "oct", "k": "abc"}, key.public_jwk(), "junk"]})
    ring: KeyRing = cache(verifier).ring(NOW)
    assert key.kid in ring
