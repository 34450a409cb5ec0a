"""Integration tests of forged, altered and malformed refresh tokens: the real HTTP API in-process on
a real database (SQLite file and PostgreSQL).

Such a token is no evidence that the session was stolen: it is refused with its own reason
(malformed, bad MAC, unknown session) and the session stays usable. Tokens of another deployment,
and validly MACed tokens of a generation or session that never existed, are refused the same way.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from keyturn.core.errors import (
    ForgedRefreshToken,
    UnknownSession,
)
from keyturn.core.refresh import PREFIX
from keyturn.server.service import Client, Service
from tests.helpers import PASSWORD, assert_refused, audit_trail, refresh
from tests.security.grants import (
    MALFORMED,
    assert_invalid_grant,
    assert_session_alive,
    flip,
)

pytestmark = pytest.mark.anyio

DAY = 86400


# --- altered and malformed tokens ----------------------------------------------------------------


async def test_tampered_mac_is_refused_and_session_survives(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    token = alice["refresh_token"]
    for index in (-1, -5, -21):  # all inside the 128-bit MAC at the end
        assert_invalid_grant(await refresh(client, flip(token, index)), ForgedRefreshToken.description)
    await assert_session_alive(client, alice)


async def test_tampered_generation_is_refused_and_session_survives(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    """Altering the body (not the MAC) breaks the MAC as well."""
    token = alice["refresh_token"]
    assert_invalid_grant(await refresh(client, flip(token, len(PREFIX) + 30)), ForgedRefreshToken.description)
    await assert_session_alive(client, alice)


async def test_truncated_token(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    token = alice["refresh_token"]
    for cut in (token[:-1], token[:-4], token[: len(PREFIX) + 10], PREFIX):
        assert_invalid_grant(await refresh(client, cut), MALFORMED)
    await assert_session_alive(client, alice)


async def test_oversized_token(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    assert_invalid_grant(await refresh(client, PREFIX + "A" * 10_240), MALFORMED)
    assert_invalid_grant(await refresh(client, alice["refresh_token"] + "A" * 10_240), MALFORMED)


async def test_wrong_prefix(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    body = alice["refresh_token"].removeprefix(PREFIX)
    for prefix in ("xx_rt_", "KT_RT_", "kt_at_", ""):
        assert_invalid_grant(await refresh(client, prefix + body), MALFORMED)


async def test_padded_or_standard_alphabet_spelling(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    """Other spellings of the same bytes are not the token."""
    token = alice["refresh_token"]
    assert_invalid_grant(await refresh(client, token + "=="), MALFORMED)
    assert_invalid_grant(await refresh(client, " " + token[1:]), MALFORMED)
    assert_invalid_grant(await refresh(client, token.upper()), MALFORMED)


async def test_empty_string(client: httpx.AsyncClient) -> None:
    assert_invalid_grant(await refresh(client, ""), MALFORMED)


async def test_access_token_as_refresh_token(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    assert_invalid_grant(await refresh(client, alice["access_token"]), MALFORMED)


WRONG_TYPE = "The field 'refresh_token' has the wrong type or value."


async def _refresh_with_value(client: httpx.AsyncClient, value: object, reason: str = WRONG_TYPE) -> None:
    """A body whose refresh_token is not a string: 400 ``invalid_request``, refused before any token check."""
    response = await client.post("/v1/auth/refresh", json={"refresh_token": value})
    assert_refused(response, 400, "invalid_request", reason)


async def test_refresh_token_as_json_number(client: httpx.AsyncClient) -> None:
    await _refresh_with_value(client, 12345)


async def test_refresh_token_as_json_null(client: httpx.AsyncClient) -> None:
    """``null`` is no token at all: the answer says where one goes."""
    await _refresh_with_value(client, None, "Send refresh_token in the body, or the session cookie.")


async def test_refresh_token_as_json_list(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    await _refresh_with_value(client, [alice["refresh_token"]])


async def test_refresh_token_as_json_object_or_bool(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    await _refresh_with_value(client, {"refresh_token": alice["refresh_token"]})
    await _refresh_with_value(client, True)


# --- tokens from elsewhere or from the future ----------------------------------------------------


async def test_refresh_token_of_another_keyturn_instance(
    client: httpx.AsyncClient, other_service: Service, alice: dict[str, Any]
) -> None:
    who = Client(ip="198.51.100.1", user_agent="pytest")
    await other_service.auth.register("alice", PASSWORD, who)
    theirs = await other_service.auth.login("alice", PASSWORD, who)
    assert_invalid_grant(await refresh(client, theirs.refresh_token), ForgedRefreshToken.description)
    await assert_session_alive(client, alice)


async def test_another_instance_minting_our_session_id(
    client: httpx.AsyncClient, other_service: Service, alice: dict[str, Any]
) -> None:
    """Knowing our session id is not enough: another deployment's MAC key does not verify."""
    sid = uuid.UUID(alice["session_id"])
    for generation in (0, 1):
        assert_invalid_grant(
            await refresh(client, other_service.ctx.codec.encode(sid, generation)), ForgedRefreshToken.description
        )
    await assert_session_alive(client, alice)


async def test_generation_never_reached_is_refused_without_revoking(
    client: httpx.AsyncClient, service: Service, alice: dict[str, Any], database_url: str
) -> None:
    """A validly MACed token of a future generation is no evidence of theft: the session lives on,
    and the audit row says so (an unknown token, not reuse)."""
    future = service.ctx.codec.encode(uuid.UUID(alice["session_id"]), 0 + 5)
    assert_invalid_grant(await refresh(client, future), UnknownSession.description)
    assert (await audit_trail(database_url))[-1] == ("refresh", "refused", {"reason": "unknown_session"})
    await assert_session_alive(client, alice)


async def test_session_id_never_issued(client: httpx.AsyncClient, service: Service) -> None:
    """A validly MACed token naming a session that does not exist."""
    assert_invalid_grant(await refresh(client, service.ctx.codec.encode(uuid.uuid4(), 0)), UnknownSession.description)
