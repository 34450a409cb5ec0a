"""Integration test: examples/fastapi_app.py as a real process, protected by a real keyturn server."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.examples.apps import fastapi_example
from tests.servers import Server, free_port, keyturn_fixture, wait_ready_url

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"


server = keyturn_fixture("--dev")


@pytest.fixture(scope="module")
def api(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fastapi_example(server, tmp_path_factory.mktemp("api")) as url:
        yield url


def test_fastapi_example_protects_its_route(server: Server, api: str) -> None:
    """No token: 401; a token from the keyturn server: 200 with the caller's id; the public route is
    open, and so is its RFC 9728 document, naming the keyturn server."""
    assert httpx.get(f"{api}/public").status_code == 200
    assert httpx.get(f"{api}/orders").status_code == 401
    creds = {"username": "orders-user", "password": "correct horse battery staple"}
    user = httpx.post(f"{server.url}/v1/auth/register", json=creds).json()
    token = httpx.post(f"{server.url}/v1/auth/login", json=creds).json()["access_token"]
    response = httpx.get(f"{api}/orders", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["user"] == user["id"]
    document = httpx.get(f"{api}/.well-known/oauth-protected-resource").json()  # examples/README.md's curl
    assert (document["resource"], document["authorization_servers"]) == (api, [server.url])
    health = httpx.get(f"{api}/healthz")
    assert (health.status_code, health.json()) == (200, {"revocation_feed": "following"})


def test_readme_protect_your_api_snippet_runs(server: Server, tmp_path: Path) -> None:
    """The README's FastAPI snippet, saved as orders.py and served with uvicorn as written, and the
    README's calls to it: 200 with a fresh token, then 401 "has ended" two seconds after logout."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    match = re.search(r"<!-- protect -->\n```python\n(.*?)```", readme, re.S)
    assert match, "README has no 'Protect your API' snippet"
    (tmp_path / "orders.py").write_text(match.group(1).replace("http://127.0.0.1:8000", server.url))
    port = free_port()
    log = tmp_path / "orders.log"
    uvicorn = Path(sys.executable).with_name("uvicorn")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(uvicorn), "orders:app", "--port", str(port)], cwd=tmp_path, stdout=out, stderr=out)
    try:
        wait_ready_url(f"http://127.0.0.1:{port}/docs", proc, log)
        refused = httpx.get(f"http://127.0.0.1:{port}/orders")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        creds = {"username": "alice", "password": "correct horse battery staple"}
        assert httpx.post(f"{server.url}/v1/auth/register", json=creds).status_code == 201
        calls = re.search(r"<!-- protect-calls -->\n```bash\n(.*?)```", readme, re.S)
        assert calls, "README has no calls to orders.py"
        helper = re.search(r"^json\(\) .*$", readme, re.M)  # the walkthrough's, which these calls run after
        assert helper
        script = f"B={server.url}\n{helper.group(0)}\n" + calls.group(1).replace("localhost:8001", f"127.0.0.1:{port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        served, signed_out = result.stdout.strip().splitlines()
        assert served.endswith(" 200")
        assert '"orders":[]' in served
        assert signed_out.endswith(" 401")
        assert '"error":"invalid_token"' in signed_out
        assert "The session of this access token has ended." in signed_out
    finally:
        proc.terminate()
        proc.wait(timeout=15)
