"""Integration tests of the RFC 8414 metadata (keyturn.server.http.metadata) in-process, on a real
database (SQLite file and PostgreSQL): it names only what is served, each endpoint answers its
method, the scopes it lists are the deployment's, and an issuer with a path has its metadata at
the RFC 8414 §3.1 location too."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock, app_client
from tests.helpers import assert_refused

pytestmark = pytest.mark.anyio

METADATA = "/.well-known/oauth-authorization-server"
FORM = {"content-type": "application/x-www-form-urlencoded"}
# What each URL of the metadata answers to an anonymous request of its method: the documents 200,
# the token and revocation endpoints 400 for an empty form, introspection 401 (registered clients only).
ANSWERS = {
    "jwks_uri": ("GET", 200),
    "keyturn_revocations_endpoint": ("GET", 200),
    "token_endpoint": ("POST", 400),
    "revocation_endpoint": ("POST", 400),
    "introspection_endpoint": ("POST", 401),
}


async def served(client: httpx.AsyncClient, document: dict[str, object], base: str) -> None:
    """Every endpoint or URI in ``document`` is under ``base`` and answers its method as ``ANSWERS`` says."""
    named = {key for key in document if key.endswith(("_endpoint", "_uri"))}
    assert named == set(ANSWERS), "a new endpoint in the metadata needs a line in ANSWERS"
    for key, (method, status) in ANSWERS.items():
        url = str(document[key])
        assert url.startswith(f"{base}/"), url
        path = ISSUER + url.removeprefix(base)  # the app answers at its root, behind the proxy's prefix
        answer = await (client.get(path) if method == "GET" else client.post(path, content=b"", headers=FORM))
        assert answer.status_code == status, (key, answer.text)


async def test_the_metadata_names_what_is_served_and_nothing_else(client: httpx.AsyncClient) -> None:
    """The endpoints answer; grants, client authentication methods and response types are exactly
    what the OAuth routes accept (no password grant, no authorization endpoint, no PKCE methods)."""
    response = await client.get(METADATA)
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == ISSUER
    await served(client, document, ISSUER)
    assert document["grant_types_supported"] == ["refresh_token", "client_credentials"]
    assert document["response_types_supported"] == []
    methods = ["none", "client_secret_basic", "client_secret_post"]
    assert document["token_endpoint_auth_methods_supported"] == methods
    assert document["revocation_endpoint_auth_methods_supported"] == methods
    assert document["introspection_endpoint_auth_methods_supported"] == methods[1:]
    assert "authorization_endpoint" not in document
    assert "code_challenge_methods_supported" not in document
    assert "password" not in response.text.lower()


async def test_scopes_supported_are_the_default_the_roles_and_the_registered_clients(
    client: httpx.AsyncClient, service: Service
) -> None:
    """profile (the sign-in default) and admin (a role's) from the start; a registered client's
    scopes appear once it is registered, sorted and without repeats."""
    assert (await client.get(METADATA)).json()["scopes_supported"] == ["admin", "profile"]
    await service.clients.add("billing-cron", scope="orders:read orders:write")
    await service.clients.add("reports", scope="orders:read")
    scopes = (await client.get(METADATA)).json()["scopes_supported"]
    assert scopes == ["admin", "orders:read", "orders:write", "profile"]


async def test_an_issuer_with_a_path_has_its_metadata_at_the_rfc8414_location_too(
    tmp_path: Path, clock: Clock, fast_passwords: Passwords
) -> None:
    """Issuer https://auth.keyturn.test/tenant: the same document at
    /.well-known/oauth-authorization-server/tenant (§3.1) and at the root location, its issuer
    the configured one, each endpoint under /tenant (a proxy strips the prefix: the app answers
    them at its root)."""
    issuer = "https://auth.keyturn.test/tenant"
    async with app_client(tmp_path / "k.db", clock, fast_passwords, issuer=issuer) as client:
        aware = await client.get(f"{ISSUER}{METADATA}/tenant")
        assert aware.status_code == 200, aware.text
        assert aware.json() == (await client.get(f"{ISSUER}{METADATA}")).json()
        document = aware.json()
        assert document["issuer"] == issuer
        assert document["token_endpoint"] == f"{issuer}/oauth/token"
        await served(client, document, issuer)
        assert_refused(await client.get(f"{ISSUER}{METADATA}/other"), 404, "not_found")
