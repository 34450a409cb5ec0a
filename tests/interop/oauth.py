"""What the OAuth interop tests share: a user signed in through the first-party API, confidential
clients registered with the real CLI (``keyturn clients add``) on a running server's own database
and secret, and a look at a token through RFC 7662 introspection with plain httpx (so that a check
does not lean on the library under test).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Any, Final

import httpx

from tests.helpers import PASSWORD
from tests.servers import KEYTURN, Server

FIRST_PARTY = "keyturn"  # KEYTURN_CLIENT_ID's default: the public client user sessions are issued to
AUDIENCE = "https://reports.keyturn.test"  # the registered machines' `aud`
SCOPE = "reports.read"
BASIC: Final = "client_secret_basic"
POST: Final = "client_secret_post"


@dataclass(frozen=True)
class Registered:
    """A confidential client as the operator hands it over: its id, its secret, its method."""

    client_id: str
    secret: str
    method: str


def signed_in(server: Server, username: str) -> dict[str, Any]:
    """A token response from the first-party sign-in, as a client would have stored it."""
    creds = {"username": username, "password": PASSWORD}
    assert httpx.post(f"{server.url}/v1/auth/register", json=creds).status_code == 201
    tokens: dict[str, Any] = httpx.post(f"{server.url}/v1/auth/login", json=creds).json()
    return tokens


def register_client(server: Server, client_id: str, method: str = BASIC) -> Registered:
    """`keyturn --dev clients add` in the server's directory (its SQLite file and development
    secret) with its issuer: a machine with the ``client_credentials`` grant, ``SCOPE`` and
    ``AUDIENCE``; the secret is the last line the command prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_ISSUER"] = server.url
    argv = [str(KEYTURN), "--dev", "clients", "add", client_id, "--auth-method", method,
            "--scope", SCOPE, "--audience", AUDIENCE]  # fmt: skip
    done = subprocess.run(argv, cwd=server.cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"created {client_id} ({method})"
    return Registered(client_id, lines[-1], method)


def introspected(server: Server, by: Registered, token: str) -> dict[str, Any]:
    """What ``/oauth/introspect`` says of ``token``, asked by ``by`` with its registered method."""
    if by.method == BASIC:
        answer = httpx.post(f"{server.url}/oauth/introspect", data={"token": token}, auth=(by.client_id, by.secret))
    else:
        form = {"token": token, "client_id": by.client_id, "client_secret": by.secret}
        answer = httpx.post(f"{server.url}/oauth/introspect", data=form)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def metadata_of(server: Server) -> dict[str, Any]:
    """The server's RFC 8414 metadata, as a client library discovers it."""
    found: dict[str, Any] = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    return found


def machines_of(server: Server, prefix: str) -> dict[str, Registered]:
    """One machine per client authentication method, registered with `keyturn clients add`."""
    return {
        method: register_client(server, f"{prefix}-{method.rpartition('_')[2]}", method) for method in (BASIC, POST)
    }
