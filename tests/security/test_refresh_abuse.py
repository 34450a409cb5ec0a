"""Integration tests of refresh-token abuse: the real HTTP API in-process on a real SQLite file.

Every abuse is answered 401 ``invalid_grant`` (400 ``invalid_request`` is also fine for a
body of the wrong JSON type), never 5xx. Where the abuse is reuse of a rotated token, the
whole session is revoked: its current refresh token and its access token are refused too.
Where the abuse is no evidence that the session was stolen (a forged or altered token),
the session stays usable.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.core.refresh import PREFIX
from keyturn.server.service import Client, Service
from tests.conftest import Clock, make_settings
from tests.helpers import PASSWORD, bearer, fetch, login, refresh, signed_in

pytestmark = pytest.mark.anyio

DAY = 86400


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_grant"


async def assert_session_dead(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Both halves of the session's current pair are refused."""
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))
    me = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert me.status_code == 401
    assert me.json()["error"] == "invalid_token"


async def assert_session_alive(client: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, Any]:
    """The session still answers /me and rotates; returns the new pair."""
    assert (await client.get("/v1/auth/me", headers=bearer(tokens))).status_code == 200
    response = await refresh(client, tokens["refresh_token"])
    assert response.status_code == 200, response.text
    rotated: dict[str, Any] = response.json()
    return rotated


