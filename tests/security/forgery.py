"""The forging harness of the JWT attack tests (tests/security/test_jwt_*.py).

Every attack is sent as a bearer token to ``GET /v1/auth/me`` and must be answered 401
``invalid_token`` with an RFC 6750 challenge and the reason of its own refusal, never 500. Forged
tokens are built by hand from the claims of a real token and signed with the server's real private
key, so the attack named by the test is the only thing wrong with them; a control test proves that
such a hand-built token is otherwise accepted. The attacker's key is served from a loopback URL
that records every fetch, so a test can prove nothing was fetched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyturn.core.keys import SigningKey, generate_key
from keyturn.server.service import Service
from tests.conftest import Clock
from tests.helpers import login

DROP = object()  # a header or claim value meaning "leave this member out"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # the order of P-256 (SEC 2 §2.4.2)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any] | str) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return b64url(text.encode())


def es_sign(signing_input: str, key: SigningKey) -> str:
    return b64url(key.sign(signing_input.encode()))


def hs256(signing_input: str, secret: bytes) -> str:
    return b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def decode_segment(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not DROP}


def non_canonical(part: str) -> str:
    """The same bytes spelled with a non-zero unused trailing bit in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(part) % 4 in (2, 3), "the segment needs unused trailing bits"
    spelled = part[:-1] + alphabet[alphabet.index(part[-1]) + 1]
    assert base64.urlsafe_b64decode(spelled + "=" * (-len(spelled) % 4)) == base64.urlsafe_b64decode(
        part + "=" * (-len(part) % 4)
    )
    return spelled


@dataclass
class Target:
    """A signed-in user, the server's signing key, and a way to forge tokens with it."""

    client: httpx.AsyncClient
    service: Service
    clock: Clock
    key: SigningKey
    access_token: str
    refresh_token: str
    claims: dict[str, Any]

    def header(self, **changes: Any) -> dict[str, Any]:
        return changed({"alg": self.key.alg, "typ": "at+jwt", "kid": self.key.kid}, changes)

    def payload(self, **changes: Any) -> dict[str, Any]:
        return changed(self.claims, changes)

    def forge(self, header: dict[str, Any] | str | None = None, payload: dict[str, Any] | str | None = None) -> str:
        """A token with these segments, validly signed by the server's own key."""
        signing_input = f"{segment(header or self.header())}.{segment(payload or self.payload())}"
        return f"{signing_input}.{es_sign(signing_input, self.key)}"

    async def me(self, token: str) -> httpx.Response:
        return await self.client.get("/v1/auth/me", headers={"authorization": f"Bearer {token}"})

    async def login_again(self) -> dict[str, Any]:
        return await login(self.client)


# Why a token was refused, as the body's error_description says: each attack must be refused for
# its own reason (an alg-confusion token refused as "malformed" would prove nothing).
PINNED_ALG = "The token's algorithm is not the one its key is pinned to."
NOT_AN_ACCESS_TOKEN = "The token is not an access token (typ must be at+jwt)."
NOT_CANONICAL = "The access token is not canonical base64url."
NOT_JSON = "The access token is not valid JSON."
DUPLICATE = "The access token has a duplicate member."
BAD_EXP = "The access token claim 'exp' must be a number of seconds since 1970."
TOO_LONG = "The access token is missing or too long."  # refused unparsed, before any decoding


def header_refused(name: str) -> str:
    return f"The access token header '{name}' is not accepted."


def claim_invalid(name: str) -> str:
    return f"The access token claim '{name}' is missing or invalid."


def assert_refused(response: httpx.Response, reason: str) -> None:
    """401 ``invalid_token`` with an RFC 6750 challenge, refused for ``reason``."""
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_token", "error_description": reason}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


class _Recorder(BaseHTTPRequestHandler):
    """Serves the attacker's JWKS and certificate to anyone, and records who asked."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _LoopbackServer)
        server.hits.append(self.path)
        body = server.body
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _LoopbackServer(ThreadingHTTPServer):
    hits: list[str]
    body: bytes

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@dataclass
class Attacker:
    """An attacker's key pair and self-signed certificate, served from a loopback URL."""

    key: SigningKey
    cert_der: bytes
    server: _LoopbackServer


def _self_signed(key: SigningKey, clock: Clock) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(clock() - timedelta(days=1))
        .not_valid_after(clock() + timedelta(days=365))
        .sign(key.private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def attacker_token(target: Target, attacker: Attacker, **header: Any) -> str:
    """Our claims, signed by the attacker's key, with a header pointing at the attacker's key."""
    head = {"alg": "ES256", "typ": "at+jwt", "kid": attacker.key.kid, **header}
    signing_input = f"{segment(head)}.{segment(target.payload())}"
    return f"{signing_input}.{es_sign(signing_input, attacker.key)}"


@contextmanager
def serving_attacker(clock: Clock) -> Iterator[Attacker]:
    """A new attacker key pair, its JWKS served (and every fetch recorded) on loopback until exit."""
    key = generate_key("ES256", now=clock())
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    server = _LoopbackServer(("127.0.0.1", 0), _Recorder)
    server.hits = []
    server.body = json.dumps({"keys": [key.public_jwk()]}).encode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        # The recorder works: a fetch would be seen. Then forget this one.
        assert httpx.get(f"{server.url}/probe").status_code == 200
        assert server.hits == ["/probe"]
        server.hits.clear()
        yield Attacker(key, _self_signed(key, clock), server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
