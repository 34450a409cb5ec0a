"""Integration test: examples/machine_client.py as a process, with client credentials registered by
the real `keyturn clients add`, calling examples/fastapi_app.py (protected by keyturn.verify), all
against a real keyturn server on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.examples.apps import EXAMPLES, fastapi_example
from tests.servers import KEYTURN, Server, keyturn_fixture

pytestmark = pytest.mark.server

server = keyturn_fixture("--dev")


def keyturn(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`keyturn --dev <args>` in the server's directory: its database and its secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    command = [str(KEYTURN), "--dev", *args]
    return subprocess.run(command, cwd=server.cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def api(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """examples/fastapi_app.py, verifying the server's tokens and following its revocation feed."""
    with fastapi_example(server, tmp_path_factory.mktemp("api"), audience=server.url) as url:
        yield url


def job(server: Server, api: str, client_id: str, secret: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(KEYTURN_ISSUER=server.url, API_URL=api, KEYTURN_CLIENT_ID=client_id, KEYTURN_CLIENT_SECRET=secret)
    command = [sys.executable, str(EXAMPLES / "machine_client.py")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_the_machine_client_calls_the_api_until_its_client_is_disabled(server: Server, api: str) -> None:
    """The docstring's commands: `clients add` prints the secret last; the job gets a token and the
    API answers 200 with the client's id; a user's token lacks the scope (403). Once the client is
    disabled, a token it got before is refused by the API within two seconds (the revocation feed),
    and the job says why in one line, with no traceback."""
    added = keyturn(server, "clients", "add", "nightly-report", "--scope", "orders:read")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip().splitlines()[-1]
    ran = job(server, api, "nightly-report", secret)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith('200 {"client": "nightly-report", "scope": ["orders:read"]'), ran.stdout
    token = httpx.post(
        f"{server.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("nightly-report", secret)
    ).json()["access_token"]
    assert httpx.get(f"{api}/reports", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert keyturn(server, "clients", "disable", "nightly-report").returncode == 0
    deadline = time.monotonic() + 2.0
    while (answer := httpx.get(f"{api}/reports", headers={"authorization": f"Bearer {token}"})).status_code == 200:
        assert time.monotonic() < deadline, "the disabled client's token still works after 2 s"
        time.sleep(0.05)
    assert (answer.status_code, answer.json()["error_description"]) == (
        401, "The session of this access token has ended.",
    )  # fmt: skip
    refused = job(server, api, "nightly-report", secret)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("The client is disabled."), refused.stderr
    assert "Traceback" not in refused.stderr


def test_readme_machine_to_machine_block_runs_as_written(server: Server) -> None:
    """The README's machine-to-machine block, run verbatim in the server's directory after the
    walkthrough's helper: the token introspects active with the client as its subject; after
    `clients disable` the client gets 401 "The client is disabled."."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = re.search(r"<!-- machine -->\n```bash\n(.*?)```", readme, re.S)
    helper = re.search(r"^json\(\) .*$", readme, re.M)
    assert block, "README has no machine-to-machine block"
    assert helper, "README has no json helper"
    script = f"B={server.url}\n{helper.group(0)}\n" + block.group(1).replace(".venv/bin/keyturn", str(KEYTURN))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=server.cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    introspected, disabled, refused = result.stdout.strip().splitlines()
    assert json.loads(introspected)["active"] is True
    assert (json.loads(introspected)["sub"], json.loads(introspected)["scope"]) == ("billing-cron", "orders:read")
    assert disabled == "disabled billing-cron; its access tokens are ended"
    assert refused.endswith(" 401")
    assert json.loads(refused.removesuffix(" 401"))["error_description"] == "The client is disabled."
