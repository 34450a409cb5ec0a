"""Integration tests of interoperability with an OAuth client nobody here wrote: Authlib's httpx
clients (``OAuth2Client``, ``AsyncOAuth2Client``) against a real ``keyturn serve`` on loopback,
configured only from the server's RFC 8414 metadata, as a public client
(``token_endpoint_auth_method="none"``): refresh, automatic refresh, revocation.
"""

# Authlib ships no type information; its names are Any here.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import authlib.deprecate  # noqa: F401 - first: importing it puts "always" in front of the warning filters
import httpx
import pytest

from tests.servers import Server, keyturn_fixture

with warnings.catch_warnings():  # Authlib 1.9 asks for the httpx2 package, and works with httpx as it is
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

pytestmark = pytest.mark.server

server = keyturn_fixture("--dev")
CREDENTIALS = {"password": "correct horse battery staple"}


@pytest.fixture(scope="module")
def metadata(server: Server) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    return found


def signed_in(server: Server, username: str) -> dict[str, Any]:
    """A token response from the first-party sign-in, as a client would have stored it."""
    creds = {"username": username, **CREDENTIALS}
    assert httpx.post(f"{server.url}/v1/auth/register", json=creds).status_code == 201
    tokens: dict[str, Any] = httpx.post(f"{server.url}/v1/auth/login", json=creds).json()
    return tokens


@pytest.fixture
def client(metadata: dict[str, Any]) -> Iterator[OAuth2Client]:
    with OAuth2Client(
        client_id="keyturn",
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
        token_endpoint=metadata["token_endpoint"],
    ) as c:
        yield c


def test_the_metadata_names_the_endpoints_authlib_uses(server: Server, metadata: dict[str, Any]) -> None:
    """Discovery: the token and revocation endpoints are keyturn's standard ones, and only the grant served."""
    assert metadata["token_endpoint"] == f"{server.url}/oauth/token"
    assert metadata["revocation_endpoint"] == f"{server.url}/oauth/revoke"
    assert metadata["grant_types_supported"] == ["refresh_token"]


def test_authlib_refreshes_and_the_new_tokens_work(server: Server, client: OAuth2Client) -> None:
    """``OAuth2Client.refresh_token`` rotates: a new refresh token, and an access token /me accepts."""
    client.token = signed_in(server, "authlib-refresh")
    old = client.token["refresh_token"]
    fresh = client.refresh_token()
    assert fresh["refresh_token"] != old
    assert fresh["token_type"] == "Bearer"
    me = client.get(f"{server.url}/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["username"] == "authlib-refresh"


def test_authlib_revokes_and_a_later_refresh_is_refused(
    server: Server, client: OAuth2Client, metadata: dict[str, Any]
) -> None:
    """``revoke_token`` (RFC 7009) ends the session: Authlib's next refresh fails with invalid_grant."""
    client.token = signed_in(server, "authlib-revoke")
    answer = client.revoke_token(
        metadata["revocation_endpoint"], token=client.token["refresh_token"], token_type_hint="refresh_token"
    )
    assert answer.status_code == 200
    with pytest.raises(OAuthError) as refused:
        client.refresh_token()
    assert refused.value.error == "invalid_grant"
    assert httpx.get(
        f"{server.url}/v1/auth/me", headers={"authorization": f"Bearer {client.token['access_token']}"}
    ).json() == {"error": "invalid_token", "error_description": "The session of this access token has ended."}


@pytest.mark.anyio
async def test_authlib_async_client_refreshes_an_expired_token_by_itself(
    server: Server, metadata: dict[str, Any]
) -> None:
    """``AsyncOAuth2Client`` with an expired token refreshes at the token endpoint before the request,
    hands the new token to ``update_token``, and the request succeeds."""
    tokens = signed_in(server, "authlib-auto")
    updated: list[dict[str, Any]] = []

    async def update_token(token: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
        updated.append(token)

    async with AsyncOAuth2Client(
        client_id="keyturn",
        token_endpoint_auth_method="none",
        token_endpoint=metadata["token_endpoint"],
        token={**tokens, "expires_at": int(time.time()) - 10},
        update_token=update_token,
    ) as c:
        me = await c.get(f"{server.url}/v1/auth/me")
    assert me.status_code == 200
    assert [t["refresh_token"] != tokens["refresh_token"] for t in updated] == [True]
