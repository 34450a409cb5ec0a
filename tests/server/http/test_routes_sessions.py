"""Integration tests of the routes that end sessions, in-process: the real ASGI app on a real database.

Logout (by access token, refresh token or cookie), logout everywhere, the device list, renaming a
device, and the password change that ends every other session. An ended session's tokens are refused for that
reason: ``invalid_grant`` "session has ended" for its refresh token, ``invalid_token`` "session of
this access token has ended" for its access token.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from keyturn.core.errors import SessionRevoked
from tests.helpers import (
    PASSWORD,
    SESSION_ENDED,
    assert_refused,
    audit_trail,
    bearer,
    login,
    refresh,
    register,
    signed_in,
)

pytestmark = pytest.mark.anyio


async def test_logout_by_bearer_ends_only_this_session(client: httpx.AsyncClient) -> None:
    """Logout revokes this session at once; another session of the user keeps working."""
    await register(client)
    a, b = await login(client), await login(client)
    response = await client.post("/v1/auth/logout", headers=bearer(a))
    assert response.status_code == 204
    assert_refused(await client.get("/v1/auth/me", headers=bearer(a)), 401, "invalid_token", SESSION_ENDED)
    assert_refused(await refresh(client, a["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
    assert (await client.get("/v1/auth/me", headers=bearer(b))).status_code == 200


async def test_logout_by_refresh_token(client: httpx.AsyncClient) -> None:
    """A client that lost its access token can still end the session with the refresh token."""
    tokens = await signed_in(client)
    response = await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 204
    assert_refused(await refresh(client, tokens["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)


async def test_logout_without_any_token_is_401(client: httpx.AsyncClient) -> None:
    """Nothing to identify the session: 401."""
    response = await client.post("/v1/auth/logout")
    assert_refused(response, 401, "invalid_token", "Send a bearer access token or a refresh_token.")


async def test_logout_all_ends_every_session(client: httpx.AsyncClient) -> None:
    """logout-all revokes all of the user's sessions, not other users'."""
    await register(client)
    a, b = await login(client), await login(client)
    other = await signed_in(client, "bob")
    assert (await client.post("/v1/auth/logout-all", headers=bearer(a))).status_code == 204
    for tokens in (a, b):
        assert_refused(await client.get("/v1/auth/me", headers=bearer(tokens)), 401, "invalid_token", SESSION_ENDED)
        assert_refused(await refresh(client, tokens["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
    assert (await client.get("/v1/auth/me", headers=bearer(other))).status_code == 200


async def test_sessions_lists_devices_and_marks_current(client: httpx.AsyncClient) -> None:
    """Each session shows user agent, IP, created and last used; the caller's is current."""
    await register(client)
    a = await login(client, device_name="laptop")
    await login(client)
    response = await client.get("/v1/auth/sessions", headers=bearer(a))
    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert len(sessions) == 2
    current = [s for s in sessions if s["current"]]
    assert [s["id"] for s in current] == [a["session_id"]]
    assert current[0]["user_agent"] == "pytest"
    assert current[0]["ip"] == "203.0.113.7"
    assert current[0]["device_name"] == "laptop"
    assert {"created_at", "last_used_at"} <= set(current[0])


