"""Integration tests of interoperability with an OAuth client nobody here wrote: Authlib's clients
(``OAuth2Client`` and ``AsyncOAuth2Client`` on httpx, ``OAuth2Session`` on requests) against a real
``keyturn serve`` on loopback, configured only from the server's RFC 8414 metadata: as the public
first-party client (``token_endpoint_auth_method="none"``) refresh, automatic refresh and
revocation; as confidential clients registered with the real CLI (``client_secret_basic`` and
``client_secret_post``) ``client_credentials``, automatic re-fetching, introspection and revocation.
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
from authlib.integrations.requests_client import OAuth2Session

from tests.interop.oauth import (
    AUDIENCE,
    BASIC,
    FIRST_PARTY,
    POST,
    SCOPE,
    Registered,
    introspected,
    machines_of,
    metadata_of,
    signed_in,
)
from tests.servers import Server, keyturn_fixture

with warnings.catch_warnings():  # Authlib 1.9 asks for the httpx2 package, and works with httpx as it is
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

pytestmark = pytest.mark.server

server = keyturn_fixture("--dev")


@pytest.fixture(scope="module")
def metadata(server: Server) -> dict[str, Any]:
    return metadata_of(server)


@pytest.fixture(scope="module")
def machines(server: Server) -> dict[str, Registered]:
    return machines_of(server, "authlib")


@pytest.fixture(params=[BASIC, POST])
def machine(request: pytest.FixtureRequest, machines: dict[str, Registered]) -> Registered:
    return machines[request.param]


@pytest.fixture
def client(metadata: dict[str, Any]) -> Iterator[OAuth2Client]:
    with OAuth2Client(
        client_id=FIRST_PARTY,
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
        token_endpoint=metadata["token_endpoint"],
    ) as c:
        yield c


def machine_session(m: Registered) -> OAuth2Session:
    # Authlib's revocation method defaults to client_secret_basic whenever there is a secret: a
    # client_secret_post client must say so for revocation too.
    return OAuth2Session(
        m.client_id, m.secret, token_endpoint_auth_method=m.method, revocation_endpoint_auth_method=m.method
    )


def test_the_metadata_names_the_endpoints_authlib_uses(server: Server, metadata: dict[str, Any]) -> None:
    """Discovery: the token, revocation and introspection endpoints are keyturn's standard ones,
    with the grants and client authentication methods served."""
    assert metadata["token_endpoint"] == f"{server.url}/oauth/token"
    assert metadata["revocation_endpoint"] == f"{server.url}/oauth/revoke"
    assert metadata["introspection_endpoint"] == f"{server.url}/oauth/introspect"
    assert metadata["grant_types_supported"] == ["refresh_token", "client_credentials"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["none", BASIC, POST]


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
    assert (refused.value.error, refused.value.description) == (
        "invalid_grant",
        "The session has ended; sign in again.",
    )
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
        client_id=FIRST_PARTY,
        token_endpoint_auth_method="none",
        token_endpoint=metadata["token_endpoint"],
        token={**tokens, "expires_at": int(time.time()) - 10},
        update_token=update_token,
    ) as c:
        me = await c.get(f"{server.url}/v1/auth/me")
    assert me.status_code == 200
    assert [t["refresh_token"] != tokens["refresh_token"] for t in updated] == [True]


def test_authlib_session_gets_a_machine_token_that_introspects_as_the_client(
    metadata: dict[str, Any], machine: Registered
) -> None:
    """``OAuth2Session.fetch_token(grant_type="client_credentials")`` with either registered method:
    a Bearer token with the client's scope and no refresh token; ``introspect_token`` by the same
    client says it is active, for the client itself and its audience."""
    with machine_session(machine) as session:
        token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        assert (token["token_type"], token["scope"], "refresh_token" in token) == ("Bearer", SCOPE, False)
        answer = session.introspect_token(metadata["introspection_endpoint"], token=token["access_token"])
    assert answer.status_code == 200
    found = answer.json()
    assert found["active"] is True
    assert (found["client_id"], found["sub"], found["aud"], found["scope"]) == (
        machine.client_id, machine.client_id, [AUDIENCE], SCOPE,
    )  # fmt: skip


def test_authlib_session_with_the_other_method_is_refused_as_registered(
    metadata: dict[str, Any], machines: dict[str, Registered]
) -> None:
    """A client_secret_post client that Authlib sends by client_secret_basic gets 401 invalid_client
    saying which method it was registered with."""
    post = machines[POST]
    with (
        OAuth2Session(post.client_id, post.secret, token_endpoint_auth_method=BASIC) as session,
        pytest.raises(OAuthError) as refused,
    ):
        session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert (refused.value.error, refused.value.description) == (
        "invalid_client", "Authenticate with client_secret_post, as registered.",
    )  # fmt: skip


def test_authlib_revokes_a_machine_token_and_its_grant_ends(
    server: Server, metadata: dict[str, Any], machine: Registered
) -> None:
    """``revoke_token`` of a machine's own access token ends every token of its grant (introspection
    then says ``{"active": false}``); the next ``client_credentials`` grant works again."""
    with machine_session(machine) as session:
        first = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")["access_token"]
        second = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")["access_token"]
        answer = session.revoke_token(metadata["revocation_endpoint"], token=second, token_type_hint="access_token")
        assert answer.status_code == 200
        after = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")["access_token"]
    assert [introspected(server, machine, t)["active"] for t in (first, second, after)] == [False, False, True]
    assert introspected(server, machine, second) == {"active": False}


@pytest.mark.anyio
async def test_authlib_async_client_fetches_a_new_machine_token_by_itself(
    server: Server, metadata: dict[str, Any], machines: dict[str, Registered]
) -> None:
    """``AsyncOAuth2Client`` with ``grant_type="client_credentials"``: once its token counts as
    expiring (a leeway longer than the token's life), it asks the token endpoint again before the
    next request and hands the new token to ``update_token``."""
    m = machines[BASIC]
    updated: list[dict[str, Any]] = []

    async def update_token(token: dict[str, Any], access_token: str | None = None, **_: Any) -> None:
        updated.append(token)

    async with AsyncOAuth2Client(
        m.client_id, m.secret, token_endpoint=metadata["token_endpoint"], grant_type="client_credentials",
        leeway=24 * 3600, update_token=update_token,
    ) as c:  # fmt: skip
        first = await c.fetch_token(grant_type="client_credentials")
        ready = await c.get(f"{server.url}/readyz")
        sent = ready.request.headers["authorization"]
    assert ready.status_code == 200
    assert [t["access_token"] != first["access_token"] for t in updated] == [True]
    assert sent == f"Bearer {updated[0]['access_token']}"
    assert introspected(server, m, updated[0]["access_token"])["client_id"] == m.client_id