async def rotate(client: httpx.AsyncClient, refresh_token: str) -> dict[str, Any]:
    response = await refresh(client, refresh_token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def flip(token: str, index: int) -> str:
    """``token`` with the character at ``index`` replaced by the next one of the base64url alphabet."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = index % len(token)
    replacement = alphabet[(alphabet.index(token[i]) + 1) % len(alphabet)]
    return token[:i] + replacement + token[i + 1 :]


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signed_in(client)


@pytest.fixture
async def other_service(tmp_path: Path, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    """Another keyturn deployment: another secret, another SQLite file."""
    other = Service(make_settings(tmp_path / "other.db"), passwords=fast_passwords, clock=clock)
    await other.start()
    yield other
    await other.close()


# --- reuse and replay ----------------------------------------------------------------------------


async def test_replay_after_rotation_past_grace_window_revokes_the_session(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock
) -> None:
    rotated = await rotate(client, alice["refresh_token"])
    clock.advance(11)
    assert_invalid_grant(await refresh(client, alice["refresh_token"]))
    await assert_session_dead(client, rotated)


async def test_replay_of_older_generation_revokes_the_session(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock
) -> None:
    """A token two rotations old is reuse even inside the grace window of the last rotation."""
    first = await rotate(client, alice["refresh_token"])
    clock.advance(1)
    second = await rotate(client, first["refresh_token"])
    assert_invalid_grant(await refresh(client, alice["refresh_token"]))
    await assert_session_dead(client, second)


async def test_replay_inside_grace_window_returns_the_same_new_token(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock
) -> None:
    """Not a failure: a lost response or a second tab gets the current token again."""
    rotated = await rotate(client, alice["refresh_token"])
    clock.advance(9)
    replayed = await rotate(client, alice["refresh_token"])
    assert replayed["refresh_token"] == rotated["refresh_token"]
    assert replayed["session_id"] == rotated["session_id"]
    await assert_session_alive(client, replayed)


async def test_replay_after_logout(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    response = await client.post("/v1/auth/logout", json={"refresh_token": alice["refresh_token"]})
    assert response.status_code == 204
    await assert_session_dead(client, alice)


async def test_replay_after_logout_all(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    other_device = await login(client)
    response = await client.post("/v1/auth/logout-all", headers=bearer(alice))
    assert response.status_code == 204
    await assert_session_dead(client, other_device)
    await assert_session_dead(client, alice)


async def test_replay_after_password_change_on_other_sessions(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    """The other devices' tokens are refused; the session that changed the password goes on."""
    other_device = await login(client)
    response = await client.post(
        "/v1/auth/password",
        headers=bearer(alice),
        json={"current_password": PASSWORD, "new_password": "a whole new passphrase"},
    )
    assert response.status_code == 200, response.text
    await assert_session_dead(client, other_device)
    await assert_session_alive(client, response.json())


async def test_refresh_token_from_before_a_password_change_is_reuse(
    client: httpx.AsyncClient, alice: dict[str, Any], database_url: str
) -> None:
    """Regression (review finding 6): the changing session's refresh token from before the change,
    presented at once (inside what would be the grace window), is not answered with the new pair:
    it is reuse, and the session ends."""
    response = await client.post(
        "/v1/auth/password",
        headers=bearer(alice),
        json={"current_password": PASSWORD, "new_password": "a whole new passphrase"},
    )
    assert response.status_code == 200, response.text
    replay = await refresh(client, alice["refresh_token"])
    assert_invalid_grant(replay)
    assert "already used" in replay.json()["error_description"]
    await assert_session_dead(client, response.json())
    rows = await fetch(database_url, "SELECT event, outcome FROM audit_events WHERE event = 'reuse_detected'")
    assert rows == [("reuse_detected", "revoked")]


async def test_refresh_for_disabled_user(client: httpx.AsyncClient, service: Service, alice: dict[str, Any]) -> None:
    await service.admin.disable_user("alice")
    await assert_session_dead(client, alice)


# --- altered and malformed tokens ----------------------------------------------------------------


async def test_tampered_mac_is_refused_and_session_survives(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    token = alice["refresh_token"]
    for index in (-1, -5, -21):  # all inside the 128-bit MAC at the end
        assert_invalid_grant(await refresh(client, flip(token, index)))
    await assert_session_alive(client, alice)


async def test_tampered_generation_is_refused_and_session_survives(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    """Altering the body (not the MAC) breaks the MAC as well."""
    token = alice["refresh_token"]
    assert_invalid_grant(await refresh(client, flip(token, len(PREFIX) + 30)))
    await assert_session_alive(client, alice)


async def test_truncated_token(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    token = alice["refresh_token"]
    for cut in (token[:-1], token[:-4], token[: len(PREFIX) + 10], PREFIX):
        assert_invalid_grant(await refresh(client, cut))
    await assert_session_alive(client, alice)


async def test_oversized_token(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    assert_invalid_grant(await refresh(client, PREFIX + "A" * 10_240))
    assert_invalid_grant(await refresh(client, alice["refresh_token"] + "A" * 10_240))


async def test_wrong_prefix(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    body = alice["refresh_token"].removeprefix(PREFIX)
    for prefix in ("xx_rt_", "KT_RT_", "kt_at_", ""):
        assert_invalid_grant(await refresh(client, prefix + body))


async def test_padded_or_standard_alphabet_spelling(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    """Other spellings of the same bytes are not the token."""
    token = alice["refresh_token"]
    assert_invalid_grant(await refresh(client, token + "=="))
    assert_invalid_grant(await refresh(client, " " + token[1:]))
    assert_invalid_grant(await refresh(client, token.upper()))


async def test_empty_string(client: httpx.AsyncClient) -> None:
    assert_invalid_grant(await refresh(client, ""))


async def test_access_token_as_refresh_token(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    assert_invalid_grant(await refresh(client, alice["access_token"]))


async def _refresh_with_value(client: httpx.AsyncClient, value: object) -> httpx.Response:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": value})
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_request", "invalid_grant")
    return response


async def test_refresh_token_as_json_number(client: httpx.AsyncClient) -> None:
    await _refresh_with_value(client, 12345)


async def test_refresh_token_as_json_null(client: httpx.AsyncClient) -> None:
    await _refresh_with_value(client, None)


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
    assert_invalid_grant(await refresh(client, theirs.refresh_token))
    await assert_session_alive(client, alice)


async def test_another_instance_minting_our_session_id(
    client: httpx.AsyncClient, other_service: Service, alice: dict[str, Any]
) -> None:
    """Knowing our session id is not enough: another deployment's MAC key does not verify."""
    sid = uuid.UUID(alice["session_id"])
    for generation in (0, 1):
        assert_invalid_grant(await refresh(client, other_service.ctx.codec.encode(sid, generation)))
    await assert_session_alive(client, alice)


async def test_generation_never_reached_is_refused_without_revoking(
    client: httpx.AsyncClient, service: Service, alice: dict[str, Any]
) -> None:
    """A validly MACed token of a future generation is no evidence of theft: the session lives on."""
    future = service.ctx.codec.encode(uuid.UUID(alice["session_id"]), 0 + 5)
    assert_invalid_grant(await refresh(client, future))
    await assert_session_alive(client, alice)


async def test_session_id_never_issued(client: httpx.AsyncClient, service: Service) -> None:
    """A validly MACed token naming a session that does not exist."""
    assert_invalid_grant(await refresh(client, service.ctx.codec.encode(uuid.uuid4(), 0)))


# --- lifetimes -----------------------------------------------------------------------------------


async def test_idle_expiry_after_seven_days(client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock) -> None:
    clock.advance(7 * DAY - 1)
    rotated = await rotate(client, alice["refresh_token"])
    clock.advance(7 * DAY)
    assert_invalid_grant(await refresh(client, rotated["refresh_token"]))


async def test_absolute_expiry_after_thirty_days_of_daily_refresh(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock
) -> None:
    tokens = alice
    for _ in range(29):
        clock.advance(DAY)
        tokens = await rotate(client, tokens["refresh_token"])
    assert tokens["refresh_token_expires_in"] == DAY
    clock.advance(DAY)
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))
    me = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert me.status_code == 401
