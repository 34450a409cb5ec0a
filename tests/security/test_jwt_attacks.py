"""Integration tests of known JWT attacks: the real HTTP API in-process on a real SQLite file.

Every attack is sent as a bearer token to ``GET /v1/auth/me`` and must be answered 401
``invalid_token`` with an RFC 6750 challenge, never 500. Forged tokens are built by hand
from the claims of a real token and signed with the server's real private key, so the
attack named by the test is the only thing wrong with them; a control test proves that
such a hand-built token is otherwise accepted. Where the HTTP layer cannot even carry the
attack (a token that is not a string), ``verify_access_token`` is called directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyturn.core.errors import MalformedToken
from keyturn.core.keys import SigningKey, generate_key
from keyturn.core.tokens import issue_access_token, verify_access_token
from keyturn.server.service import Service
from tests.conftest import Clock
from tests.helpers import login, register

pytestmark = pytest.mark.anyio

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


@pytest.fixture
async def target(client: httpx.AsyncClient, service: Service, clock: Clock) -> Target:
    await register(client)
    tokens = await login(client)
    ring = await service.ctx.keys.ring(clock())
    key = ring.signer(clock())
    claims = decode_segment(tokens["access_token"].split(".")[1])
    return Target(client, service, clock, key, tokens["access_token"], tokens["refresh_token"], claims)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
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


@pytest.fixture
def attacker(clock: Clock) -> Iterator[Attacker]:
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


def attacker_token(target: Target, attacker: Attacker, **header: Any) -> str:
    """Our claims, signed by the attacker's key, with a header pointing at the attacker's key."""
    head = {"alg": "ES256", "typ": "at+jwt", "kid": attacker.key.kid, **header}
    signing_input = f"{segment(head)}.{segment(target.payload())}"
    return f"{signing_input}.{es_sign(signing_input, attacker.key)}"


# --- control -------------------------------------------------------------------------------------


async def test_control_hand_built_token_is_accepted(target: Target) -> None:
    """The forging harness is sound: a hand-built token with nothing wrong is accepted."""
    assert (await target.me(target.access_token)).status_code == 200
    response = await target.me(target.forge())
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == target.claims["sub"]


# --- algorithm -----------------------------------------------------------------------------------


async def test_alg_none_without_signature(target: Target) -> None:
    for alg in ("none", "None", "NONE"):
        signing_input = f"{segment(target.header(alg=alg))}.{segment(target.payload())}"
        assert_refused(await target.me(f"{signing_input}."))


async def test_alg_none_with_signature(target: Target) -> None:
    """alg none carrying the real signature of the same input is still refused."""
    signing_input = f"{segment(target.header(alg='none'))}.{segment(target.payload())}"
    assert_refused(await target.me(f"{signing_input}.{es_sign(signing_input, target.key)}"))


async def test_hs256_signed_with_public_key_pem(target: Target) -> None:
    """HMAC-with-public-key confusion: the PEM of our public key as the HS256 secret."""
    pem = target.key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, pem.strip()):
        signing_input = f"{segment(target.header(alg='HS256'))}.{segment(target.payload())}"
        assert_refused(await target.me(f"{signing_input}.{hs256(signing_input, secret)}"))


async def test_hs256_signed_with_public_key_jwk_json(target: Target) -> None:
    """HMAC-with-public-key confusion: our published JWK, in several JSON spellings, as the secret."""
    published = (await target.client.get("/.well-known/jwks.json")).json()["keys"]
    jwk = next(k for k in published if k["kid"] == target.key.kid)
    secrets = [
        json.dumps(jwk).encode(),
        json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode(),
        target.key.algorithm.to_jwk(target.key.public_key).encode(),
    ]
    for secret in secrets:
        signing_input = f"{segment(target.header(alg='HS256'))}.{segment(target.payload())}"
        assert_refused(await target.me(f"{signing_input}.{hs256(signing_input, secret)}"))


async def test_alg_other_than_the_key_is_pinned_to(target: Target) -> None:
    """A real ES256 signature under a header claiming ES384 (or RS256) is refused."""
    for alg in ("ES384", "RS256", "EdDSA"):
        assert_refused(await target.me(target.forge(header=target.header(alg=alg))))


# --- kid -----------------------------------------------------------------------------------------


async def test_kid_unknown(target: Target) -> None:
    assert_refused(await target.me(target.forge(header=target.header(kid=b64url(uuid.uuid4().bytes)))))


async def test_kid_path_traversal(target: Target) -> None:
    for kid in ("../../etc/passwd", "../../../../../../dev/null", "..\\..\\windows\\win.ini"):
        assert_refused(await target.me(target.forge(header=target.header(kid=kid))))


async def test_kid_sql_injection(target: Target) -> None:
    for kid in ("' OR 1=1 --", f"{target.key.kid}' OR '1'='1", "'; DROP TABLE signing_keys; --"):
        assert_refused(await target.me(target.forge(header=target.header(kid=kid))))


async def test_kid_not_a_string(target: Target) -> None:
    for kid in (123, None, True, [target.key.kid], {"kid": target.key.kid}):
        assert_refused(await target.me(target.forge(header=target.header(kid=kid))))


async def test_kid_missing(target: Target) -> None:
    assert_refused(await target.me(target.forge(header=target.header(kid=DROP))))


# --- headers that point at keys: nothing is ever fetched ----------------------------------------


async def test_jku_header_is_refused_and_never_fetched(target: Target, attacker: Attacker) -> None:
    url = f"{attacker.server.url}/jwks.json"
    assert_refused(await target.me(attacker_token(target, attacker, jku=url)))
    assert_refused(await target.me(attacker_token(target, attacker, jku=url, kid=target.key.kid)))
    assert attacker.server.hits == []


async def test_x5u_header_is_refused_and_never_fetched(target: Target, attacker: Attacker) -> None:
    url = f"{attacker.server.url}/cert.pem"
    assert_refused(await target.me(attacker_token(target, attacker, x5u=url)))
    assert_refused(await target.me(attacker_token(target, attacker, x5u=url, kid=target.key.kid)))
    assert attacker.server.hits == []


async def test_jwk_header_with_embedded_attacker_key(target: Target, attacker: Attacker) -> None:
    """A token signed by the attacker's key, which it carries in its own ``jwk`` header."""
    jwk = attacker.key.public_jwk()
    assert_refused(await target.me(attacker_token(target, attacker, jwk=jwk)))
    assert_refused(await target.me(attacker_token(target, attacker, jwk=jwk, kid=target.key.kid)))
    assert attacker.server.hits == []


