"""Integration test: two keyturn app instances share rate-limit counters through a real Redis
(Debian's redis-server, started by the test on a free loopback port, stopped at the end).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD
from tests.servers import free_port

pytestmark = [pytest.mark.server, pytest.mark.anyio]

REDIS = shutil.which("redis-server")
if REDIS is None:  # pragma: no cover - the test command installs it
    if os.environ.get("CI"):
        raise RuntimeError("redis-server is missing; ./scripts/test installs Debian's redis-server")
    pytest.skip("redis-server is not installed (./scripts/test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    args = [str(REDIS), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def two_instances(
    redis_url: str, database_url: str, clock: Clock, fast_passwords: Passwords
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with instances(redis_url, database_url, clock, fast_passwords, rate_limit_login_ip="4/minute") as both:
        yield both


@asynccontextmanager
async def instances(
    redis_url: str, database_url: str, clock: Clock, fast_passwords: Passwords, **limits: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two app instances on one database, sharing counters in a flushed Redis."""
    settings = make_settings(database_url, redis_url=redis_url, **limits)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:  # each test starts from zero
        s.sendall(b"FLUSHALL\r\n")
        assert s.recv(16).startswith(b"+OK")
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            svc = Service(settings, passwords=fast_passwords, clock=clock)
            await svc.start()
            stack.push_async_callback(svc.close)
            app = create_app(settings, service=svc)
            stack.push_async_callback(app.state.limits.close)  # what the app's shutdown does
            transport = httpx.ASGITransport(app=app, client=("198.51.100.50", 1))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url=ISSUER)))
        yield clients[0], clients[1]


async def test_instances_share_counters_through_redis(
    two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """Attempts spread over two instances count against one budget: the fifth is refused on either."""
    a, b = two_instances
    creds = {"username": "shared", "password": PASSWORD}
    assert (await a.post("/v1/auth/register", json=creds)).status_code == 201
    statuses = [(await (a if i % 2 else b).post("/v1/auth/login", json=creds)).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_concurrent_guesses_on_two_instances_cannot_overrun_a_shared_window(
    redis_url: str, database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Regression (review finding 4), through Redis: 20 wrong passwords sent at once to two
    instances against 5 per minute: each is charged in Redis before it is checked, so exactly 5 are
    checked; a success gives its charge back (the window has the same room after it)."""
    limits = {"rate_limit_login_failures": "5/minute"}
    async with instances(redis_url, database_url, clock, fast_passwords, **limits) as (a, b):
        creds = {"username": "shared", "password": PASSWORD}
        assert (await a.post("/v1/auth/register", json=creds)).status_code == 201
        for _ in range(3):
            assert (await b.post("/v1/auth/login", json=creds)).status_code == 200
        wrong = {**creds, "password": "wrong password"}
        responses = await asyncio.gather(*((a, b)[i % 2].post("/v1/auth/login", json=wrong) for i in range(20)))
        assert Counter(r.status_code for r in responses) == {401: 5, 429: 15}


async def test_unreachable_redis_answers_503_at_once(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """With Redis away the limits cannot be checked: auth requests fail closed with a prompt 503, never a 500."""
    settings = make_settings(database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, service=svc), client=("198.51.100.51", 1))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            started = time.monotonic()
            response = await client.post("/v1/auth/login", json={"username": "a", "password": PASSWORD})
            assert time.monotonic() - started < 5
            assert response.status_code == 503
            assert response.json()["error"] == "temporarily_unavailable"
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await svc.close()
