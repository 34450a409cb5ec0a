"""Integration tests of rate limits in-process: the real app on a real SQLite file, small limits.

The client address varies through X-Forwarded-For from a trusted proxy (the in-process
transport's address), which also exercises the trusted-proxy rule.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from keyturn.config import load_settings
from keyturn.errors import ConfigurationError
from keyturn.http import create_app
from keyturn.passwords import Passwords
from keyturn.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, bearer, fetch

pytestmark = pytest.mark.anyio

PROXY = "203.0.113.7"
App = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app(database_url: str, clock: Clock, fast_passwords: Passwords) -> App:
    @asynccontextmanager
    async def make(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
        config = make_settings(database_url, **{"trusted_proxies": PROXY, **settings})
        svc = Service(config, passwords=fast_passwords, clock=clock)
        await svc.start()
        transport = httpx.ASGITransport(app=create_app(config, service=svc), client=(PROXY, 4000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            yield client
        await svc.close()

    return make


async def login(client: httpx.AsyncClient, password: str = PASSWORD, ip: str = "198.51.100.1") -> httpx.Response:
    body = {"username": "alice", "password": password}
    return await client.post("/v1/auth/login", json=body, headers={"x-forwarded-for": ip})


async def make_alice(client: httpx.AsyncClient) -> None:
    body = {"username": "alice", "password": PASSWORD}
    assert (await client.post("/v1/auth/register", json=body)).status_code == 201


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1


async def test_logins_per_ip_are_limited(app: App) -> None:
    """Every attempt from one address counts; past the limit: 429 with Retry-After."""
    async with app(rate_limit_login_ip="3/minute") as client:
        await make_alice(client)
        for _ in range(3):
            assert (await login(client)).status_code == 200
        assert_limited(await login(client))
        assert (await login(client, ip="198.51.100.2")).status_code == 200


async def test_failures_slow_down_one_account_from_one_address(app: App) -> None:
    """After repeated wrong passwords from one address, even the right one waits; other addresses don't."""
    async with app(rate_limit_login_failures="2/minute") as client:
        await make_alice(client)
        for _ in range(2):
            assert (await login(client, "wrong password")).status_code == 401
        assert_limited(await login(client))
        assert (await login(client, ip="198.51.100.9")).status_code == 200


async def test_failures_spread_over_addresses_hold_the_account_only_briefly(app: App) -> None:
    """Guesses from many addresses fill the account's own window; it is a short one."""
    async with app(rate_limit_login_failures="10/minute", rate_limit_account_failures="3/15minutes") as client:
        await make_alice(client)
        for i in range(3):
            assert (await login(client, "wrong password", ip=f"198.51.100.{i}")).status_code == 401
        refused = await login(client, ip="198.51.100.200")
        assert_limited(refused)
        assert int(refused.headers["retry-after"]) <= 15 * 60


async def test_successful_logins_do_not_count_as_failures(app: App) -> None:
    """Only failures fill the failure windows."""
    async with app(rate_limit_login_failures="2/minute") as client:
        await make_alice(client)
        for _ in range(5):
            assert (await login(client)).status_code == 200


async def test_registration_per_address(app: App) -> None:
    """Registration, including of taken names, is limited per address."""
    async with app(rate_limit_register_ip="2/hour") as client:
        for name in ("a1", "a1"):
            await client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
        assert_limited(await client.post("/v1/auth/register", json={"username": "a2", "password": PASSWORD}))


async def test_refresh_per_session(app: App) -> None:
    """One session cannot be refreshed more often than its limit."""
    async with app(rate_limit_refresh_session="2/minute") as client:
        await make_alice(client)
        token = (await login(client)).json()["refresh_token"]
        for _ in range(2):
            response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
            assert response.status_code == 200
            token = response.json()["refresh_token"]
        assert_limited(await client.post("/v1/auth/refresh", json={"refresh_token": token}))


async def test_global_ceiling(app: App) -> None:
    """Past the server-wide ceiling every auth route answers 429."""
    async with app(rate_limit_global="5/minute") as client:
        statuses = [(await client.get("/v1/auth/me")).status_code for _ in range(7)]
        assert statuses[:5] == [401] * 5
        assert statuses[5:] == [429, 429]


async def test_limits_can_be_turned_off(app: App) -> None:
    """KEYTURN_RATE_LIMIT_ENABLED=false: no 429 whatever the traffic."""
    async with app(rate_limit_enabled=False, rate_limit_login_ip="1/minute") as client:
        await make_alice(client)
        for _ in range(4):
            assert (await login(client)).status_code == 200


async def test_forwarded_for_is_ignored_without_trusted_proxies(client: httpx.AsyncClient) -> None:
    """By default the address is the socket's: a forged X-Forwarded-For changes nothing."""
    await client.post("/v1/auth/register", json={"username": "bob", "password": PASSWORD})
    tokens = (
        await client.post(
            "/v1/auth/login", json={"username": "bob", "password": PASSWORD}, headers={"x-forwarded-for": "1.2.3.4"}
        )
    ).json()
    sessions = (await client.get("/v1/auth/sessions", headers=bearer(tokens))).json()["sessions"]
    assert sessions[0]["ip"] == "203.0.113.7"


async def test_trusted_proxy_passes_the_first_untrusted_address(app: App) -> None:
    """Behind a trusted proxy, the rightmost address that is not a proxy is the client."""
    async with app(trusted_proxies=f"{PROXY},10.0.0.0/8") as client:
        await make_alice(client)
        tokens = (await login(client, ip="1.2.3.4, 198.51.100.77, 10.1.2.3")).json()
        sessions = (await client.get("/v1/auth/sessions", headers=bearer(tokens))).json()["sessions"]
        assert sessions[0]["ip"] == "198.51.100.77"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("rate_limit_login_ip", "lots"), ("trusted_proxies", "not-an-ip")],
)
def test_bad_limit_settings_name_themselves(variable: str, value: str, no_env: None) -> None:
    """A malformed limit or proxy list stops start-up with the setting's name."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(secret="Zq8Kd2Lp0Xv7Tn4Rb1Ws9Yc6Hj3Mf5Ga0Et8Uo2Ik7Ql", **{variable: value})
    assert caught.value.setting == f"KEYTURN_{variable.upper()}"


async def test_refusals_are_audited_once_a_minute_not_once_each(app: App, database_url: str) -> None:
    """A burst of 429s leaves one `rate_limited` audit row per kind and address, not one per request."""
    async with app(rate_limit_login_ip="1/minute") as client:
        await make_alice(client)
        await login(client)
        for _ in range(5):
            assert_limited(await login(client))
    rows = await fetch(database_url, "SELECT outcome, ip, detail FROM audit_events WHERE event = 'rate_limited'")
    assert len(rows) == 1
    assert rows[0][:2] == ("refused", "198.51.100.1")
    detail = rows[0][2]
    assert (json.loads(detail) if isinstance(detail, str) else detail)["kind"] == "login-ip"
