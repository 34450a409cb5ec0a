"""Integration tests of refresh-token reuse and of session lifetimes: the real HTTP API in-process on
a real database (SQLite file and PostgreSQL).

A rotated token presented again past the grace window (or two generations old) is reuse (RFC 9700
§4.14): the whole session is revoked, its current refresh and access tokens are refused as ended,
and the audit log records ``reuse_detected``. Inside the grace window it is not reuse. Ended,
disabled and expired sessions are refused with their own reason, in the answer and the audit row.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keyturn.core.errors import (
    SessionExpired,
    TokenExpired,
)
from keyturn.server.service import Service
from tests.conftest import Clock
from tests.helpers import PASSWORD, assert_refused, audit_trail, bearer, login, refresh
from tests.security.grants import (
    REUSE_ROW,
    REUSED,
    alice_id,
    assert_invalid_grant,
    assert_session_alive,
    assert_session_dead,
    rotate,
)

pytestmark = pytest.mark.anyio

DAY = 86400


# --- reuse and replay ----------------------------------------------------------------------------


async def test_replay_after_rotation_past_grace_window_revokes_the_session(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock, database_url: str
) -> None:
    rotated = await rotate(client, alice["refresh_token"])
    clock.advance(11)
    assert_invalid_grant(await refresh(client, alice["refresh_token"]), REUSED)
    await assert_session_dead(client, rotated)
    assert (await audit_trail(database_url)).count(REUSE_ROW) == 1


async def test_replay_of_older_generation_revokes_the_session(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock, database_url: str
) -> None:
    """A token two rotations old is reuse even inside the grace window of the last rotation."""
    first = await rotate(client, alice["refresh_token"])
    clock.advance(1)
    second = await rotate(client, first["refresh_token"])
    assert_invalid_grant(await refresh(client, alice["refresh_token"]), REUSED)
    await assert_session_dead(client, second)
    assert (await audit_trail(database_url)).count(REUSE_ROW) == 1


async def test_replay_inside_grace_window_returns_the_same_new_token(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock, database_url: str
) -> None:
    """Not a failure: a lost response or a second tab gets the current token again."""
    rotated = await rotate(client, alice["refresh_token"])
    clock.advance(9)
    replayed = await rotate(client, alice["refresh_token"])
    assert replayed["refresh_token"] == rotated["refresh_token"]
    assert replayed["session_id"] == rotated["session_id"]
    await assert_session_alive(client, replayed)
    assert REUSE_ROW not in await audit_trail(database_url)


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
    assert_invalid_grant(await refresh(client, alice["refresh_token"]), REUSED)
    await assert_session_dead(client, response.json())
    assert (await audit_trail(database_url)).count(REUSE_ROW) == 1


async def test_refresh_for_disabled_user(
    client: httpx.AsyncClient, service: Service, alice: dict[str, Any], database_url: str
) -> None:
    """Disabling a user ends their sessions at once; the refused refresh and sign-in are audited."""
    await service.admin.disable_user("alice")
    await assert_session_dead(client, alice)
    refused = await client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert_refused(refused, 401, "invalid_credentials", "The username or password is incorrect.")
    assert (await audit_trail(database_url, alice_id(alice)))[-3:] == [
        ("user_disabled", "ok", {"ended": 1}),
        ("refresh", "refused", {"reason": "session_revoked"}),
        ("login", "failed", None),
    ]


# --- lifetimes -----------------------------------------------------------------------------------


async def test_idle_expiry_after_seven_days(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock, database_url: str
) -> None:
    clock.advance(7 * DAY - 1)
    rotated = await rotate(client, alice["refresh_token"])
    clock.advance(7 * DAY)
    assert_invalid_grant(await refresh(client, rotated["refresh_token"]), SessionExpired.description)
    assert (await audit_trail(database_url))[-1] == ("refresh", "refused", {"reason": "idle_expired"})


async def test_absolute_expiry_after_thirty_days_of_daily_refresh(
    client: httpx.AsyncClient, alice: dict[str, Any], clock: Clock, database_url: str
) -> None:
    tokens = alice
    for _ in range(29):
        clock.advance(DAY)
        tokens = await rotate(client, tokens["refresh_token"])
    assert tokens["refresh_token_expires_in"] == DAY
    clock.advance(DAY)
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]), SessionExpired.description)
    assert (await audit_trail(database_url))[-1] == ("refresh", "refused", {"reason": "absolute_expired"})
    me = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert_refused(me, 401, "invalid_token", TokenExpired.description)
