"""Unit tests (no I/O) of keyturn.core.tokens: RFC 9068 access tokens verified with the rules of RFC 8725.

Every refused token below except the one under test is well formed and signed
with the ring's real private key, so the rule named by the test is the only
thing wrong with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keyturn.core.errors import (
    BadSignature,
    InsufficientScope,
    InvalidClaim,
    InvalidToken,
    MalformedToken,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    UnsupportedHeader,
)
from keyturn.core.keys import ALGORITHMS, KeyRing, SigningKey, generate_key
from keyturn.core.masterkey import MasterKey
from keyturn.core.refresh import RefreshTokenCodec
from keyturn.core.tokens import (
    MAX_TOKEN_LENGTH,
    AccessClaims,
    _b64decode,
    _header,
    issue_access_token,
    scope_names,
    verify_access_token,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW = int(T0.timestamp())
TTL = timedelta(minutes=15)
ISSUER = "https://auth.keyturn.test"
AUDIENCE = "https://api.keyturn.test"
MISSING = object()
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # the order of P-256 (SEC 2 §2.4.2)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("ES256", now=T0)


@pytest.fixture(scope="module")
def keyring(key: SigningKey) -> KeyRing:
    return KeyRing([key], token_ttl=TTL, leeway=timedelta(seconds=5))


@pytest.fixture(scope="module")
def other_keys() -> dict[str, SigningKey]:
    """Keys of every algorithm that are not in ``keyring``; RSA generation is slow, so once per module."""
    return {alg: generate_key(alg, now=T0) for alg in ("ES256", "EdDSA", "RS256")}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """Valid access-token claims at T0; a change to ``MISSING`` removes the claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": NOW + 900,
        "iat": NOW,
        "jti": uuid.uuid4().hex,
        "sid": "session-1",
        "client_id": "web",
        "scope": "profile",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not MISSING}


def header_for(key: SigningKey, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not MISSING}


def sign_segments(header_segment: str, payload_segment: str, signer: SigningKey) -> str:
    """A compact JWS over the given segments, signed with ``signer``'s private key whatever the header says."""
    signing_input = f"{header_segment}.{payload_segment}".encode()
    return f"{header_segment}.{payload_segment}.{b64url(signer.sign(signing_input))}"


def forge(signer: SigningKey, header: dict[str, Any] | None = None, payload: dict[str, Any] | None = None) -> str:
    return sign_segments(segment(header or header_for(signer)), segment(payload or claims()), signer)


def verify(token: object, keyring: KeyRing, **kwargs: Any) -> AccessClaims:
    kwargs.setdefault("issuer", ISSUER)
    kwargs.setdefault("audience", AUDIENCE)
    kwargs.setdefault("now", T0)
    return verify_access_token(token, keyring, **kwargs)


def issue(key: SigningKey, **kwargs: Any) -> tuple[str, int]:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "user-1",
        "session_id": "session-1",
        "client_id": "web",
        "scope": "profile email",
        "now": T0,
        "ttl": TTL,
    }
    values.update(kwargs)
    return issue_access_token(key, **values)


def same_bytes_other_text(seg: str) -> str:
    """The segment with the unused low bits of its last character set: same bytes, not canonical."""
    assert len(seg) % 4 in (2, 3), "segment has no unused bits"
    index = B64_ALPHABET.index(seg[-1])
    altered = seg[:-1] + B64_ALPHABET[index | 1]
    assert altered != seg
    assert base64.urlsafe_b64decode(altered + "=" * (-len(altered) % 4)) == base64.urlsafe_b64decode(
        seg + "=" * (-len(seg) % 4)
    )
    return altered


# --- the happy path ------------------------------------------------------------------------------------


def test_round_trip_returns_every_claim_and_header(key: SigningKey, keyring: KeyRing) -> None:
    token, exp = issue(key, auth_time=T0 - timedelta(hours=1))
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}
    result = verify(token, keyring)
    assert exp == NOW + 900
    assert (result.iss, result.sub, result.aud, result.exp, result.iat) == (ISSUER, "user-1", (AUDIENCE,), exp, NOW)
    assert (result.sid, result.client_id, result.scope) == ("session-1", "web", ("profile", "email"))
    assert result.auth_time == NOW - 3600
    assert len(result.jti) == 32
    assert result.expires_at == T0 + TTL
    assert set(result.raw) == {"iss", "sub", "aud", "exp", "iat", "jti", "sid", "client_id", "scope", "auth_time"}