async def test_delete_session_ends_that_device(client: httpx.AsyncClient) -> None:
    """DELETE /sessions/{id} ends one of the user's own sessions."""
    await register(client)
    a, b = await login(client), await login(client)
    response = await client.delete(f"/v1/auth/sessions/{b['session_id']}", headers=bearer(a))
    assert response.status_code == 204
    assert_refused(await refresh(client, b["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
    assert (await client.get("/v1/auth/me", headers=bearer(a))).status_code == 200


@pytest.mark.parametrize("target", ["other-user", "unknown", "not-a-uuid"])
async def test_delete_session_of_someone_else_is_404(client: httpx.AsyncClient, target: str) -> None:
    """Another user's session, an unknown id or garbage: 404, and nothing is ended."""
    mine = await signed_in(client, "alice")
    theirs = await signed_in(client, "bob")
    sid = {"other-user": theirs["session_id"], "unknown": str(uuid.uuid4()), "not-a-uuid": "x"}[target]
    response = await client.delete(f"/v1/auth/sessions/{sid}", headers=bearer(mine))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert (await client.get("/v1/auth/me", headers=bearer(theirs))).status_code == 200


async def test_rename_session_names_that_device_for_the_list(client: httpx.AsyncClient, database_url: str) -> None:
    """PATCH /sessions/{id} answers 200 with the session, its name cleaned (control characters
    dropped); the device list shows it; the rename is audited session_renamed; "" clears it."""
    user = await register(client)
    a, b = await login(client), await login(client, device_name="old name")
    url = f"/v1/auth/sessions/{b['session_id']}"
    response = await client.patch(url, headers=bearer(a), json={"device_name": "Work\x00 laptop\n"})
    assert response.status_code == 200, response.text
    renamed = response.json()
    assert (renamed["id"], renamed["device_name"], renamed["current"]) == (b["session_id"], "Work laptop", False)
    assert {"user_agent", "ip", "created_at", "last_used_at"} <= set(renamed)
    listed = (await client.get("/v1/auth/sessions", headers=bearer(a))).json()["sessions"]
    assert {s["id"]: s["device_name"] for s in listed} == {a["session_id"]: None, b["session_id"]: "Work laptop"}
    assert ("session_renamed", "ok", None) in await audit_trail(database_url, user["id"])
    own = await client.patch(f"/v1/auth/sessions/{a['session_id']}", headers=bearer(a), json={"device_name": "Mine"})
    assert own.json()["current"] is True
    cleared = await client.patch(url, headers=bearer(a), json={"device_name": ""})
    assert cleared.json()["device_name"] is None
    assert (await client.get("/v1/auth/me", headers=bearer(b))).status_code == 200  # renaming ends nothing


@pytest.mark.parametrize("target", ["other-user", "unknown", "not-a-uuid", "ended"])
async def test_rename_session_of_someone_else_or_ended_is_404(client: httpx.AsyncClient, target: str) -> None:
    """Another user's session, an unknown id, garbage or a session that has ended: 404, nothing renamed."""
    mine = await signed_in(client, "alice")
    ended = await login(client, "alice")
    await client.post("/v1/auth/logout", headers=bearer(ended))
    theirs = await signed_in(client, "bob")
    sid = {
        "other-user": theirs["session_id"], "unknown": str(uuid.uuid4()), "not-a-uuid": "x",
        "ended": ended["session_id"],
    }[target]  # fmt: skip
    response = await client.patch(f"/v1/auth/sessions/{sid}", headers=bearer(mine), json={"device_name": "mine now"})
    assert_refused(response, 404, "not_found", "No such session.")
    listed = (await client.get("/v1/auth/sessions", headers=bearer(theirs))).json()["sessions"]
    assert [s["device_name"] for s in listed] == [None]


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({"device_name": "d" * 129}, "The field 'device_name' has the wrong type or value."),
        ({"device_name": 7}, "The field 'device_name' has the wrong type or value."),
        ({}, "The field 'device_name' is required."),
        ({"device_name": "x", "user_agent": "forged"}, "The field 'user_agent' is not allowed."),
    ],
    ids=["too-long", "not-a-string", "missing", "unknown-field"],
)
async def test_rename_session_refuses_a_bad_body(
    client: httpx.AsyncClient, body: dict[str, object], description: str
) -> None:
    """A name over 128 characters, not a string, absent, or an extra field: 400 invalid_request saying which."""
    tokens = await signed_in(client)
    response = await client.patch(f"/v1/auth/sessions/{tokens['session_id']}", headers=bearer(tokens), json=body)
    assert_refused(response, 400, "invalid_request", description)


async def test_rename_session_needs_an_access_token(client: httpx.AsyncClient) -> None:
    """Without a bearer token: 401 invalid_token, as every other route of a signed-in user."""
    tokens = await signed_in(client)
    response = await client.patch(f"/v1/auth/sessions/{tokens['session_id']}", json={"device_name": "x"})
    assert_refused(response, 401, "invalid_token")


async def test_password_change_rotates_this_session_and_ends_the_others(client: httpx.AsyncClient) -> None:
    """200 with a fresh pair for this session; every other session ends; the new password works."""
    await register(client)
    a, b = await login(client), await login(client)
    response = await client.post(
        "/v1/auth/password",
        headers=bearer(a),
        json={"current_password": PASSWORD, "new_password": "a whole new passphrase"},
    )
    assert response.status_code == 200
    fresh = response.json()
    assert fresh["session_id"] == a["session_id"]
    assert (await client.get("/v1/auth/me", headers=bearer(fresh))).status_code == 200
    assert_refused(await client.get("/v1/auth/me", headers=bearer(b)), 401, "invalid_token", SESSION_ENDED)
    assert_refused(await refresh(client, b["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
    assert (await refresh(client, fresh["refresh_token"])).status_code == 200
    await login(client, password="a whole new passphrase")
    old = await client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert_refused(old, 401, "invalid_credentials")


async def test_logout_with_one_users_access_token_and_another_users_refresh_token_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Regression (review finding 6): user A's access token and user B's refresh token name two
    sessions: 400 invalid_request, and B's session goes on."""
    alice = await signed_in(client, "alice")
    bob = await signed_in(client, "bob")
    response = await client.post("/v1/auth/logout", json={"refresh_token": bob["refresh_token"]}, headers=bearer(alice))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert "different sessions" in response.json()["error_description"]
    assert (await client.get("/v1/auth/me", headers=bearer(bob))).status_code == 200
    assert (await client.get("/v1/auth/me", headers=bearer(alice))).status_code == 200
    same = await client.post("/v1/auth/logout", json={"refresh_token": alice["refresh_token"]}, headers=bearer(alice))
    assert same.status_code == 204


async def test_password_change_with_wrong_current_password(client: httpx.AsyncClient) -> None:
    """The current password is checked; nothing changes when it is wrong."""
    tokens = await signed_in(client)
    response = await client.post(
        "/v1/auth/password",
        headers=bearer(tokens),
        json={"current_password": "wrong password!", "new_password": "a whole new passphrase"},
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_credentials",
        "error_description": "The current password is incorrect.",
    }
    # RFC 9110 §15.5.2: a 401 names a challenge; this one says nothing is wrong with the bearer
    # token, so no client refreshes and retries (keyturn.client retries on error="invalid_token").
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'
    await login(client)
