"""Integration tests of JWT attacks on the claims, and of tokens that are not ours or no longer good
(another deployment's key, an ended session). The real HTTP API in-process on a real database; the
harness is tests/security/forgery.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from keyturn.core.errors import BadSignature, MalformedToken, TokenExpired, TokenNotYetValid, UnknownKey
from keyturn.core.keys import generate_key
from keyturn.core.tokens import issue_access_token, verify_access_token
from tests.helpers import SESSION_ENDED, login, register
from tests.security.forgery import (
    BAD_EXP,
    DROP,
    NOT_JSON,
    Target,
    assert_refused,
    claim_invalid,
    decode_segment,
    es_sign,
    segment,
)

pytestmark = pytest.mark.anyio


# --- claims --------------------------------------------------------------------------------------


async def test_iss_wrong(target: Target) -> None:
    other = "The access token was issued by someone else."
    for iss, reason in [
        ("https://evil.example", other),
        (target.claims["iss"] + "/", other),
        (target.claims["iss"].upper(), other),
        ("", claim_invalid("iss")),
    ]:
        assert_refused(await target.me(target.forge(payload=target.payload(iss=iss))), reason)


async def test_aud_wrong(target: Target) -> None:
    other = "The access token is meant for another audience."
    for aud, reason in [
        ("https://api.other.example", other),
        (["https://api.other.example"], other),
        ([], claim_invalid("aud")),
        (123, claim_invalid("aud")),
    ]:
        assert_refused(await target.me(target.forge(payload=target.payload(aud=aud))), reason)


async def test_exp_missing(target: Target) -> None:
    assert_refused(await target.me(target.forge(payload=target.payload(exp=DROP))), BAD_EXP)


async def test_exp_as_string(target: Target) -> None:
    for exp in (str(target.claims["exp"]), f"{target.claims['exp']}.0", "9999999999"):
        assert_refused(await target.me(target.forge(payload=target.payload(exp=exp))), BAD_EXP)


async def test_exp_not_a_plain_number(target: Target) -> None:
    """Booleans, null, absurd values and negative numbers are not NumericDates."""
    for exp in (True, None, 10**30, -1):
        assert_refused(await target.me(target.forge(payload=target.payload(exp=exp))), BAD_EXP)
    # json.dumps spells infinity ``Infinity``, which is not JSON (RFC 8259 §6): refused as such.
    assert_refused(await target.me(target.forge(payload=target.payload(exp=float("inf")))), NOT_JSON)


async def test_expired_past_exp_plus_leeway(target: Target) -> None:
    """Accepted up to ``exp + leeway``, refused from then on (the session itself is still live)."""
    leeway = target.service.settings.leeway.total_seconds()
    exp = target.claims["exp"]
    target.clock.advance(exp - target.clock().timestamp() + leeway - 1)
    assert (await target.me(target.access_token)).status_code == 200
    target.clock.advance(1)
    assert_refused(await target.me(target.access_token), TokenExpired.description)
    target.clock.advance(3600)
    assert_refused(await target.me(target.access_token), TokenExpired.description)


async def test_nbf_in_the_future(target: Target) -> None:
    nbf = int(target.clock().timestamp()) + 60
    assert_refused(await target.me(target.forge(payload=target.payload(nbf=nbf))), TokenNotYetValid.description)


async def test_iat_in_the_future(target: Target) -> None:
    iat = int(target.clock().timestamp()) + 60
    assert_refused(await target.me(target.forge(payload=target.payload(iat=iat))), TokenNotYetValid.description)


async def test_sub_of_another_user_in_our_session(target: Target) -> None:
    """A validly signed token naming another user in this user's session is refused."""
    await register(target.client, "bob")
    bob = decode_segment((await login(target.client, "bob"))["access_token"].split(".")[1])
    assert_refused(await target.me(target.forge(payload=target.payload(sub=bob["sub"]))), SESSION_ENDED)


# --- tokens that are not ours, or no longer good -------------------------------------------------


async def test_refresh_token_as_bearer_access_token(target: Target) -> None:
    assert target.refresh_token.startswith("kt_rt_")
    assert_refused(await target.me(target.refresh_token), MalformedToken.description)


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
    assert_refused(await target.me(token), UnknownKey.description)


async def test_token_of_another_instance_claiming_our_kid(target: Target) -> None:
    """Another deployment's key, with the header naming our key: the signature does not verify."""
    other = generate_key("ES256", now=target.clock())
    signing_input = f"{segment(target.header())}.{segment(target.payload())}"
    assert_refused(await target.me(f"{signing_input}.{es_sign(signing_input, other)}"), BadSignature.description)


async def test_token_of_logged_out_session(target: Target) -> None:
    """The signature is valid and unexpired, but the session behind it has ended."""
    response = await target.client.post("/v1/auth/logout", headers={"authorization": f"Bearer {target.access_token}"})
    assert response.status_code == 204
    assert_refused(await target.me(target.access_token), SESSION_ENDED)


async def test_token_naming_a_session_that_does_not_exist(target: Target) -> None:
    for sid in (str(uuid.uuid4()), "not-a-uuid", "' OR 1=1 --"):
        assert_refused(await target.me(target.forge(payload=target.payload(sid=sid))), SESSION_ENDED)


async def test_non_string_token_objects_are_refused_by_verify(target: Target) -> None:
    """What no HTTP header can carry: bytes, None and other objects raise, never crash."""
    ring = await target.service.ctx.keys.ring(target.clock())
    settings = target.service.settings
    for token in (target.access_token.encode(), None, 0, [target.access_token], {"token": target.access_token}):
        with pytest.raises(MalformedToken):
            verify_access_token(
                token, ring, issuer=settings.issuer, audience=settings.token_audience, now=target.clock()
            )