def test_auth_time_is_absent_unless_given(key: SigningKey, keyring: KeyRing) -> None:
    result = verify(issue(key)[0], keyring)
    assert result.auth_time is None
    assert "auth_time" not in result.raw


@pytest.mark.parametrize("verified", [True, False])
def test_email_verified_is_carried_when_given(verified: bool, key: SigningKey, keyring: KeyRing) -> None:
    result = verify(issue(key, email_verified=verified)[0], keyring)
    assert result.email_verified is verified
    assert result.raw["email_verified"] is verified


def test_email_verified_is_absent_unless_given(key: SigningKey, keyring: KeyRing) -> None:
    result = verify(issue(key)[0], keyring)
    assert result.email_verified is None
    assert "email_verified" not in result.raw


@pytest.mark.parametrize("value", ["true", 1, None, {"value": True}])
def test_email_verified_as_anything_but_a_boolean_says_nothing(
    value: object, key: SigningKey, keyring: KeyRing
) -> None:
    """Another issuer's ``"email_verified": "true"`` is not taken for a verified address (fail closed)."""
    result = verify(forge(key, payload=claims(email_verified=value)), keyring)
    assert result.email_verified is None


def test_each_token_has_a_fresh_jti(key: SigningKey, keyring: KeyRing) -> None:
    assert verify(issue(key)[0], keyring).jti != verify(issue(key)[0], keyring).jti


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_round_trip_with_every_algorithm(alg: str, other_keys: dict[str, SigningKey]) -> None:
    key = other_keys[alg]
    token, _ = issue(key)
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert verify(token, KeyRing([key], token_ttl=TTL, leeway=timedelta(0))).sub == "user-1"


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
def test_issued_token_is_the_compact_jws_pyjwt_builds(alg: str, other_keys: dict[str, SigningKey]) -> None:
    """Built by hand, a token is byte for byte PyJWT's compact JWS of the same claims (deterministic algs)."""
    key = other_keys[alg]
    token, _ = issue(key, auth_time=T0)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert token == jwt.encode(claims, key.private_key, algorithm=alg, headers={"kid": key.kid, "typ": "at+jwt"})


def test_not_after_caps_exp(key: SigningKey, keyring: KeyRing) -> None:
    token, exp = issue(key, not_after=T0 + timedelta(seconds=60))
    assert exp == NOW + 60
    assert verify(token, keyring).exp == NOW + 60
    with pytest.raises(TokenExpired):
        verify(token, keyring, now=T0 + timedelta(seconds=60))


def test_not_after_later_than_ttl_does_not_extend_exp(key: SigningKey) -> None:
    assert issue(key, not_after=T0 + timedelta(days=1))[1] == NOW + 900


# --- header rules (RFC 8725 §3.1, §3.11; RFC 9068 §4) ---------------------------------------------------


def test_alg_none_refused(key: SigningKey, keyring: KeyRing) -> None:
    token = f"{segment(header_for(key, alg='none'))}.{segment(claims())}."
    with pytest.raises(UnsupportedHeader) as excinfo:
        verify(token, keyring)
    assert excinfo.value.header == "alg"


def test_missing_alg_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(UnsupportedHeader) as excinfo:
        verify(forge(key, header=header_for(key, alg=MISSING)), keyring)
    assert excinfo.value.header == "alg"


