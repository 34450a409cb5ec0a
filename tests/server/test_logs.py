"""Tests of keyturn.server.logs and of log and audit secrecy.

The secrecy tests are integration tests: a whole session lifecycle (including failures, CSRF
refusals and reuse detection) runs in-process with every logger at DEBUG, and against a real
server process logging JSON; then every log line and every audit row is searched for each
password, token, CSRF token, password hash and the master secret that was used.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import httpx
import pytest

from keyturn.server.logs import JsonFormatter
from keyturn.server.service import Service
from tests.conftest import Clock
from tests.helpers import PASSWORD, bearer, fetch
from tests.servers import keyturn_server

NEW_PASSWORD = "a completely different passphrase"


def test_json_formatter_writes_one_object_per_record() -> None:
    """Time in UTC with Z, level, logger and the formatted message."""
    record = logging.LogRecord("keyturn.x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world"
    assert entry["level"] == "warning"
    assert entry["logger"] == "keyturn.x"
    assert entry["time"].endswith("Z")


async def lifecycle(client: httpx.AsyncClient, clock: Clock) -> set[str]:
    """Drive every route, good and bad; return every secret value that crossed the wire."""
    secrets = {PASSWORD, NEW_PASSWORD, "wrong password here"}
    creds = {"username": "secretive", "password": PASSWORD}
    await client.post("/v1/auth/register", json=creds)
    await client.post("/v1/auth/login", json={**creds, "password": "wrong password here"})
    body = (await client.post("/v1/auth/login", json=creds)).json()
    cookie_login = await client.post(
        "/v1/auth/login", json={**creds, "mode": "cookie"}, headers={"origin": str(client.base_url).rstrip("/")}
    )
    secrets |= {body["access_token"], body["refresh_token"], cookie_login.json()["access_token"]}
    secrets |= {c.value for c in client.cookies.jar if c.value is not None}
    await client.post("/v1/auth/refresh", json={}, headers={"x-csrf-token": "forged"})
    client.cookies.clear()  # the rest is body mode
    rotated = (await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})).json()
    secrets |= {rotated["access_token"], rotated["refresh_token"]}
    await client.get("/v1/auth/me", headers=bearer(rotated))
    await client.get("/v1/auth/me", headers={"authorization": "Bearer " + rotated["access_token"][:-5] + "xxxxx"})
    changed = await client.post(
        "/v1/auth/password", headers=bearer(rotated), json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    secrets |= {changed.json()["access_token"], changed.json()["refresh_token"]}
    clock.advance(30)
    await client.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})  # reuse
    await client.post("/v1/auth/logout", json={"refresh_token": changed.json()["refresh_token"]})
    return secrets


async def audit_text(database_url: str) -> str:
    return "\n".join(repr(row) for row in await fetch(database_url, "SELECT * FROM audit_events"))


@pytest.mark.anyio
async def test_no_secret_in_debug_logs_or_audit_rows(
    client: httpx.AsyncClient,
    service: Service,
    clock: Clock,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every logger at DEBUG through a whole lifecycle: no password, token, hash or secret appears."""
    caplog.set_level(logging.DEBUG)
    secrets = await lifecycle(client, clock)
    secrets |= {h for (h,) in await fetch(database_url, "SELECT password_hash FROM users")}
    secrets.add(service.settings.secret.get_secret_value())
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    audit = await audit_text(database_url)
    assert "reuse_detected" in audit
    for secret in secrets:
        assert secret not in logs
        assert secret not in audit


@pytest.mark.server
def test_server_logs_json_lines_without_secrets(tmp_path: Path) -> None:
    """A real server with KEYTURN_LOG_FORMAT=json and level debug writes only JSON lines, none with a secret."""
    with keyturn_server(tmp_path, "--dev", log_format="json", log_level="debug") as server:
        creds = {"username": "jsonlog", "password": PASSWORD}
        httpx.post(f"{server.url}/v1/auth/register", json=creds)
        tokens = httpx.post(f"{server.url}/v1/auth/login", json=creds).json()
        again = httpx.post(f"{server.url}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
        httpx.get(f"{server.url}/v1/auth/me", headers=bearer(again))
        log = server.log.read_text()
    lines = [line for line in log.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert any(e["logger"] == "uvicorn.access" for e in entries)
    secret = (tmp_path / "keyturn.secret").read_text().strip()
    with sqlite3.connect(tmp_path / "keyturn.db") as db:
        (password_hash,) = db.execute("SELECT password_hash FROM users").fetchone()
    values = (PASSWORD, tokens["access_token"], tokens["refresh_token"], again["refresh_token"], secret, password_hash)
    for value in values:
        assert value not in log
