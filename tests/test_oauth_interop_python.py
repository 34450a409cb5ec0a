"""Integration tests of interoperability with two more Python OAuth clients nobody here wrote,
against a real ``keyturn serve`` on loopback, with confidential clients registered by the real CLI:

- requests-oauthlib (on oauthlib): ``client_credentials`` with ``BackendApplicationClient`` (HTTP
  Basic, and the secret in the body), and ``OAuth2Session``'s automatic refresh of a first-party
  user session. oauthlib refuses ``http://`` unless ``OAUTHLIB_INSECURE_TRANSPORT`` is set, which
  these loopback tests do.
- httpx-oauth: ``BaseOAuth2.refresh_token`` and ``revoke_token`` on a first-party user session, and
  on a machine's token. httpx-oauth knows no public clients: it always authenticates, by
  ``client_secret_basic`` or ``client_secret_post``. With ``client_secret_post`` and an empty secret
  it sends ``client_id=keyturn&client_secret=``, which keyturn takes as the public client (RFC 6749
  §3.2: an empty parameter is an omitted one); Basic with an empty password likewise.
"""

# oauthlib and requests-oauthlib ship no type information; their names are Any here.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from httpx_oauth.oauth2 import BaseOAuth2, OAuth2ClientAuthMethod, RefreshTokenError
from oauthlib.oauth2 import BackendApplicationClient, InvalidClientError
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

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

pytestmark = pytest.mark.server

server = keyturn_fixture("--dev")


@pytest.fixture(autouse=True)
def loopback_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """oauthlib raises InsecureTransportError for any http:// URL unless this is set."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture(scope="module")
def metadata(server: Server) -> dict[str, Any]:
    return metadata_of(server)


@pytest.fixture(scope="module")
def machines(server: Server) -> dict[str, Registered]:
    return machines_of(server, "python")


def httpx_oauth(
    metadata: dict[str, Any], client_id: str, secret: str, method: OAuth2ClientAuthMethod
) -> BaseOAuth2[dict[str, Any]]:
    """httpx-oauth's generic client on keyturn's endpoints. keyturn has no authorization endpoint
    (no browser redirect flow): the one httpx-oauth requires is never called here. httpx-oauth
    0.17 revokes with ``token_endpoint_auth_method`` (``revocation_endpoint_auth_method`` is only
    checked for a valid name), so the two are kept the same."""
    return BaseOAuth2(
        client_id,
        secret,
        authorize_endpoint=f"{metadata['issuer']}/unused-authorize",
        access_token_endpoint=metadata["token_endpoint"],
        refresh_token_endpoint=metadata["token_endpoint"],
        revoke_token_endpoint=metadata["revocation_endpoint"],
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    )


def me(server: Server, access_token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/auth/me", headers={"authorization": f"Bearer {access_token}"})


@pytest.mark.parametrize("method", [BASIC, POST])
def test_requests_oauthlib_gets_a_machine_token_with_either_method(
    server: Server, metadata: dict[str, Any], machines: dict[str, Registered], method: str
) -> None:
    """``BackendApplicationClient`` + ``fetch_token``: with ``auth=HTTPBasicAuth`` for a
    client_secret_basic client, with ``include_client_id`` and the secret in the body for a
    client_secret_post one; the token introspects as the client's, for its audience."""
    m = machines[method]
    session = OAuth2Session(client=BackendApplicationClient(client_id=m.client_id))
    if method == BASIC:
        token = session.fetch_token(metadata["token_endpoint"], auth=HTTPBasicAuth(m.client_id, m.secret))
    else:
        token = session.fetch_token(metadata["token_endpoint"], include_client_id=True, client_secret=m.secret)
    assert (token["token_type"], token["scope"], "refresh_token" in token) == ("Bearer", [SCOPE], False)
    found = introspected(server, m, token["access_token"])
    assert (found["active"], found["sub"], found["client_id"], found["aud"]) == (
        True,
        m.client_id,
        m.client_id,
        [AUDIENCE],
    )


def test_requests_oauthlib_sees_a_wrong_secret_as_invalid_client(
    metadata: dict[str, Any], machines: dict[str, Registered]
) -> None:
    """A wrong secret: oauthlib raises its InvalidClientError carrying keyturn's description."""
    m = machines[BASIC]
    session = OAuth2Session(client=BackendApplicationClient(client_id=m.client_id))
    with pytest.raises(InvalidClientError) as refused:
        session.fetch_token(metadata["token_endpoint"], auth=HTTPBasicAuth(m.client_id, m.secret + "x"))
    assert (refused.value.status_code, refused.value.description) == (401, "Client authentication failed.")