def test_hs256_signed_with_the_public_key_pem_refused(key: SigningKey, keyring: KeyRing) -> None:
    pem = key.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{segment(header_for(key, alg='HS256'))}.{segment(claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(UnsupportedHeader) as excinfo:
        verify(f"{signing_input}.{b64url(mac)}", keyring)
    assert excinfo.value.header == "alg"


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_alg_swapped_to_another_asymmetric_alg_refused(
    alg: str, key: SigningKey, keyring: KeyRing, other_keys: dict[str, SigningKey]
) -> None:
    token = sign_segments(segment(header_for(key, alg=alg)), segment(claims()), other_keys[alg])
    with pytest.raises(UnsupportedHeader) as excinfo:
        verify(token, keyring)
    assert excinfo.value.header == "alg"


def test_alg_swapped_to_es256_on_an_rsa_kid_refused(other_keys: dict[str, SigningKey]) -> None:
    rsa, ec = other_keys["RS256"], other_keys["ES256"]
    token = sign_segments(segment(header_for(rsa, alg="ES256")), segment(claims()), ec)
    with pytest.raises(UnsupportedHeader):
        verify(token, KeyRing([rsa, ec], token_ttl=TTL, leeway=timedelta(0)))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", "at+jwt ", "", 1, None, MISSING])
def test_typ_other_than_at_jwt_refused(typ: object, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(UnsupportedHeader) as excinfo:
        verify(forge(key, header=header_for(key, typ=typ)), keyring)
    assert excinfo.value.header == "typ"


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+JWT"])
def test_typ_at_jwt_accepted_in_both_forms(typ: str, key: SigningKey, keyring: KeyRing) -> None:
    assert verify(forge(key, header=header_for(key, typ=typ)), keyring).sub == "user-1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("jwk", {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
        ("cty", "JWT"),
        ("b64", False),
        ("zip", "DEF"),
    ],
)
def test_headers_that_point_elsewhere_or_change_processing_refused(
    name: str, value: object, key: SigningKey, keyring: KeyRing
) -> None:
    with pytest.raises(UnsupportedHeader) as excinfo:
        verify(forge(key, header=header_for(key, **{name: value})), keyring)
    assert excinfo.value.header == name


@pytest.mark.parametrize("name", ["x5t", "x5t#S256"])
def test_certificate_thumbprint_headers_pass(name: str, key: SigningKey, keyring: KeyRing) -> None:
    """Other issuers add x5t or x5t#S256 (a thumbprint, read by nothing here): not a reason to refuse."""
    assert verify(forge(key, header=header_for(key, **{name: "AAAA"})), keyring).sub == "user-1"


def test_unknown_kid_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(UnknownKey) as excinfo:
        verify(forge(key, header=header_for(key, kid="not-a-kid")), keyring)
    assert excinfo.value.kid == "not-a-kid"


@pytest.mark.parametrize("kid", [123, None, ["kid"], {"k": 1}, MISSING])
def test_non_string_or_missing_kid_refused(kid: object, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(UnknownKey) as excinfo:
        verify(forge(key, header=header_for(key, kid=kid)), keyring)
    assert excinfo.value.kid is None


def test_token_from_another_instance_refused(keyring: KeyRing, other_keys: dict[str, SigningKey]) -> None:
    token, _ = issue(other_keys["ES256"])
    with pytest.raises(UnknownKey):
        verify(token, keyring)


def test_signature_from_another_key_with_the_same_kid_refused(
    key: SigningKey, keyring: KeyRing, other_keys: dict[str, SigningKey]
) -> None:
    token = sign_segments(segment(header_for(key)), segment(claims()), other_keys["ES256"])
    with pytest.raises(BadSignature) as excinfo:
        verify(token, keyring)
    assert excinfo.value.kid == key.kid


def test_token_signed_by_a_retired_key_refused(key: SigningKey) -> None:
    from dataclasses import replace

    retired = KeyRing([replace(key, retired_at=T0)], token_ttl=TTL, leeway=timedelta(0))
    with pytest.raises(UnknownKey):
        verify(issue(key)[0], retired)


def test_cached_header_does_not_let_another_header_through(
    key: SigningKey, keyring: KeyRing, other_keys: dict[str, SigningKey]
) -> None:
    """After a key's header is remembered, tokens naming that kid with another typ, alg or member are still refused."""
    verify(issue(key)[0], keyring)
    verify(forge(key), keyring)
    refused = {
        "typ": forge(key, header=header_for(key, typ="JWT")),
        "jku": forge(key, header=header_for(key, jku="https://attacker.example/jwks.json")),
        "alg": sign_segments(segment(header_for(key, alg="EdDSA")), segment(claims()), other_keys["EdDSA"]),
    }
    for name, token in refused.items():
        for _ in range(2):  # a refusal is not remembered either
            with pytest.raises(UnsupportedHeader) as excinfo:
                verify(token, keyring)
            assert excinfo.value.header == name


def test_cached_header_still_needs_its_key_in_the_ring(
    key: SigningKey, keyring: KeyRing, other_keys: dict[str, SigningKey]
) -> None:
    """The key comes from the ring on every call: a seen header does not outlive a retired or replaced key."""
    token, _ = issue(key)
    assert verify(token, keyring).sub == "user-1"
    retired = KeyRing([replace(key, retired_at=T0)], token_ttl=TTL, leeway=timedelta(0))
    with pytest.raises(UnknownKey):
        verify(token, retired)
    impostor = KeyRing([replace(other_keys["ES256"], kid=key.kid)], token_ttl=TTL, leeway=timedelta(0))
    with pytest.raises(BadSignature):
        verify(token, impostor)
    assert verify(token, keyring).sub == "user-1"


def test_refused_header_is_not_remembered(key: SigningKey, keyring: KeyRing) -> None:
    """Headers that fail a rule take no room in the header cache."""
    _header.cache_clear()
    for typ in ("JWT", "jwt", "application/jwt"):
        with pytest.raises(UnsupportedHeader):
            verify(forge(key, header=header_for(key, typ=typ)), keyring)
    assert _header.cache_info().currsize == 0


def test_header_cache_stays_bounded(key: SigningKey, keyring: KeyRing) -> None:
    """Any number of distinct well-formed headers (here with made-up kids) leaves the header cache at its bound."""
    bound = _header.cache_info().maxsize
    assert bound is not None
    assert bound <= 1024
    for n in range(bound + 20):
        with pytest.raises(UnknownKey):
            verify(forge(key, header=header_for(key, kid=f"made-up-{n}")), keyring)
    assert _header.cache_info().currsize == bound
    assert verify(issue(key)[0], keyring).sub == "user-1"


# --- signature -------------------------------------------------------------------------------------


def test_tampered_payload_refused(key: SigningKey, keyring: KeyRing) -> None:
    header, _, signature = issue(key)[0].split(".")
    with pytest.raises(BadSignature):
        verify(f"{header}.{segment(claims(sub='admin'))}.{signature}", keyring)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_stripped_signature_refused(alg: str, other_keys: dict[str, SigningKey]) -> None:
    key = other_keys[alg]
    header, payload, _ = issue(key)[0].split(".")
    with pytest.raises(BadSignature):
        verify(f"{header}.{payload}.", KeyRing([key], token_ttl=TTL, leeway=timedelta(0)))


def test_truncated_signature_refused(key: SigningKey, keyring: KeyRing) -> None:
    header, payload, signature = issue(key)[0].split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    with pytest.raises(BadSignature):
        verify(f"{header}.{payload}.{b64url(raw[:-1])}", keyring)


def raw_signature(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(".")[2] + "==")


def with_signature(token: str, raw: bytes) -> str:
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{b64url(raw)}"


def test_es256_signature_with_a_zero_byte_before_s_refused(key: SigningKey, keyring: KeyRing) -> None:
    """R || 0x00 || S names the same S, but ES256 signatures are exactly 64 bytes (RFC 7518 §3.4)."""
    token, _ = issue(key)
    raw = raw_signature(token)
    assert len(raw) == 64
    with pytest.raises(BadSignature):
        verify(with_signature(token, raw[:32] + b"\x00" + raw[32:]), keyring)


def test_es256_signature_in_der_form_refused(key: SigningKey, keyring: KeyRing) -> None:
    """The DER form of a valid signature is not the JWS form (RFC 7518 §3.4) and is refused."""
    token, _ = issue(key)
    raw = raw_signature(token)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    with pytest.raises(BadSignature):
        verify(with_signature(token, der), keyring)


def high_s_twin(token: str) -> str:
    """The token with its ES256 signature (r, s) replaced by (r, n - s), its equally valid ECDSA twin."""
    raw = raw_signature(token)
    return with_signature(token, raw[:32] + (P256_N - int.from_bytes(raw[32:], "big")).to_bytes(32, "big"))


def test_issued_es256_signatures_are_low_s(key: SigningKey, keyring: KeyRing) -> None:
    """Every issued ES256 token carries s <= n/2, the one form verification accepts."""
    for _ in range(300):  # OpenSSL alone gives a high S half the time
        token, _ = issue(key)
        assert 0 < int.from_bytes(raw_signature(token)[32:], "big") <= P256_N // 2
        assert verify(token, keyring).sub == "user-1"


def test_es256_signature_high_s_twin_refused(key: SigningKey, keyring: KeyRing) -> None:
    """(r, n - s) verifies as ECDSA whenever (r, s) does; the high-S twin of a token is refused as bad_signature."""
    token, _ = issue(key)
    twin = high_s_twin(token)
    header, payload, _ = twin.split(".")
    assert ALGORITHMS["ES256"].verify(f"{header}.{payload}".encode(), key.public_key, raw_signature(twin))
    assert verify(token, keyring).sub == "user-1"
    with pytest.raises(BadSignature) as excinfo:
        verify(twin, keyring)
    assert (excinfo.value.reason, excinfo.value.kid) == ("bad_signature", key.kid)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
@pytest.mark.parametrize("cut", ["append", "prepend", "drop_last", "double"])
def test_valid_signature_of_another_length_refused(alg: str, cut: str, other_keys: dict[str, SigningKey]) -> None:
    """A valid signature with a byte added or removed, or repeated, is refused for every algorithm."""
    key = other_keys[alg]
    token, _ = issue(key)
    raw = raw_signature(token)
    altered = {"append": raw + b"\x00", "prepend": b"\x00" + raw, "drop_last": raw[:-1], "double": raw + raw}[cut]
    ring = KeyRing([key], token_ttl=TTL, leeway=timedelta(0))
    assert verify(token, ring).sub == "user-1"
    with pytest.raises(BadSignature) as excinfo:
        verify(with_signature(token, altered), ring)
    assert excinfo.value.kid == key.kid


def test_no_single_character_change_is_accepted(key: SigningKey, keyring: KeyRing) -> None:
    token, _ = issue(key)
    for position, char in enumerate(token):
        if char == ".":
            continue
        altered = token[:position] + ("B" if char == "A" else "A") + token[position + 1 :]
        with pytest.raises(InvalidToken):
            verify(altered, keyring)


# --- encoding and JSON ---------------------------------------------------------------------------------


def test_padding_on_the_signature_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(MalformedToken):
        verify(issue(key)[0] + "==", keyring)


def test_padding_on_the_header_refused(key: SigningKey, keyring: KeyRing) -> None:
    header, payload, signature = issue(key)[0].split(".")
    with pytest.raises(MalformedToken):
        verify(f"{header}=.{payload}.{signature}", keyring)


@pytest.mark.parametrize("bad", ["A", "AAAAA", "é", "AA\u00e9A", "AA AA"])
def test_segment_that_is_not_base64url_refused(bad: str, key: SigningKey, keyring: KeyRing) -> None:
    header, payload, signature = issue(key)[0].split(".")
    for token in (f"{bad}.{payload}.{signature}", f"{header}.{payload}.{bad}"):
        with pytest.raises(MalformedToken):
            verify(token, keyring)


def test_signature_with_non_zero_unused_bits_refused(key: SigningKey, keyring: KeyRing) -> None:
    header, payload, signature = issue(key)[0].split(".")
    with pytest.raises(MalformedToken):
        verify(f"{header}.{payload}.{same_bytes_other_text(signature)}", keyring)


def test_signed_payload_with_non_zero_unused_bits_refused(key: SigningKey, keyring: KeyRing) -> None:
    payload = segment(claims(scope="p"))
    if len(payload) % 4 == 0:  # pad the JSON until the segment has unused bits
        payload = segment(claims(scope="pp"))
    with pytest.raises(MalformedToken):
        verify(sign_segments(segment(header_for(key)), same_bytes_other_text(payload), key), keyring)


@pytest.mark.parametrize(("ours", "theirs"), [("-", "+"), ("_", "/")])
def test_standard_base64_alphabet_refused(ours: str, theirs: str, key: SigningKey, keyring: KeyRing) -> None:
    # "~" is 0x7E and "?" is 0x3F: one of three alignments puts a "-" and a "_" in the segment.
    for n in range(3):
        payload = segment(claims(jti="x" * n + "~~~???~~~???"))
        if ours in payload:
            break
    else:
        pytest.fail(f"no payload segment contains {ours!r}")
    with pytest.raises(MalformedToken):
        verify(sign_segments(segment(header_for(key)), payload.replace(ours, theirs), key), keyring)


def canonical_base64url(segment: str) -> bytes | None:
    """The bytes ``segment`` spells if it is their one unpadded base64url spelling, else None."""
    if any(c not in B64_ALPHABET for c in segment) or len(segment) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return raw if b64url(raw) == segment else None


def test_base64url_decoding_accepts_exactly_the_canonical_spellings() -> None:
    """Every short string over base64url and stray characters decodes iff it is canonical, to its bytes."""
    chars = B64_ALPHABET + "+/=. \n\x00\u00e9~"
    accepted = 0
    for prefix in ("", "AB", "ABC", "ABCD"):
        for first in chars:
            for second in ("", *chars):
                segment = prefix + first + second
                try:
                    got: bytes | None = _b64decode(segment)
                except MalformedToken:
                    got = None
                assert got == canonical_base64url(segment), segment
                accepted += got is not None
    assert accepted > 4000  # the check above compared real decodings, not only refusals


@pytest.mark.parametrize(("before", "after"), [(" ", ""), ("", " "), ("\n", "\r\n\t")])
def test_payload_json_with_whitespace_around_it_accepted(
    before: str, after: str, key: SigningKey, keyring: KeyRing
) -> None:
    """Whitespace around the JSON object is JSON (RFC 8259 §2) and parses as it always did."""
    raw = f"{before}{json.dumps(claims())}{after}".encode()
    assert verify(sign_segments(segment(header_for(key)), b64url(raw), key), keyring).sub == "user-1"


@pytest.mark.parametrize("tail", ["{}", " {}", "x", "]", "\u00e9"])
def test_payload_json_with_trailing_data_refused(tail: str, key: SigningKey, keyring: KeyRing) -> None:
    """Anything but whitespace after the claims object makes the payload malformed."""
    raw = f"{json.dumps(claims(), separators=(',', ':'))}{tail}".encode()
    with pytest.raises(MalformedToken):
        verify(sign_segments(segment(header_for(key)), b64url(raw), key), keyring)


def test_duplicate_member_in_header_refused(key: SigningKey, keyring: KeyRing) -> None:
    raw = f'{{"alg":"ES256","kid":"{key.kid}","typ":"at+jwt","kid":"{key.kid}"}}'.encode()
    with pytest.raises(MalformedToken):
        verify(sign_segments(b64url(raw), segment(claims()), key), keyring)


def test_duplicate_member_in_payload_refused(key: SigningKey, keyring: KeyRing) -> None:
    raw = json.dumps(claims())[:-1] + ', "sub": "admin"}'
    with pytest.raises(MalformedToken):
        verify(sign_segments(segment(header_for(key)), b64url(raw.encode()), key), keyring)


def test_duplicate_member_in_a_nested_payload_object_refused(key: SigningKey, keyring: KeyRing) -> None:
    raw = json.dumps(claims())[:-1] + ', "cnf": {"jkt": "a", "jkt": "b"}}'
    with pytest.raises(MalformedToken):
        verify(sign_segments(segment(header_for(key)), b64url(raw.encode()), key), keyring)


@pytest.mark.parametrize(
    "raw_payload",
    [b"[]", b"null", b'"a string"', b"{", b"\xff\xfe{}", b'{"exp": NaN}', b'{"exp": Infinity}', b""],
)
def test_signed_payload_that_is_not_a_json_object_refused(
    raw_payload: bytes, key: SigningKey, keyring: KeyRing
) -> None:
    with pytest.raises(MalformedToken):
        verify(sign_segments(segment(header_for(key)), b64url(raw_payload), key), keyring)


@pytest.mark.parametrize("raw_header", [b"[]", b"null", b"{", b"not json"])
def test_header_that_is_not_a_json_object_refused(raw_header: bytes, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(MalformedToken):
        verify(sign_segments(b64url(raw_header), segment(claims()), key), keyring)


def test_deeply_nested_header_refused(key: SigningKey, keyring: KeyRing) -> None:
    raw = b"[" * 2000 + b"]" * 2000
    token = f"{b64url(raw)}.{segment(claims())}.AAAA"
    assert len(token) <= MAX_TOKEN_LENGTH
    with pytest.raises(MalformedToken):
        verify(token, keyring)


class _RingThatMustNotBeAsked(KeyRing):
    def get(self, kid: object, now: datetime | None = None) -> SigningKey:
        raise AssertionError("the token should have been refused before any key lookup")


def test_100_kb_token_refused_before_parsing(key: SigningKey) -> None:
    header, payload, signature = issue(key)[0].split(".")
    huge = f"{header}.{payload}{'A' * 100_000}.{signature}"
    with pytest.raises(MalformedToken):
        verify(huge, _RingThatMustNotBeAsked([key], token_ttl=TTL, leeway=timedelta(0)))


def test_token_one_char_over_the_limit_refused(key: SigningKey) -> None:
    with pytest.raises(MalformedToken):
        verify("A" * (MAX_TOKEN_LENGTH + 1), _RingThatMustNotBeAsked([key], token_ttl=TTL, leeway=timedelta(0)))


@pytest.mark.parametrize("token", [None, b"a.b.c", 123, ["a", "b", "c"], {"token": "a.b.c"}])
def test_non_string_token_refused(token: object, keyring: KeyRing) -> None:
    with pytest.raises(MalformedToken):
        verify(token, keyring)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a.b.c.d.e", "..", "...."])
def test_wrong_number_of_segments_refused(token: str, keyring: KeyRing) -> None:
    with pytest.raises(MalformedToken):
        verify(token, keyring)


def test_five_segment_jwe_shape_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(MalformedToken):
        verify(issue(key)[0] + ".AAAA.AAAA", keyring)


def test_refresh_token_presented_as_access_token_refused(keyring: KeyRing) -> None:
    codec = RefreshTokenCodec.from_master(MasterKey("a-master-secret-for-token-tests-0123456789"))
    with pytest.raises(MalformedToken):
        verify(codec.encode(uuid.uuid4(), 0), keyring)


# --- claims (RFC 9068 §2.2, §4; RFC 7519 §4.1) ----------------------------------------------------------


def test_wrong_issuer_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(iss="https://elsewhere.test")), keyring)
    assert excinfo.value.claim == "iss"


def test_wrong_audience_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(aud="https://other-api.test")), keyring)
    assert excinfo.value.claim == "aud"


