"""What the refresh-token abuse tests (tests/security/test_refresh_*.py) share: the answers an
abused refresh token gets, and checks that a session is dead (both halves of its pair refused, as
ended) or alive (it answers /me and rotates).

Every abuse is answered 401 ``invalid_grant`` with the reason in ``error_description`` (400
``invalid_request`` for a body of the wrong JSON type), never 5xx.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from keyturn.core.errors import MalformedRefreshToken, RefreshTokenReused, SessionRevoked
from tests.helpers import SESSION_ENDED, assert_refused, bearer, refresh

MALFORMED = MalformedRefreshToken.description
REUSED = RefreshTokenReused.description
REUSE_ROW = ("reuse_detected", "revoked", None)


def assert_invalid_grant(response: httpx.Response, reason: str) -> None:
    """401 ``invalid_grant``, and ``reason`` (an error class's ``description``) says why."""
    assert_refused(response, 401, "invalid_grant", reason)


async def assert_session_dead(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Both halves of the session's current pair are refused, because the session has ended."""
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]), SessionRevoked.description)
    assert_refused(await client.get("/v1/auth/me", headers=bearer(tokens)), 401, "invalid_token", SESSION_ENDED)


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


def alice_id(tokens: dict[str, Any]) -> str:
    """The user id of a sign-in (the access token's ``sub``)."""
    return str(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"])