async def test_x5c_header_with_attacker_certificate(target: Target, attacker: Attacker) -> None:
    x5c = [base64.b64encode(attacker.cert_der).decode()]
    assert_refused(await target.me(attacker_token(target, attacker, x5c=x5c)))
    assert_refused(await target.me(attacker_token(target, attacker, x5c=x5c, kid=target.key.kid)))
    assert attacker.server.hits == []


async def test_crit_header(target: Target) -> None:
    """RFC 7515 §4.1.11: we understand no extension, so any ``crit`` is refused."""
    for crit in (["exp"], ["b64"], []):
        assert_refused(await target.me(target.forge(header=target.header(crit=crit))))


async def test_crit_header_with_b64_false(target: Target) -> None:
    """RFC 7797 unencoded payload: a signature over the raw payload must not be honoured."""
    header = segment(target.header(crit=["b64"], b64=False))
    payload = json.dumps(target.payload(), separators=(",", ":"))
    signature = es_sign(f"{header}.{payload}", target.key)
    assert_refused(await target.me(f"{header}.{segment(payload)}.{signature}"))


# --- typ -----------------------------------------------------------------------------------------


async def test_typ_jwt_instead_of_at_jwt(target: Target) -> None:
    """RFC 9068 §4: an ID token or other JWT (typ JWT) is not an access token."""
    for typ in ("JWT", "jwt", "application/jwt", "at+JWT ", "dpop+jwt"):
        assert_refused(await target.me(target.forge(header=target.header(typ=typ))))


async def test_typ_missing(target: Target) -> None:
    assert_refused(await target.me(target.forge(header=target.header(typ=DROP))))


# --- claims --------------------------------------------------------------------------------------


async def test_iss_wrong(target: Target) -> None:
    for iss in ("https://evil.example", target.claims["iss"] + "/", target.claims["iss"].upper(), ""):
        assert_refused(await target.me(target.forge(payload=target.payload(iss=iss))))


async def test_aud_wrong(target: Target) -> None:
    for aud in ("https://api.other.example", ["https://api.other.example"], [], 123):
        assert_refused(await target.me(target.forge(payload=target.payload(aud=aud))))


async def test_exp_missing(target: Target) -> None:
    assert_refused(await target.me(target.forge(payload=target.payload(exp=DROP))))


async def test_exp_as_string(target: Target) -> None:
    for exp in (str(target.claims["exp"]), f"{target.claims['exp']}.0", "9999999999"):
        assert_refused(await target.me(target.forge(payload=target.payload(exp=exp))))


async def test_exp_not_a_plain_number(target: Target) -> None:
    """Booleans, null, absurd values and negative numbers are not NumericDates."""
    for exp in (True, None, 10**30, -1, float("inf")):
        assert_refused(await target.me(target.forge(payload=target.payload(exp=exp))))