def test_audience_list_containing_ours_accepted(key: SigningKey, keyring: KeyRing) -> None:
    result = verify(forge(key, payload=claims(aud=["https://other-api.test", AUDIENCE])), keyring)
    assert result.aud == ("https://other-api.test", AUDIENCE)


def test_audience_list_without_ours_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(aud=["https://a.test", "https://b.test"])), keyring)
    assert excinfo.value.claim == "aud"


def test_verifier_may_accept_several_audiences(key: SigningKey, keyring: KeyRing) -> None:
    token = forge(key, payload=claims(aud="https://b.test"))
    assert verify(token, keyring, audience=["https://a.test", "https://b.test"]).aud == ("https://b.test",)


@pytest.mark.parametrize("aud", [MISSING, [], [1], None, 5, {"aud": AUDIENCE}, [AUDIENCE, 1]])
def test_missing_or_malformed_audience_refused(aud: object, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(aud=aud)), keyring)
    assert excinfo.value.claim == "aud"


@pytest.mark.parametrize("name", ["iss", "sub", "jti", "sid", "client_id"])
@pytest.mark.parametrize("value", [MISSING, "", None, 1, ["x"]])
def test_missing_or_non_string_required_claim_refused(
    name: str, value: object, key: SigningKey, keyring: KeyRing
) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(**{name: value})), keyring)
    assert excinfo.value.claim == name


