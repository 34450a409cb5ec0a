"""What the example tests share: examples/fastapi_app.py run as a real process against a keyturn server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import Server, free_port, wait_ready_url

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextmanager
def fastapi_example(server: Server, logs: Path, **settings: str) -> Iterator[str]:
    """Serve examples/fastapi_app.py on a free port, verifying ``server``'s tokens (with the
    KEYTURN_* ``settings`` given), until the block ends; yields its base URL."""
    port = free_port()
    env = {**os.environ, "KEYTURN_ISSUER": server.url, "PORT": str(port)}
    env.update({f"KEYTURN_{name.upper()}": value for name, value in settings.items()})
    log = logs / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "fastapi_app.py")], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready_url(f"{url}/public", proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