async def test_expired_past_exp_plus_leeway(target: Target) -> None:
    """Accepted up to ``exp + leeway``, refused from then on (the session itself is still live)."""
    leeway = target.service.settings.leeway.total_seconds()
    exp = target.claims["exp"]
    target.clock.advance(exp - target.clock().timestamp() + leeway - 1)
    assert (await target.me(target.access_token)).status_code == 200
    target.clock.advance(1)
    assert_refused(await target.me(target.access_token))
    target.clock.advance(3600)
    assert_refused(await target.me(target.access_token))


async def test_nbf_in_the_future(target: Target) -> None:
    nbf = int(target.clock().timestamp()) + 60
    assert_refused(await target.me(target.forge(payload=target.payload(nbf=nbf))))


async def test_iat_in_the_future(target: Target) -> None:
    iat = int(target.clock().timestamp()) + 60
    assert_refused(await target.me(target.forge(payload=target.payload(iat=iat))))


async def test_sub_of_another_user_in_our_session(target: Target) -> None:
    """A validly signed token naming another user in this user's session is refused."""
    await register(target.client, "bob")
    bob = decode_segment((await login(target.client, "bob"))["access_token"].split(".")[1])
    assert_refused(await target.me(target.forge(payload=target.payload(sub=bob["sub"]))))


# --- signature -----------------------------------------------------------------------------------


async def test_signature_stripped_empty_third_segment(target: Target) -> None:
    head, body, _ = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}."))


async def test_signature_stripped_two_segments(target: Target) -> None:
    head, body, _ = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}"))


async def test_signature_swapped_from_another_valid_token(target: Target) -> None:
    other = (await target.login_again())["access_token"]
    assert (await target.me(other)).status_code == 200
    head, body, _ = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}.{other.split('.')[2]}"))


async def test_signature_reencoded_with_standard_base64_alphabet(target: Target) -> None:
    """The same signature bytes spelled with ``+/`` instead of ``-_`` are refused."""
    signing_input = f"{segment(target.header())}.{segment(target.payload())}"
    for _ in range(200):  # ECDSA signatures are randomised: find one whose spelling differs
        signature = es_sign(signing_input, target.key)
        if "-" in signature or "_" in signature:
            break
    else:
        pytest.fail("no signature with - or _ in 200 tries")
    assert (await target.me(f"{signing_input}.{signature}")).status_code == 200
    standard = signature.replace("-", "+").replace("_", "/")
    assert_refused(await target.me(f"{signing_input}.{standard}"))


async def test_signature_reencoded_with_padding(target: Target) -> None:
    """The same signature bytes with ``=`` padding are refused."""
    head, body, signature = target.access_token.split(".")
    padded = signature + "=" * (-len(signature) % 4)
    assert padded != signature
    assert_refused(await target.me(f"{head}.{body}.{padded}"))
    assert_refused(await target.me(f"{head}.{body}.{signature}=="))


async def test_signature_non_canonical_trailing_bits(target: Target) -> None:
    head, body, signature = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}.{non_canonical(signature)}"))


async def test_signature_high_s_twin(target: Target) -> None:
    """The server's own token with S replaced by n - S (a valid ECDSA signature too) is refused."""
    head, body, signature = target.access_token.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    s = int.from_bytes(raw[32:], "big")
    assert 0 < s <= P256_N // 2  # the server issues the low-S form only
    assert (await target.me(target.access_token)).status_code == 200
    assert_refused(await target.me(f"{head}.{body}.{b64url(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"))


# --- encoding and JSON ---------------------------------------------------------------------------


def _json_with_unused_bits(value: dict[str, Any]) -> str:
    """The JSON of ``value``, padded with spaces until its base64url has unused trailing bits."""
    text = json.dumps(value, separators=(",", ":"))
    while len(text) % 3 == 0:
        text += " "
    return text


async def test_header_non_canonical_base64(target: Target) -> None:
    """Same header bytes, last character with a trailing bit set, validly signed: refused."""
    header = segment(_json_with_unused_bits(target.header()))
    payload = segment(target.payload())
    good = f"{header}.{payload}"
    assert (await target.me(f"{good}.{es_sign(good, target.key)}")).status_code == 200
    bad = f"{non_canonical(header)}.{payload}"
    assert_refused(await target.me(f"{bad}.{es_sign(bad, target.key)}"))


async def test_payload_non_canonical_base64(target: Target) -> None:
    """Same payload bytes, last character with a trailing bit set, validly signed: refused."""
    header = segment(target.header())
    payload = segment(_json_with_unused_bits(target.payload()))
    good = f"{header}.{payload}"
    assert (await target.me(f"{good}.{es_sign(good, target.key)}")).status_code == 200
    bad = f"{header}.{non_canonical(payload)}"
    assert_refused(await target.me(f"{bad}.{es_sign(bad, target.key)}"))