def test_missing_exp_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(exp=MISSING)), keyring)
    assert excinfo.value.claim == "exp"


def test_exp_as_string_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(exp=str(NOW + 900))), keyring)
    assert excinfo.value.claim == "exp"


def test_exp_as_short_numeric_string_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(exp="123")), keyring)
    assert excinfo.value.claim == "exp"


@pytest.mark.parametrize("exp", [True, False, None, [NOW + 900], {"t": NOW + 900}])
def test_exp_as_bool_or_other_non_number_refused(exp: object, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(exp=exp)), keyring)
    assert excinfo.value.claim == "exp"


def test_exp_as_infinite_number_refused(key: SigningKey, keyring: KeyRing) -> None:
    raw = json.dumps(claims(exp=MISSING))[:-1] + ', "exp": 1e400}'
    with pytest.raises(InvalidClaim) as excinfo:
        verify(sign_segments(segment(header_for(key)), b64url(raw.encode()), key), keyring)
    assert excinfo.value.claim == "exp"


def test_fractional_exp_accepted(key: SigningKey, keyring: KeyRing) -> None:
    assert verify(forge(key, payload=claims(exp=NOW + 900.5)), keyring).exp == NOW + 900


@pytest.mark.parametrize("iat", [MISSING, "0", True, None])
def test_missing_or_non_numeric_iat_refused(iat: object, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(iat=iat)), keyring)
    assert excinfo.value.claim == "iat"


