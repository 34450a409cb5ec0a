"""Unit tests (no I/O but tmp files) pinning bugs found by review of the core, one test each."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from keyturn.core.errors import (
    ConfigurationError,
    InvalidClaim,
    MalformedToken,
    SigningKeyError,
    UnknownSession,
    UnsupportedHeader,
)
from keyturn.core.keys import KeyRing, SigningKey, generate_key
from keyturn.core.masterkey import MasterKey
from keyturn.core.refresh import RefreshTokenCodec
from keyturn.core.sessions import Action, Lifetimes, SessionState, decide_refresh
from keyturn.core.tokens import verify_access_token
from keyturn.server.config import load_settings, parse_duration

NOW = datetime(2026, 5, 1, tzinfo=UTC)
SECRET = "a-very-long-random-looking-secret-0123456789-abcdefghij"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(key: SigningKey, header: bytes, payload: dict[str, Any]) -> str:
    signing_input = f"{b64(header)}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("ES256", now=NOW)


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": "https://i", "sub": "u", "aud": "https://i", "exp": int(NOW.timestamp()) + 60,
        "iat": int(NOW.timestamp()), "jti": "j", "sid": "s", "client_id": "c", "scope": "",
    }  # fmt: skip
    return {**base, **overrides}


def verify(token: str, key: SigningKey) -> object:
    ring = KeyRing([key], token_ttl=timedelta(minutes=15), leeway=timedelta(0))
    return verify_access_token(token, ring, issuer="https://i", audience="https://i", now=NOW)


@pytest.mark.parametrize("text", ["9999999999d", "9" * 400, 1e20, "11y", -1])
def test_huge_or_negative_durations_are_value_errors(text: object) -> None:
    """No OverflowError escapes: the settings layer turns ValueError into a named setting."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_huge_duration_setting_names_itself(no_env: None) -> None:
    """KEYTURN_ACCESS_TOKEN_TTL=9999999999d is one clear ConfigurationError."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(secret=SECRET, access_token_ttl="9999999999d")
    assert caught.value.setting == "KEYTURN_ACCESS_TOKEN_TTL"


@pytest.mark.parametrize("exp", [10**400, -1e300, 1e300, -5])
def test_out_of_range_exp_is_an_invalid_claim(key: SigningKey, exp: float) -> None:
    """Numbers no datetime can hold are refused as InvalidClaim, not OverflowError."""
    header = json.dumps({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}).encode()
    payload = claims()
    payload["exp"] = exp
    token = signed(key, header, payload)
    with pytest.raises(InvalidClaim) as caught:
        verify(token, key)
    assert caught.value.claim == "exp"


def test_utf16_header_is_malformed(key: SigningKey) -> None:
    """RFC 7515 §2: the header is UTF-8 JSON; a correctly signed UTF-16 header is refused."""
    header = json.dumps({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}).encode("utf-16")
    with pytest.raises(MalformedToken):
        verify(signed(key, header, claims()), key)


@pytest.mark.parametrize(("typ", "reason"), [("JWT", "bad_typ"), (None, "bad_typ")])
def test_unsupported_header_reasons(key: SigningKey, typ: str | None, reason: str) -> None:
    """The reason says which header check failed."""
    header: dict[str, Any] = {"alg": "ES256", "kid": key.kid}
    if typ:
        header["typ"] = typ
    with pytest.raises(UnsupportedHeader) as caught:
        verify(signed(key, json.dumps(header).encode(), claims()), key)
    assert caught.value.reason == reason


def test_forbidden_header_reason(key: SigningKey) -> None:
    header = json.dumps({"alg": "ES256", "kid": key.kid, "typ": "at+jwt", "jku": "https://x"}).encode()
    with pytest.raises(UnsupportedHeader) as caught:
        verify(signed(key, header, claims()), key)
    assert caught.value.reason == "forbidden_header"


def test_from_jwk_refuses_p384_labelled_es256() -> None:
    """RFC 7518 §3.4: ES256 is P-256 only."""
    jwk = dict(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True))
    with pytest.raises(ConfigurationError, match="does not meet RFC 7518's rules for ES256"):
        SigningKey.from_jwk({**jwk, "alg": "ES256", "kid": "k"})


def test_from_jwk_refuses_short_rsa() -> None:
    """RFC 7518 §3.3: RS256 keys have at least 2048 bits."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - the weak key under test
    jwk = dict(RSAAlgorithm.to_jwk(public, as_dict=True))
    with pytest.raises(ConfigurationError, match="does not meet RFC 7518's rules for RS256"):
        SigningKey.from_jwk({**jwk, "alg": "RS256", "kid": "k"})


def test_from_jwk_refuses_oth_member(key: SigningKey) -> None:
    with pytest.raises(ConfigurationError, match="must not contain private members"):
        SigningKey.from_jwk({**key.public_jwk(), "oth": []})


def test_no_signer_is_a_signing_key_error() -> None:
    """The root error is never raised itself."""
    ring = KeyRing([], token_ttl=timedelta(minutes=1), leeway=timedelta(0))
    with pytest.raises(SigningKeyError) as caught:
        ring.signer(NOW)
    assert caught.value.reason == "no_signing_key"


def test_negative_generation_is_unknown() -> None:
    """Generations below zero never existed."""
    state = SessionState(uuid.uuid4(), uuid.uuid4(), 0, NOW, NOW)
    life = Lifetimes(idle=timedelta(days=1), absolute=timedelta(days=2), grace=timedelta(seconds=10))
    outcome = decide_refresh(state, -1, NOW, life)
    assert (outcome.action, type(outcome.refusal), outcome.end_session) == (Action.REFUSE, UnknownSession, None)


@pytest.mark.parametrize("generation", [-1, 2**64])
def test_codec_refuses_out_of_range_generations(generation: int) -> None:
    codec = RefreshTokenCodec.from_master(MasterKey(SECRET))
    with pytest.raises(ValueError, match="generation"):
        codec.encode(uuid.uuid4(), generation)


@pytest.mark.parametrize("content", ["", "changeme", "short"])
def test_weak_dev_secret_file_is_refused(tmp_path: Path, no_env: None, content: str) -> None:
    """An empty or weak development secret file is not silently used."""
    path = tmp_path / "keyturn.secret"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(dev=True, secret_file=path)
    assert caught.value.setting == "KEYTURN_SECRET"
