"""Integration tests against a real server process on loopback, started the way the README starts it
(`keyturn --dev serve` in an empty directory), including the README's curl walkthrough verbatim.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.servers import KEYTURN, Server, keyturn_server

pytestmark = [pytest.mark.server, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`keyturn --dev serve` in an empty directory, with no KEYTURN_* settings at all."""
    with keyturn_server(tmp_path_factory.mktemp("served"), "--dev", own_issuer=False) as running:
        yield running


def test_dev_server_makes_its_secret_and_database_in_the_working_directory(server: Server) -> None:
    """The generated secret is 0600, the SQLite file is there, and a warning says it is for development."""
    secret = server.cwd / "keyturn.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert (server.cwd / "keyturn.db").exists()
    log = server.log.read_text()
    assert "development" in log
    assert secret.read_text().strip() not in log


def test_readme_walkthrough_runs_as_written(server: Server, tmp_path: Path) -> None:
    """The README's curl walkthrough, run verbatim: register, login, me, refresh, replay → revoked."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```", readme, re.S)
    assert match, "README has no walkthrough block"
    script = match.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert '"username":"alice"' in lines[0]
    assert '"username":"alice"' in lines[1]
    assert lines[2].endswith(" 401")
    assert '"invalid_grant"' in lines[2]
    assert "revoked" in lines[2]
    assert lines[3].endswith(" 401")
    assert '"invalid_token"' in lines[3]
    assert lines[4].endswith(" 401")
    assert '"invalid_grant"' in lines[4]
    assert len(lines) == 5
    log = server.log.read_text()
    for name in ("login.json", "refresh.json"):
        for secret in json.loads((tmp_path / name).read_text()).values():
            assert not (isinstance(secret, str) and len(secret) > 40 and secret in log)
    assert "correct horse battery staple" not in log


async def test_thirty_parallel_refreshes_over_real_http(server: Server) -> None:
    """30 concurrent connections refresh one token: all 200 with the same new token."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        creds = {"username": "parallel", "password": PASSWORD}
        assert (await c.post("/v1/auth/register", json=creds)).status_code == 201
        tokens = (await c.post("/v1/auth/login", json=creds)).json()

        async def one() -> httpx.Response:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as own:
                return await own.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})

        responses = await asyncio.gather(*(one() for _ in range(30)))
        assert [r.status_code for r in responses] == [200] * 30
        assert len({r.json()["refresh_token"] for r in responses}) == 1
        newest = responses[0].json()["refresh_token"]
        again = await c.post("/v1/auth/refresh", json={"refresh_token": newest})
        assert again.status_code == 200


def test_cli_sees_what_the_server_wrote(server: Server) -> None:
    """`keyturn --dev users list` in the same directory shows an account the server created."""
    creds = {"username": "seen-by-cli", "password": PASSWORD}
    assert httpx.post(f"{server.url}/v1/auth/register", json=creds).status_code == 201
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    result = subprocess.run(
        [str(KEYTURN), "--dev", "users", "list"], cwd=server.cwd, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "seen-by-cli" in result.stdout