def test_expired_token_refused_with_its_expiry(key: SigningKey, keyring: KeyRing) -> None:
    token, exp = issue(key)
    with pytest.raises(TokenExpired) as excinfo:
        verify(token, keyring, now=T0 + timedelta(hours=1))
    assert excinfo.value.expired_at == datetime.fromtimestamp(exp, UTC)
    assert excinfo.value.expired_at == T0 + TTL


def test_expiry_boundary_without_leeway(key: SigningKey, keyring: KeyRing) -> None:
    token, _ = issue(key)
    assert verify(token, keyring, now=T0 + TTL - timedelta(seconds=1)).sub == "user-1"
    with pytest.raises(TokenExpired):
        verify(token, keyring, now=T0 + TTL)


def test_expiry_boundary_with_leeway(key: SigningKey, keyring: KeyRing) -> None:
    token, _ = issue(key)
    leeway = timedelta(seconds=30)
    assert verify(token, keyring, now=T0 + TTL + leeway - timedelta(seconds=1), leeway=leeway).sub == "user-1"
    with pytest.raises(TokenExpired):
        verify(token, keyring, now=T0 + TTL + leeway, leeway=leeway)


def test_iat_in_the_future_beyond_leeway_refused(key: SigningKey, keyring: KeyRing) -> None:
    token = forge(key, payload=claims(iat=NOW + 6))
    with pytest.raises(TokenNotYetValid) as excinfo:
        verify(token, keyring, leeway=timedelta(seconds=5))
    assert excinfo.value.claim == "iat"


