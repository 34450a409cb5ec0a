"""Integration test: examples/cli_client.py run as a process against a real keyturn server on loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.servers import Server, keyturn_fixture

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cli_client.py"


server = keyturn_fixture("--dev", access_token_ttl="2", leeway="0s")  # 2 s access tokens, no verification leeway


def run(server: Server, store: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--issuer", server.url, "--store", str(store), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored_refresh_token(store: Path) -> str:
    token: str = json.loads(store.read_text())["refresh_token"]
    return token


def test_login_call_call_after_expiry_logout(server: Server, tmp_path: Path) -> None:
    """Login stores 0600 tokens; calls work before and after the access token expires; logout ends it all."""
    assert httpx.post(f"{server.url}/v1/auth/register", json={"username": "cli", "password": PASSWORD}).is_success
    store = tmp_path / "config" / "tokens.json"

    signed_in = run(server, store, "login", "--username", "cli", "--password-stdin", stdin=PASSWORD + "\n")
    assert signed_in.returncode == 0, signed_in.stderr
    assert "Logged in as cli" in signed_in.stdout
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    first_refresh_token = stored_refresh_token(store)
    access_token = json.loads(store.read_text())["access_token"]

    called = run(server, store, "call")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["username"] == "cli"

    time.sleep(2.1)  # the server-side access token has expired by now
    called_again = run(server, store, "call", "--url", f"{server.url}/v1/auth/me")
    assert called_again.returncode == 0, called_again.stderr
    assert json.loads(called_again.stdout)["username"] == "cli"
    assert stored_refresh_token(store) != first_refresh_token

    signed_out = run(server, store, "logout")
    assert signed_out.returncode == 0, signed_out.stderr
    assert not store.exists()
    assert httpx.get(f"{server.url}/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"}).status_code == 401

    refused = run(server, store, "call")
    assert refused.returncode == 1
    assert "log in first" in refused.stderr
    for result in (signed_in, called, called_again, signed_out, refused):
        assert PASSWORD not in result.stdout + result.stderr
        assert access_token not in result.stdout + result.stderr


def test_wrong_password_is_reported_without_a_traceback(server: Server, tmp_path: Path) -> None:
    """A refused login prints one error line and exits 1, storing nothing."""
    store = tmp_path / "tokens.json"
    result = run(server, store, "login", "--username", "nobody", "--password-stdin", stdin="wrong\n")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: The username or password is incorrect."
    assert not store.exists()
