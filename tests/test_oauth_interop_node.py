"""Integration tests of interoperability with oauth4webapi (npm, Node.js), an OAuth client nobody here
wrote, against a real ``keyturn serve`` on loopback: the harness ``tests/interop/node/interop.mjs``
discovers the server from its RFC 8414 metadata and runs each operation once (as the first-party
public client on a user's session, and as two machines registered with the real CLI); each test
here asserts one of its results.

The harness's ``node_modules`` comes from ``npm ci`` (scripts/test runs it, from the committed
package-lock.json): without it these tests fail, saying so, rather than skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop.oauth import AUDIENCE, BASIC, FIRST_PARTY, POST, SCOPE, register_client, signed_in
from tests.servers import Server, keyturn_fixture

pytestmark = pytest.mark.server

HARNESS = Path(__file__).parent / "interop" / "node"
INSTALL = "npm ci --prefix tests/interop/node --no-audit --no-fund --silent"

server = keyturn_fixture("--dev")


@pytest.fixture(scope="module")
def results(server: Server) -> dict[str, Any]:
    """Every step's result from one run of the harness against the module's server."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the oauth4webapi interop tests need Node.js (and npm to install the harness)")
    if not (HARNESS / "node_modules" / "oauth4webapi").is_dir():
        pytest.fail(f"the Node harness is not installed: run `{INSTALL}` (scripts/test does)")
    basic, post = register_client(server, "node-basic", BASIC), register_client(server, "node-post", POST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "INTEROP_"))}
    env.update(
        INTEROP_PUBLIC_CLIENT_ID=FIRST_PARTY, INTEROP_REFRESH_TOKEN=signed_in(server, "node-user")["refresh_token"],
        INTEROP_BASIC_CLIENT_ID=basic.client_id, INTEROP_BASIC_CLIENT_SECRET=basic.secret,
        INTEROP_POST_CLIENT_ID=post.client_id, INTEROP_POST_CLIENT_SECRET=post.secret, INTEROP_AUDIENCE=AUDIENCE,
    )  # fmt: skip
    done = subprocess.run(
        [node, str(HARNESS / "interop.mjs"), server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_discovery_accepts_the_metadata(server: Server, results: dict[str, Any]) -> None:
    """``discoveryRequest`` (oauth2) + ``processDiscoveryResponse``: the issuer matches; the endpoints
    and grants are those served."""
    assert results["discovery"] == {
        "ok": True, "issuer": server.url, "token_endpoint": f"{server.url}/oauth/token",
        "revocation_endpoint": f"{server.url}/oauth/revoke", "introspection_endpoint": f"{server.url}/oauth/introspect",
        "grant_types_supported": ["refresh_token", "client_credentials"],
    }  # fmt: skip


def test_refresh_as_the_public_client_rotates(results: dict[str, Any]) -> None:
    """``refreshTokenGrantRequest`` with ``None()`` + ``processRefreshTokenResponse``: a Bearer pair, rotated."""
    refreshed = results["refresh"]
    assert (refreshed["ok"], refreshed["token_type"], refreshed["rotated"], refreshed["has_refresh_token"]) == (
        True, "bearer", True, True,
    )  # fmt: skip
    assert refreshed["expires_in"] > 0


def test_revocation_ends_the_session(results: dict[str, Any]) -> None:
    """``revocationRequest`` + ``processRevocationResponse`` succeed; refreshing with the revoked
    token is then refused with invalid_grant, and introspection says it is inactive."""
    assert results["revocation"] == {"ok": True}
    refused = results["refresh_after_revocation"]
    assert refused["ok"] is False
    assert (refused["error"]["status"], refused["error"]["error"], refused["error"]["error_description"]) == (
        400, "invalid_grant", "The session has ended; sign in again.",
    )  # fmt: skip
    assert results["introspection_of_revoked_refresh_token"] == {"ok": True, "active": False}


@pytest.mark.parametrize("method", ["basic", "post"])
def test_client_credentials_with_either_method(results: dict[str, Any], method: str) -> None:
    """``clientCredentialsGrantRequest`` with ``ClientSecretBasic`` (id and secret form-encoded, as
    RFC 6749 §2.3.1 says) and with ``ClientSecretPost`` + processing: a Bearer token, the client's
    scope, no refresh token."""
    issued = results[f"client_credentials_{method}"]
    assert (issued["ok"], issued["token_type"], issued["scope"], issued["has_refresh_token"]) == (
        True, "bearer", SCOPE, False,
    )  # fmt: skip


def test_introspection_reports_the_machine_token(server: Server, results: dict[str, Any]) -> None:
    """``introspectionRequest`` + ``processIntrospectionResponse`` by the basic client: active, the
    client's own token, for its audience."""
    found = results["introspection"]
    assert (found["ok"], found["active"], found["token_type"], found["iss"]) == (True, True, "Bearer", server.url)
    assert (found["client_id"], found["sub"], found["aud"], found["scope"]) == (
        "node-basic",
        "node-basic",
        [AUDIENCE],
        SCOPE,
    )


def test_validate_jwt_access_token_accepts_the_machine_token(server: Server, results: dict[str, Any]) -> None:
    """``validateJwtAccessToken`` (RFC 9068: typ at+jwt, iss, exp, aud, sub, iat, jti, client_id,
    the signature against the issuer's JWKS) accepts it for the client's audience."""
    assert results["validate_jwt_access_token"] == {
        "ok": True, "iss": server.url, "sub": "node-basic", "client_id": "node-basic", "aud": AUDIENCE, "scope": SCOPE,
    }  # fmt: skip


def test_validate_jwt_access_token_refuses_another_audience(results: dict[str, Any]) -> None:
    """The same token, expected for another audience: oauth4webapi refuses it on the aud claim."""
    refused = results["validate_jwt_access_token_other_audience"]
    assert refused["ok"] is False
    assert (refused["error"]["code"], refused["error"]["message"]) == (
        "OAUTH_JWT_CLAIM_COMPARISON_FAILED", 'unexpected JWT "aud" (audience) claim value',
    )  # fmt: skip


def test_a_machine_revokes_its_token_and_introspection_says_inactive(results: dict[str, Any]) -> None:
    """``revocationRequest`` with ``ClientSecretPost`` of the client's own token ends it: introspection
    then answers ``{"active": false}``."""
    assert results["machine_revocation"] == {"ok": True}
    assert results["introspection_after_machine_revocation"] == {"ok": True, "active": False}
