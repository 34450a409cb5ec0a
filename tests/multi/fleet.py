"""What the fleet tests share: the settings the instances behind one load balancer must share,
signing in over real HTTP, the generation a refresh token stands for, calls released together
from threads, and a check that no token reached a server's log."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from keyturn.core.masterkey import MasterKey
from keyturn.core.refresh import RefreshTokenCodec
from tests.helpers import PASSWORD, TOKEN_LIKE
from tests.servers import Server

T = TypeVar("T")
ISSUER = "https://auth.multi.keyturn.test"  # one issuer for the whole fleet: tokens carry it as `iss`


def fleet_settings(database_url: str, **overrides: str) -> dict[str, str]:
    """The KEYTURN_* settings every instance of one deployment shares: issuer, secret, database."""
    return {
        "issuer": ISSUER,
        "secret": secrets.token_urlsafe(48),
        "database_url": database_url,
        "rate_limit_enabled": "false",  # hundreds of requests from 127.0.0.1; tests/http covers limits
        **overrides,
    }


def sign_in(url: str, username: str, *, register: bool = True) -> dict[str, Any]:
    """Register ``username`` (unless told not to) and log in on the instance at ``url``."""
    creds = {"username": username, "password": PASSWORD}
    with httpx.Client(base_url=url, timeout=30) as http:
        if register:
            response = http.post("/v1/auth/register", json=creds)
            assert response.status_code == 201, response.text
        response = http.post("/v1/auth/login", json=creds)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def generation(secret: str, refresh_token: str) -> int:
    """The session generation a refresh token stands for (checked with the fleet's secret)."""
    return RefreshTokenCodec.from_master(MasterKey(secret)).decode(refresh_token).generation


def at_once(calls: Sequence[Callable[[], T]], timeout: float = 60.0) -> list[T]:
    """Run every call on its own thread, released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> T:
        barrier.wait(timeout)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(released, call) for call in calls]
        return [f.result(timeout) for f in futures]


def assert_no_token_logged(servers: Sequence[Server]) -> None:
    """No access or refresh token in any server's log (the suite's own scan sees only this process)."""
    for server in servers:
        assert not TOKEN_LIKE.search(server.log.read_text(errors="replace")), f"a token in {server.log}"