def test_iat_in_the_future_within_leeway_accepted(key: SigningKey, keyring: KeyRing) -> None:
    assert verify(forge(key, payload=claims(iat=NOW + 5)), keyring, leeway=timedelta(seconds=5)).iat == NOW + 5


def test_nbf_in_the_future_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(TokenNotYetValid) as excinfo:
        verify(forge(key, payload=claims(nbf=NOW + 60)), keyring)
    assert excinfo.value.claim == "nbf"


def test_nbf_in_the_past_accepted(key: SigningKey, keyring: KeyRing) -> None:
    assert verify(forge(key, payload=claims(nbf=NOW - 60)), keyring).sub == "user-1"


def test_nbf_as_string_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(nbf="0")), keyring)
    assert excinfo.value.claim == "nbf"


@pytest.mark.parametrize("scope", [["profile"], 1, None])
def test_non_string_scope_refused(scope: object, key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(scope=scope)), keyring)
    assert excinfo.value.claim == "scope"


def test_missing_scope_means_no_scopes(key: SigningKey, keyring: KeyRing) -> None:
    assert verify(forge(key, payload=claims(scope=MISSING)), keyring).scope == ()


def test_non_numeric_auth_time_refused(key: SigningKey, keyring: KeyRing) -> None:
    with pytest.raises(InvalidClaim) as excinfo:
        verify(forge(key, payload=claims(auth_time="yesterday")), keyring)
    assert excinfo.value.claim == "auth_time"


