"""Integration tests of rate limits in-process: the real app on a real SQLite file, small limits.

The client address varies through X-Forwarded-For from a trusted proxy (the in-process
transport's address), which also exercises the trusted-proxy rule.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from starlette.requests import Request

from keyturn.core.errors import ConfigurationError
from keyturn.core.passwords import Passwords
from keyturn.server.config import load_settings
from keyturn.server.http import create_app
from keyturn.server.http.ratelimit import RateLimits, client_ip
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, bearer, fetch
from tests.timing import cost_ratio

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


async def test_concurrent_wrong_passwords_cannot_overrun_a_failure_window(app: App) -> None:
    """Regression (review finding 4): 29 wrong passwords sent at once against 5 per minute: each
    check is charged before it runs, so exactly 5 are checked and 24 refused, and the window is
    then full for the right password too."""
    async with app(rate_limit_login_failures="5/minute") as client:
        await make_alice(client)
        responses = await asyncio.gather(*(login(client, "wrong password") for _ in range(29)))
        assert Counter(r.status_code for r in responses) == {401: 5, 429: 24}
        assert_limited(await login(client))


async def test_concurrent_guesses_from_many_addresses_cannot_overrun_the_account_window(app: App) -> None:
    """Regression (review finding 4): 40 wrong passwords at once from 4 addresses against an account
    window of 6: exactly 6 are checked."""
    async with app(rate_limit_login_failures="100/minute", rate_limit_account_failures="6/15minutes") as client:
        await make_alice(client)
        guesses = (login(client, "wrong password", ip=f"198.51.100.{i % 4}") for i in range(40))
        responses = await asyncio.gather(*guesses)
        assert Counter(r.status_code for r in responses) == {401: 6, 429: 34}


async def test_a_refused_or_successful_check_leaves_nothing_charged(app: App) -> None:
    """Only a check that ran and failed stays in the windows: a success gives its charge back, and so
    does an attempt refused because another window was full."""
    async with app(rate_limit_login_failures="3/minute", rate_limit_account_failures="2/15minutes") as client:
        await make_alice(client)
        for _ in range(4):
            assert (await login(client, ip="198.51.100.8")).status_code == 200  # successes: refunded
        for _ in range(2):
            assert (await login(client, "wrong password", ip="198.51.100.9")).status_code == 401
        for _ in range(5):  # the account window is full: refused, and given back to (alice, .8)
            assert_limited(await login(client, "wrong password", ip="198.51.100.8"))
        assert await remaining(client, "login_failures", "login-fail", "alice", "198.51.100.8") == 3
        assert await remaining(client, "login_failures", "login-fail", "alice", "198.51.100.9") == 1
        assert await remaining(client, "account_failures", "account-fail", "alice") == 0


async def remaining(client: httpx.AsyncClient, windows: str, *key: str) -> int:
    """Room left in the first of the app's ``windows`` for ``key`` (read from its own counters)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    limits: RateLimits = transport.app.state.limits  # type: ignore[attr-defined]
    stats = await limits._limiter.get_window_stats(getattr(limits, windows)[0], *key)
    return stats.remaining


async def test_password_change_guessing_is_limited_audited_and_ends_the_session(app: App, database_url: str) -> None:
    """Regression (review finding 5): a stolen access token cannot guess the current password at
    hashing speed: 60 wrong guesses sent at once are charged to the session (5 allowed) and to the
    account's sign-in failure windows before any is checked; each failure is audited; the fifth
    ends the session, so its access token stops working and the password stays the same."""
    async with app(rate_limit_login_failures="100/minute", rate_limit_account_failures="100/15minutes") as client:
        await make_alice(client)
        tokens = (await login(client)).json()
        guess = {"current_password": "wrong password", "new_password": "a whole new passphrase"}
        responses = await asyncio.gather(
            *(client.post("/v1/auth/password", json=guess, headers=bearer(tokens)) for _ in range(60))
        )
        checked = [r for r in responses if r.json()["error"] == "invalid_credentials"]
        assert len(checked) == 5
        assert {r.json()["error"] for r in responses} <= {"invalid_credentials", "invalid_token"}
        me = await client.get("/v1/auth/me", headers=bearer(tokens))
        assert (me.status_code, me.json()["error"]) == (401, "invalid_token")
        assert (await login(client)).status_code == 200  # the password did not change
    rows = await fetch(database_url, "SELECT event, outcome FROM audit_events WHERE event LIKE 'password%'")
    assert sorted(rows) == [("password_changed", "failed")] * 5 + [("password_guessing", "revoked")]
    [(reason,)] = await fetch(database_url, "SELECT revoke_reason FROM sessions WHERE revoked_at IS NOT NULL")
    assert reason == "password_guessing"


async def test_password_change_failures_count_against_the_account(app: App) -> None:
    """Wrong current passwords fill the same per-account window as wrong sign-ins."""
    async with app(rate_limit_account_failures="2/15minutes") as client:
        await make_alice(client)
        tokens = (await login(client)).json()
        guess = {"current_password": "wrong password", "new_password": "a whole new passphrase"}
        for _ in range(2):
            response = await client.post("/v1/auth/password", json=guess, headers=bearer(tokens))
            assert response.json()["error"] == "invalid_credentials"
        assert_limited(await client.post("/v1/auth/password", json=guess, headers=bearer(tokens)))
        assert_limited(await login(client, "wrong password"))


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


def test_forwarded_for_costs_one_address_parse_a_hop() -> None:
    """A 16 KiB X-Forwarded-For of trusted hops (the worst case: every hop is looked at) from a
    trusted peer, with 32 trusted networks, costs a small multiple of parsing its hops alone;
    today's main parsed every network again for every hop (tens of times more)."""
    networks = (*(f"10.{i}.0.0/16" for i in range(1, 32)), "10.0.0.0/16")  # the hops match the last one
    hops = ", ".join(["10.0.0.2"] * 1600)
    assert 15_000 < len(hops) < 16 * 1024
    scope = {"type": "http", "client": ("10.0.0.1", 1234), "headers": [(b"x-forwarded-for", hops.encode())]}
    request = Request(scope)
    assert client_ip(request, networks) == "10.0.0.2"

    def run(what: str) -> None:
        if what == "client_ip":
            client_ip(request, networks)
        else:  # the work no implementation can skip: parsing each hop as an address
            for hop in hops.split(","):
                ipaddress.ip_address(hop.strip())

    assert cost_ratio(run, "client_ip", "parse the hops", bound=15) < 15


@pytest.mark.parametrize(
    ("variable", "value"),
    [("rate_limit_login_ip", "lots"), ("trusted_proxies", "not-an-ip")],
)
def test_bad_limit_settings_name_themselves(variable: str, value: str, no_env: None) -> None:
    """A malformed limit or proxy list stops start-up with the setting's name."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            secret="Zq8Kd2Lp0Xv7Tn4Rb1Ws9Yc6Hj3Mf5Ga0Et8Uo2Ik7Ql", **cast("dict[str, Any]", {variable: value})
        )
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
