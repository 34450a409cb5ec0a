"""Integration tests: examples/flask_app.py and examples/django_app.py as real processes on loopback,
protected by a real keyturn server process, started with the commands the examples document.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.servers import KEYTURN, Server, free_port, keyturn_fixture, wait_ready_url

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).with_name("flask")
T = TypeVar("T")
PROTECTED = [("flask", "/orders"), ("django", "/orders"), ("django", "/api/invoices")]


server = keyturn_fixture("--dev")


@pytest.fixture(scope="module")
def user(server: Server) -> str:
    """A registered user's name; its id is what the examples answer as "user"."""
    creds = {"username": "example-user", "password": PASSWORD}
    assert httpx.post(f"{server.url}/v1/auth/register", json=creds).status_code == 201
    return creds["username"]


def env_for(server: Server) -> dict[str, str]:
    """The caller's environment with only the keyturn settings these processes need."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_ISSUER"] = server.url
    return env


@contextmanager
def running(command: list[str], ready: str, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_ready_url(ready, proc, log)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def examples(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Both examples, started as their docstrings say, each on a free loopback port: name → base URL."""
    logs = tmp_path_factory.mktemp("examples")
    ports = {"flask": free_port(), "django": free_port()}
    commands = {
        "flask": [str(FLASK), "--app", "examples/flask_app.py", "run", "--port", str(ports["flask"])],
        "django": [sys.executable, "examples/django_app.py", "runserver", "--noreload", str(ports["django"])],
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with ExitStack() as stack:
        for name, command in commands.items():
            stack.enter_context(running(command, f"{urls[name]}/public", env_for(server), logs / f"{name}.log"))
        yield urls


def login(server: Server, username: str) -> httpx.Response:
    response = httpx.post(f"{server.url}/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response


def poll(attempt: Callable[[], T], done: Callable[[T], bool], timeout: float = 45.0) -> T:
    """Call ``attempt`` every 0.25 s until ``done`` says yes (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if done(result) or time.monotonic() >= deadline:
            assert done(result), f"not done in {timeout} s: {result!r}"
            return result
        time.sleep(0.25)


def kid_of(token: str) -> str:
    segment = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))["kid"]
    return kid


def sub_of(server: Server, token: str) -> str:
    me = httpx.get(f"{server.url}/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    sub: str = me.json()["sub"]
    return sub


@pytest.mark.parametrize("name", ["flask", "django"])
def test_public_route_needs_no_token(examples: dict[str, str], name: str) -> None:
    """GET /public → 200 without any token."""
    assert httpx.get(f"{examples[name]}/public").json() == {"hello": "anyone"}


@pytest.mark.parametrize(("name", "route"), PROTECTED)
def test_protected_route_without_a_token_is_401(
    examples: dict[str, str], server: Server, name: str, route: str
) -> None:
    """No token → 401 with a Bearer challenge naming the API's RFC 9728 metadata (served, and
    naming the issuer), and keyturn's JSON error body."""
    response = httpx.get(f"{examples[name]}{route}")
    assert response.status_code == 401
    metadata = f"{examples[name]}/.well-known/oauth-protected-resource"
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="api", resource_metadata="{metadata}"'
    assert response.json()["error"] == "invalid_token"
    document = httpx.get(metadata).json()
    assert (document["resource"], document["authorization_servers"]) == (examples[name], [server.url])


@pytest.mark.parametrize(("name", "route"), PROTECTED)
def test_protected_route_with_a_real_token_is_200(
    examples: dict[str, str], server: Server, user: str, name: str, route: str
) -> None:
    """A token from the keyturn server → 200 naming the caller (its sub) and its scope."""
    token = login(server, user).json()["access_token"]
    response = httpx.get(f"{examples[name]}{route}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["user"] == sub_of(server, token)
    assert response.json()["scope"] == ["profile"]


def test_running_examples_accept_tokens_of_a_newly_rotated_key(
    examples: dict[str, str], server: Server, user: str
) -> None:
    """After `keyturn --dev keys rotate --delay 0`, the running examples (keys cached) refetch the JWKS
    for the unknown kid and accept the new key's tokens; tokens of the old key keep working."""
    old = login(server, user).json()["access_token"]
    for name, route in PROTECTED:  # every example has verified a token, so it has the old keys cached
        assert httpx.get(f"{examples[name]}{route}", headers={"Authorization": f"Bearer {old}"}).status_code == 200
    rotated = subprocess.run(
        [str(KEYTURN), "--dev", "keys", "rotate", "--delay", "0"],
        cwd=server.cwd,
        env=env_for(server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    match = re.search(r"new key (\S+)", rotated.stdout)
    assert match, rotated.stdout
    new_kid = match.group(1)
    assert new_kid != kid_of(old)

    new = poll(lambda: login(server, user).json()["access_token"], lambda token: kid_of(token) == new_kid)
    for name, route in PROTECTED:
        url = f"{examples[name]}{route}"
        # An unknown kid refetches the JWKS at most once per JwksPolicy.unknown_kid_interval after
        # the example's last fetch; until then the example refuses the new token with 401.
        ask = partial(httpx.get, url, headers={"Authorization": f"Bearer {new}"})
        response = poll(ask, lambda r: r.status_code != 401)
        assert response.status_code == 200, f"{name} {route}: {response.text}"
        assert response.json()["user"] == sub_of(server, new), f"{name} {route}"
        again = httpx.get(url, headers={"Authorization": f"Bearer {old}"})
        assert again.status_code == 200, f"{name} {route}: old key no longer accepted"
