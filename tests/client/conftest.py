"""Fixtures of the client tests: a real keyturn server per module, and a fresh account per test."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.client.issuer import User
from tests.helpers import PASSWORD
from tests.servers import Server, keyturn_fixture

# `keyturn --dev serve` with 2 s access tokens, no verification leeway and a 10 s reuse grace.
server = keyturn_fixture("--dev", access_token_ttl="2", reuse_grace="10s", leeway="0s")


@pytest.fixture
def user(server: Server) -> User:
    """A fresh account, so that audit rows can be counted per test."""
    name = f"client-{uuid.uuid4().hex[:12]}"
    response = httpx.post(f"{server.url}/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return User(name, response.json()["id"])