def granting(scope: str) -> AccessClaims:
    return AccessClaims(
        sub="u", sid="s", client_id="c", scope=tuple(scope.split()), iss=ISSUER, aud=(AUDIENCE,), exp=NOW + 60,
        iat=NOW, jti="j",
    )  # fmt: skip


@pytest.mark.parametrize("wanted", [(), [], "", ("read",), ["write", "read"], "read write", iter(["read"])])
def test_require_returns_the_same_claims_when_every_scope_is_granted(wanted: Any) -> None:
    """require() answers the claims themselves (no copy) when nothing is missing, whatever iterable asks."""
    claims = granting("read write")
    assert claims.require(wanted) is claims


@pytest.mark.parametrize(
    ("wanted", "missing"),
    [
        (("admin",), ("admin",)),
        (("write", "admin", "read", "orders:read"), ("admin", "orders:read")),
        ("admin read orders:read", ("admin", "orders:read")),  # a string is a space-separated list
        (iter(["admin", "read", "x"]), ("admin", "x")),  # an iterator is read once
        (("rea",), ("rea",)),  # whole names, never substrings of the granted "read"
    ],
)
def test_require_names_every_missing_scope_in_the_order_asked(wanted: Any, missing: tuple[str, ...]) -> None:
    """A missing scope raises InsufficientScope naming each missing scope, as RFC 6750's scope="..." lists them."""
    with pytest.raises(InsufficientScope) as excinfo:
        granting("read write").require(wanted)
    assert (excinfo.value.code, excinfo.value.reason) == ("insufficient_scope", "insufficient_scope")
    assert excinfo.value.required == missing


def test_require_of_a_single_letter_scope_string_is_not_read_letter_by_letter() -> None:
    """require("ad") asks for the scope "ad", not for "a" and "d" (which the token grants)."""
    with pytest.raises(InsufficientScope) as excinfo:
        granting("a d").require("ad")
    assert excinfo.value.required == ("ad",)


@pytest.mark.parametrize(
    ("value", "names"),
    [("read  write ", ("read", "write")), ("", ()), (["a", "b"], ("a", "b")), (iter(["a"]), ("a",))],
)
def test_scope_names_reads_strings_as_space_separated_lists(value: Any, names: tuple[str, ...]) -> None:
    assert scope_names(value) == names


def test_scope_names_keeps_a_tuple_as_it_is() -> None:
    """A tuple needs no copy: the adapters pass theirs on every request."""
    wanted = ("read", "write")
    assert scope_names(wanted) is wanted
