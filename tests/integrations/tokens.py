"""Access tokens for the adapter integration tests: real ones from a running keyturn server, and
spoiled ones (expired, tampered with, signed by another instance's key)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from keyturn.core.keys import generate_key
from keyturn.core.tokens import issue_access_token
from tests.helpers import PASSWORD
from tests.servers import Server


@dataclass(frozen=True)
class Tokens:
    """Access tokens of one user of a running keyturn server."""

    server: Server
    sub: str
    username: str

    @classmethod
    def for_new_user(cls, server: Server) -> Tokens:
        username = f"user-{uuid.uuid4().hex[:8]}"
        response = httpx.post(f"{server.url}/v1/auth/register", json={"username": username, "password": PASSWORD})
        assert response.status_code == 201, response.text
        return cls(server, response.json()["id"], username)

    def fresh(self) -> str:
        """A new access token from the server's login route (scope "profile")."""
        body = {"username": self.username, "password": PASSWORD}
        response = httpx.post(f"{self.server.url}/v1/auth/login", json=body)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def expired(self) -> str:
        """A real token whose ``exp`` has passed (the servers here issue 1-second tokens)."""
        token = self.fresh()
        exp = payload(token)["exp"]
        deadline = time.monotonic() + 3
        while time.time() < exp and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.time() >= exp
        return token

    def tampered(self) -> str:
        """A real token whose payload was edited to grant "admin", keeping the server's signature."""
        token = self.fresh()
        header, _, signature = token.split(".")
        claims = {**payload(token), "scope": "profile admin"}
        return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"

    def foreign(self) -> str:
        """A well-formed token for this issuer, signed by another keyturn instance's key."""
        now = datetime.now(UTC)
        token, _ = issue_access_token(
            generate_key("ES256", now=now),
            issuer=self.server.url,
            audience=self.server.url,
            subject=self.sub,
            session_id=str(uuid.uuid4()),
            client_id="keyturn",
            scope="profile admin",
            now=now,
            ttl=timedelta(minutes=5),
        )
        return token


def payload(token: str) -> dict[str, Any]:
    """The claims of ``token``, unverified (only to read ``exp``)."""
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
