"""Integration tests of JWT attacks on the header: the algorithm, the key id, headers that point at
keys (never fetched) and ``typ``. The real HTTP API in-process on a real database; the harness is
tests/security/forgery.py.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from keyturn.core.errors import UnknownKey
from tests.security.forgery import (
    DROP,
    NOT_AN_ACCESS_TOKEN,
    PINNED_ALG,
    Attacker,
    Target,
    assert_refused,
    attacker_token,
    b64url,
    es_sign,
    header_refused,
    hs256,
    segment,
)

pytestmark = pytest.mark.anyio


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
        assert_refused(await target.me(f"{signing_input}."), PINNED_ALG)


async def test_alg_none_with_signature(target: Target) -> None:
    """alg none carrying the real signature of the same input is still refused."""
    signing_input = f"{segment(target.header(alg='none'))}.{segment(target.payload())}"
    assert_refused(await target.me(f"{signing_input}.{es_sign(signing_input, target.key)}"), PINNED_ALG)


async def test_hs256_signed_with_public_key_pem(target: Target) -> None:
    """HMAC-with-public-key confusion: the PEM of our public key as the HS256 secret."""
    pem = target.key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, pem.strip()):
        signing_input = f"{segment(target.header(alg='HS256'))}.{segment(target.payload())}"
        assert_refused(await target.me(f"{signing_input}.{hs256(signing_input, secret)}"), PINNED_ALG)


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
        assert_refused(await target.me(f"{signing_input}.{hs256(signing_input, secret)}"), PINNED_ALG)


async def test_alg_other_than_the_key_is_pinned_to(target: Target) -> None:
    """A real ES256 signature under a header claiming ES384 (or RS256) is refused."""
    for alg in ("ES384", "RS256", "EdDSA"):
        assert_refused(await target.me(target.forge(header=target.header(alg=alg))), PINNED_ALG)


# --- kid -----------------------------------------------------------------------------------------


async def test_kid_unknown(target: Target) -> None:
    assert_refused(
        await target.me(target.forge(header=target.header(kid=b64url(uuid.uuid4().bytes)))), UnknownKey.description
    )


async def test_kid_path_traversal(target: Target) -> None:
    for kid in ("../../etc/passwd", "../../../../../../dev/null", "..\\..\\windows\\win.ini"):
        assert_refused(await target.me(target.forge(header=target.header(kid=kid))), UnknownKey.description)


async def test_kid_sql_injection(target: Target) -> None:
    for kid in ("' OR 1=1 --", f"{target.key.kid}' OR '1'='1", "'; DROP TABLE signing_keys; --"):
        assert_refused(await target.me(target.forge(header=target.header(kid=kid))), UnknownKey.description)


async def test_kid_not_a_string(target: Target) -> None:
    for kid in (123, None, True, [target.key.kid], {"kid": target.key.kid}):
        assert_refused(await target.me(target.forge(header=target.header(kid=kid))), UnknownKey.description)


async def test_kid_missing(target: Target) -> None:
    assert_refused(await target.me(target.forge(header=target.header(kid=DROP))), UnknownKey.description)


# --- headers that point at keys: nothing is ever fetched ----------------------------------------


async def test_jku_header_is_refused_and_never_fetched(target: Target, attacker: Attacker) -> None:
    url = f"{attacker.server.url}/jwks.json"
    assert_refused(await target.me(attacker_token(target, attacker, jku=url)), header_refused("jku"))
    assert_refused(
        await target.me(attacker_token(target, attacker, jku=url, kid=target.key.kid)), header_refused("jku")
    )
    assert attacker.server.hits == []


async def test_x5u_header_is_refused_and_never_fetched(target: Target, attacker: Attacker) -> None:
    url = f"{attacker.server.url}/cert.pem"
    assert_refused(await target.me(attacker_token(target, attacker, x5u=url)), header_refused("x5u"))
    assert_refused(
        await target.me(attacker_token(target, attacker, x5u=url, kid=target.key.kid)), header_refused("x5u")
    )
    assert attacker.server.hits == []


async def test_jwk_header_with_embedded_attacker_key(target: Target, attacker: Attacker) -> None:
    """A token signed by the attacker's key, which it carries in its own ``jwk`` header."""
    jwk = attacker.key.public_jwk()
    assert_refused(await target.me(attacker_token(target, attacker, jwk=jwk)), header_refused("jwk"))
    assert_refused(
        await target.me(attacker_token(target, attacker, jwk=jwk, kid=target.key.kid)), header_refused("jwk")
    )
    assert attacker.server.hits == []


async def test_x5c_header_with_attacker_certificate(target: Target, attacker: Attacker) -> None:
    x5c = [base64.b64encode(attacker.cert_der).decode()]
    assert_refused(await target.me(attacker_token(target, attacker, x5c=x5c)), header_refused("x5c"))
    assert_refused(
        await target.me(attacker_token(target, attacker, x5c=x5c, kid=target.key.kid)), header_refused("x5c")
    )
    assert attacker.server.hits == []


async def test_crit_header(target: Target) -> None:
    """RFC 7515 §4.1.11: we understand no extension, so any ``crit`` is refused."""
    for crit in (["exp"], ["b64"], []):
        assert_refused(await target.me(target.forge(header=target.header(crit=crit))), header_refused("crit"))


async def test_crit_header_with_b64_false(target: Target) -> None:
    """RFC 7797 unencoded payload: a signature over the raw payload must not be honoured."""
    header = segment(target.header(crit=["b64"], b64=False))
    payload = json.dumps(target.payload(), separators=(",", ":"))
    signature = es_sign(f"{header}.{payload}", target.key)
    assert_refused(await target.me(f"{header}.{segment(payload)}.{signature}"), header_refused("b64"))


# --- typ -----------------------------------------------------------------------------------------


async def test_typ_jwt_instead_of_at_jwt(target: Target) -> None:
    """RFC 9068 §4: an ID token or other JWT (typ JWT) is not an access token."""
    for typ in ("JWT", "jwt", "application/jwt", "at+JWT ", "dpop+jwt"):
        assert_refused(await target.me(target.forge(header=target.header(typ=typ))), NOT_AN_ACCESS_TOKEN)


async def test_typ_missing(target: Target) -> None:
    assert_refused(await target.me(target.forge(header=target.header(typ=DROP))), NOT_AN_ACCESS_TOKEN)