def test_requests_oauthlib_refreshes_an_expired_user_token_by_itself(server: Server, metadata: dict[str, Any]) -> None:
    """``OAuth2Session(token=..., auto_refresh_url=..., token_updater=...)`` with an expired token:
    the request refreshes first (as the public client: ``client_id`` in the body, no secret), hands
    the rotated token to ``token_updater``, and succeeds with the new access token."""
    tokens = signed_in(server, "requests-oauthlib-auto")
    updated: list[dict[str, Any]] = []
    session = OAuth2Session(
        FIRST_PARTY,
        token={**tokens, "expires_at": time.time() - 10},
        auto_refresh_url=metadata["token_endpoint"],
        auto_refresh_kwargs={"client_id": FIRST_PARTY},
        token_updater=updated.append,
    )
    answer = session.get(f"{server.url}/v1/auth/me")
    assert answer.status_code == 200
    assert answer.json()["username"] == "requests-oauthlib-auto"
    assert [t["refresh_token"] != tokens["refresh_token"] for t in updated] == [True]
    assert answer.request.headers["authorization"] == f"Bearer {updated[0]['access_token']}"


@pytest.mark.anyio
async def test_httpx_oauth_refreshes_and_revokes_a_user_session_as_the_public_client(
    server: Server, metadata: dict[str, Any]
) -> None:
    """httpx-oauth with ``client_secret_post`` and an empty secret (``client_id=keyturn&client_secret=``):
    ``refresh_token`` rotates, ``revoke_token`` ends the session, and the next refresh is refused
    with invalid_grant."""
    client = httpx_oauth(metadata, FIRST_PARTY, "", POST)
    tokens = signed_in(server, "httpx-oauth-user")
    fresh = await client.refresh_token(tokens["refresh_token"])
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert me(server, fresh["access_token"]).json()["username"] == "httpx-oauth-user"
    await client.revoke_token(fresh["refresh_token"], "refresh_token")
    with pytest.raises(RefreshTokenError) as refused:
        await client.refresh_token(fresh["refresh_token"])
    assert refused.value.response is not None
    assert refused.value.response.status_code == 400
    assert refused.value.response.json() == {
        "error": "invalid_grant", "error_description": "The session has ended; sign in again.",
    }  # fmt: skip
    assert (
        me(server, fresh["access_token"]).json()["error_description"] == "The session of this access token has ended."
    )


@pytest.mark.anyio
async def test_httpx_oauth_public_client_by_basic_with_an_empty_secret_refreshes(
    server: Server, metadata: dict[str, Any]
) -> None:
    """httpx-oauth with ``client_secret_basic`` and an empty secret sends ``Basic base64("keyturn:")``:
    an empty password is no secret, so it is the public client, and the refresh rotates."""
    client = httpx_oauth(metadata, FIRST_PARTY, "", BASIC)
    tokens = signed_in(server, "httpx-oauth-basic")
    fresh = await client.refresh_token(tokens["refresh_token"])
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert me(server, fresh["access_token"]).json()["username"] == "httpx-oauth-basic"


@pytest.mark.anyio
async def test_httpx_oauth_as_a_machine_revokes_its_token_and_may_not_refresh_a_users(
    server: Server, metadata: dict[str, Any], machines: dict[str, Registered]
) -> None:
    """httpx-oauth as a registered client (client_secret_basic): ``revoke_token`` of its own access
    token ends it (introspection: inactive); ``refresh_token`` of a first-party user's session is
    refused with invalid_grant (issued to another client)."""
    m = machines[BASIC]
    client = httpx_oauth(metadata, m.client_id, m.secret, BASIC)
    async with httpx.AsyncClient(auth=(m.client_id, m.secret)) as http:  # httpx-oauth has no client_credentials
        issued = await http.post(metadata["token_endpoint"], data={"grant_type": "client_credentials"})
    access_token = issued.json()["access_token"]
    assert introspected(server, m, access_token)["active"] is True
    await client.revoke_token(access_token, "access_token")
    assert introspected(server, m, access_token) == {"active": False}
    with pytest.raises(RefreshTokenError) as refused:
        await client.refresh_token(signed_in(server, "httpx-oauth-other")["refresh_token"])
    assert refused.value.response is not None
    assert refused.value.response.json() == {
        "error": "invalid_grant", "error_description": "The refresh token was issued to another client.",
    }  # fmt: skip