async def test_duplicate_json_keys_in_header(target: Target) -> None:
    """Two ``typ``: a last-wins parser would read at+jwt, a first-wins one JWT; we refuse."""
    key = target.key
    header = f'{{"alg":"{key.alg}","typ":"JWT","kid":"{key.kid}","typ":"at+jwt"}}'
    assert_refused(await target.me(target.forge(header=header)))
    header = f'{{"alg":"none","alg":"{key.alg}","typ":"at+jwt","kid":"{key.kid}"}}'
    assert_refused(await target.me(target.forge(header=header)))


async def test_duplicate_json_keys_in_payload(target: Target) -> None:
    """Two ``sub`` (another user's, then ours): a parser differential we refuse outright."""
    claims = json.dumps(target.payload(), separators=(",", ":"))
    payload = '{"sub":"' + str(uuid.uuid4()) + '",' + claims[1:]
    assert_refused(await target.me(target.forge(payload=payload)))


async def test_payload_not_a_json_object(target: Target) -> None:
    for payload in ("[]", '"claims"', "null", "NaN", '{"exp": NaN}', "{"):
        assert_refused(await target.me(target.forge(payload=payload)))


async def test_token_over_8_kib_is_refused_unparsed(target: Target) -> None:
    """A token past the 8 KiB cap (in a header block the server still reads) is refused before parsing."""
    head, _, signature = target.access_token.split(".")
    padding = b64url(json.dumps({"pad": "x" * 9_000}).encode())
    token = f"{head}.{padding}.{signature}"
    assert 12_000 <= len(token) < 14_000
    assert_refused(await target.me(token))
    assert_refused(await target.me("A" * 12_000))


async def test_token_of_100_kb_never_reaches_the_token_parser(target: Target) -> None:
    """A 100 KB token is a header block over the 16 KiB bound: 431 before any route or parser."""
    head, _, signature = target.access_token.split(".")
    token = f"{head}.{b64url(json.dumps({'pad': 'x' * 75_000}).encode())}.{signature}"
    assert len(token) >= 100_000
    for sent in (token, "A" * 100_000):
        response = await target.me(sent)
        assert (response.status_code, response.json()["error"]) == (431, "request_headers_too_large")


# --- tokens that are not ours, or no longer good -------------------------------------------------


async def test_refresh_token_as_bearer_access_token(target: Target) -> None:
    assert target.refresh_token.startswith("kt_rt_")
    assert_refused(await target.me(target.refresh_token))


async def test_token_of_another_keyturn_instance(target: Target) -> None:
    """Same issuer, audience, user and session ids, but signed by another deployment's key."""
    other = generate_key("ES256", now=target.clock())
    settings = target.service.settings
    token, _ = issue_access_token(
        other,
        issuer=settings.issuer,
        audience=settings.token_audience,
        subject=target.claims["sub"],
        session_id=target.claims["sid"],
        client_id=target.claims["client_id"],
        scope=target.claims["scope"],
        now=target.clock(),
        ttl=timedelta(minutes=15),
    )
    assert_refused(await target.me(token))


async def test_token_of_another_instance_claiming_our_kid(target: Target) -> None:
    """Another deployment's key, with the header naming our key: the signature does not verify."""
    other = generate_key("ES256", now=target.clock())
    signing_input = f"{segment(target.header())}.{segment(target.payload())}"
    assert_refused(await target.me(f"{signing_input}.{es_sign(signing_input, other)}"))


async def test_token_of_logged_out_session(target: Target) -> None:
    """The signature is valid and unexpired, but the session behind it has ended."""
    response = await target.client.post("/v1/auth/logout", headers={"authorization": f"Bearer {target.access_token}"})
    assert response.status_code == 204
    assert_refused(await target.me(target.access_token))


async def test_token_naming_a_session_that_does_not_exist(target: Target) -> None:
    for sid in (str(uuid.uuid4()), "not-a-uuid", "' OR 1=1 --"):
        assert_refused(await target.me(target.forge(payload=target.payload(sid=sid))))


async def test_non_string_token_objects_are_refused_by_verify(target: Target) -> None:
    """What no HTTP header can carry: bytes, None and other objects raise, never crash."""
    ring = await target.service.ctx.keys.ring(target.clock())
    settings = target.service.settings
    for token in (target.access_token.encode(), None, 0, [target.access_token], {"token": target.access_token}):
        with pytest.raises(MalformedToken):
            verify_access_token(
                token, ring, issuer=settings.issuer, audience=settings.token_audience, now=target.clock()
            )
