"""Integration tests against a real server process on loopback, started the way the README starts it
(`keyturn --dev serve` in an empty directory), including the README's curl walkthrough verbatim;
and a few started otherwise: without --dev (its production defaults), with several workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import PASSWORD, assert_refused
from tests.servers import KEYTURN, Server, dev_workers, free_port, keyturn_fixture, keyturn_server

pytestmark = [pytest.mark.server, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[3]


server = keyturn_fixture("--dev", own_issuer=False)  # in an empty directory, with no KEYTURN_* settings at all


def test_dev_server_makes_its_secret_and_database_in_the_working_directory(server: Server) -> None:
    """The generated secret is 0600, the SQLite file is there, and a warning says it is for development."""
    secret = server.cwd / "keyturn.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert (server.cwd / "keyturn.db").exists()
    log = server.log.read_text()
    assert "development" in log
    assert secret.read_text().strip() not in log


def test_readme_walkthrough_runs_as_written(server: Server, tmp_path: Path) -> None:
    """The README's curl walkthrough, run verbatim: register, login, me, refresh, grace replay (the
    same refresh token, a fresh access token), replay → revoked; it writes no file where it runs."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```", readme, re.S)
    assert match, "README has no walkthrough block"
    script = match.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    # The test, not the reader, keeps the answers, to look for their tokens in the server's log.
    script += '\nprintf "%s\\n" "$LOGIN" "$NEW" "$AGAIN" > "$ANSWERS"\n'
    checkout, answers = tmp_path / "checkout", tmp_path / "answers"
    checkout.mkdir()
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=checkout,
        env={**os.environ, "ANSWERS": str(answers)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list(checkout.iterdir()) == []
    lines = result.stdout.strip().splitlines()
    assert '"username":"alice"' in lines[0]
    assert '"username":"alice"' in lines[1]
    assert lines[2:4] == ["same refresh token", "fresh access token"]
    assert lines[4].endswith(" 401")
    assert '"invalid_grant"' in lines[4]
    assert "revoked" in lines[4]
    assert lines[5].endswith(" 401")
    assert '"invalid_token"' in lines[5]
    assert lines[6].endswith(" 401")
    assert '"invalid_grant"' in lines[6]
    assert len(lines) == 7
    log = server.log.read_text()
    for answer in answers.read_text().splitlines():
        for secret in json.loads(answer).values():
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


# --- issue 13: honest request metrics (finding 6) and production defaults (point 7) ----------------


def metric_samples(server: Server, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def aborted_and_5xx(server: Server) -> tuple[float, float]:
    """(requests ended with nothing sent, requests counted as answered with a 5xx), over every label."""
    samples = metric_samples(server)
    aborted = sum(v for (name, _), v in samples.items() if name == "keyturn_http_requests_aborted_total")
    errors = sum(
        v for (name, labels), v in samples.items()
        if name == "keyturn_http_requests_total" and dict(labels)["status"].startswith("5")
    )  # fmt: skip
    return aborted, errors


def send_raw(server: Server, data: bytes) -> bytes:
    """Send ``data`` on a connection of its own, then stop sending; whatever the server answers before closing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def wait_for_aborted(server: Server, at_least: float) -> tuple[float, float]:
    """Poll /metrics (bounded) until the server has counted ``at_least`` aborted requests."""
    deadline = time.monotonic() + 15
    while True:
        aborted, errors = aborted_and_5xx(server)
        if aborted >= at_least or time.monotonic() > deadline:
            return aborted, errors
        time.sleep(0.05)


HEAD = b"POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def test_half_a_body_then_gone_raises_no_5xx_over_real_http(server: Server) -> None:
    """A client that sends half its body and disconnects is counted aborted; the 5xx count does not move."""
    before, errors_before = aborted_and_5xx(server)
    answer = send_raw(server, HEAD + b'Content-Length: 80\r\n\r\n{"username": "alice", "pass')
    assert answer == b""  # nothing was sent back: there is no status to count
    aborted, errors = wait_for_aborted(server, before + 1)
    assert aborted == before + 1
    assert errors == errors_before == 0


def test_a_broken_chunked_body_raises_no_5xx_over_real_http(server: Server) -> None:
    """A chunked body the server cannot parse gets the server's own 400 and is counted aborted, never 5xx."""
    before, errors_before = aborted_and_5xx(server)
    body = b'Transfer-Encoding: chunked\r\n\r\n10\r\n{"username": "al\r\nzz-not-a-chunk-size\r\n\r\n'
    answer = send_raw(server, HEAD + body)
    assert answer.startswith(b"HTTP/1.1 4"), answer  # the HTTP server's own answer (uvicorn: 400), not the app's
    aborted, errors = wait_for_aborted(server, before + 1)
    assert aborted == before + 1
    assert errors == errors_before == 0


def test_dev_issuer_follows_the_port_serve_listens_on(server: Server) -> None:
    """`keyturn --dev serve --port N` with no KEYTURN_ISSUER issues for http://127.0.0.1:N, not :8000."""
    metadata = httpx.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == server.url
    assert metadata["jwks_uri"] == f"{server.url}/.well-known/jwks.json"


def test_dev_serves_docs_openapi_and_metrics_as_before(server: Server) -> None:
    """The README's `keyturn --dev serve` still serves /docs, /openapi.json and an open /metrics."""
    for path in ("/docs", "/openapi.json", "/metrics", "/"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path


def test_production_server_exposes_no_docs_or_metrics_and_logs_registration(tmp_path: Path) -> None:
    """`keyturn serve` without --dev: no /docs, /openapi.json, /metrics or page; the log says who may register."""
    with keyturn_server(tmp_path, secret=secrets.token_urlsafe(48), allow_registration="false") as running:
        for path in ("/docs", "/openapi.json", "/metrics", "/"):
            assert_refused(httpx.get(f"{running.url}{path}"), 404, "not_found")
        assert httpx.get(f"{running.url}/healthz").status_code == 200
        log = running.log.read_text()
    assert "registration closed" in log
    assert "metrics off" in log
    assert "API docs off" in log


def test_dev_workers_get_the_issuer_serve_derived(tmp_path: Path) -> None:
    """`keyturn --dev serve --workers 2`: every worker issues for the address serve listens on."""
    with dev_workers(tmp_path) as running:
        metadata = f"{running.url}/.well-known/oauth-authorization-server"
        issuers = {httpx.get(metadata).json()["issuer"] for _ in range(8)}
    assert issuers == {running.url}


def test_serve_without_an_issuer_stops_naming_it_and_what_to_set(tmp_path: Path) -> None:
    """Production `keyturn serve` with no KEYTURN_ISSUER exits 2 with one line naming it and one saying
    what to set (or to use --dev), never a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_SECRET"] = secrets.token_urlsafe(48)
    result = subprocess.run(
        [str(KEYTURN), "serve", "--port", str(free_port())], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("keyturn: invalid setting KEYTURN_ISSUER: is required outside development mode")
    assert lines[1].startswith("Set KEYTURN_ISSUER (its public https:// URL), or put --dev before the command")
