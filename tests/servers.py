"""Starting real keyturn server processes on loopback for integration tests: the one place that does.

``keyturn_server`` is the factory (a context manager: started and ready on entry, stopped on exit);
``keyturn_fixture`` makes the module-scoped ``server`` fixture most modules need from it in one
line; ``keyturn_servers`` starts a fleet sharing one database, ``dev_workers`` one multi-worker
server. Every server gets a free port and only the ``KEYTURN_*`` settings it is given.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

KEYTURN = Path(sys.executable).with_name("keyturn")
READY_TIMEOUT = 30.0  # seconds for one server to answer /readyz
FLEET_READY_TIMEOUT = 90.0  # for several started at once on a 2-core machine, racing to migrate


@dataclass
class Server:
    url: str
    port: int
    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    wait_ready_url(f"{url}/readyz", proc, log, timeout)


def wait_ready_url(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (bounded), failing early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready in {timeout}s:\n{log.read_text()}")


def spawn_keyturn(
    cwd: Path,
    *args: str,
    own_issuer: bool = True,
    launcher: Sequence[str] = (),
    serve_args: Sequence[str] = (),
    port: int | None = None,
    **settings: str,
) -> Server:
    """Start `keyturn <args> serve <serve_args>` in ``cwd`` with only the given KEYTURN_* settings
    and return at once, without waiting for it to be ready (the caller stops ``server.proc``).
    ``launcher`` goes in front of the command (e.g. ``taskset -c 0``); ``port`` (default: a free
    one) lets a restarted server keep its address, and so its issuer."""
    port = free_port() if port is None else port
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    if own_issuer:
        env["KEYTURN_ISSUER"] = f"http://127.0.0.1:{port}"  # what verifiers discover the keys from
        # Module-scoped servers see hundreds of logins from 127.0.0.1; tests/http/test_ratelimit.py
        # covers the limits themselves.
        env["KEYTURN_RATE_LIMIT_ENABLED"] = "false"
    env.update({f"KEYTURN_{k.upper()}": v for k, v in settings.items()})
    log = cwd / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*launcher, str(KEYTURN), *args, "serve", "--port", str(port), *serve_args],
            cwd=cwd, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    return Server(f"http://127.0.0.1:{port}", port, cwd, log, proc)


def stop(server: Server, timeout: float = 15.0) -> None:
    """SIGTERM the server and wait for it (bounded); SIGKILL it if it does not exit in time."""
    proc = server.proc
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
        raise


@contextmanager
def keyturn_server(
    cwd: Path,
    *args: str,
    own_issuer: bool = True,
    launcher: Sequence[str] = (),
    serve_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT,
    **settings: str,
) -> Iterator[Server]:
    """`keyturn <args> serve <serve_args>` in ``cwd`` with only the given KEYTURN_* settings (the
    issuer is the server's own URL unless given); stopped on exit."""
    server = spawn_keyturn(
        cwd, *args, own_issuer=own_issuer, launcher=launcher, serve_args=serve_args, port=None, **settings
    )
    assert server.proc is not None
    try:
        wait_ready(server.url, server.proc, server.log, ready_timeout)
        yield server
    finally:
        stop(server)


def keyturn_fixture(*args: str, own_issuer: bool = True, **settings: str) -> Any:
    """A module-scoped fixture named ``server``: `keyturn <args> serve` with ``settings`` (as for
    ``keyturn_server``) in a directory of its own, started once for the module's tests.

    One server per module, not per test: starting one costs about a second, and the tests that
    share it register users of their own.
    """

    @pytest.fixture(scope="module", name="server")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        cwd = tmp_path_factory.mktemp("keyturn")
        # ready_timeout given by name, so that (for mypy too) no setting can stand for it.
        with keyturn_server(cwd, *args, own_issuer=own_issuer, ready_timeout=READY_TIMEOUT, **settings) as running:
            yield running

    return server


@contextmanager
def dev_workers(cwd: Path, workers: int = 2) -> Iterator[Server]:
    """`keyturn --dev serve --workers N` in ``cwd`` (its own issuer, derived by serve); stopped on exit."""
    with keyturn_server(cwd, "--dev", own_issuer=False, serve_args=("--workers", str(workers)), ready_timeout=60) as s:
        yield s


@contextmanager
def keyturn_servers(cwds: Sequence[Path], *args: str, **settings: str) -> Iterator[list[Server]]:
    """One `keyturn <args> serve` per directory, all started at the same moment with the same
    settings (give them a shared ``issuer``, ``secret`` and ``database_url``), all ready within
    ``FLEET_READY_TIMEOUT`` seconds on entry, all stopped on exit."""
    with ExitStack() as stack:
        servers = []
        for cwd in cwds:
            server = spawn_keyturn(cwd, *args, own_issuer=False, port=None, **settings)
            stack.callback(stop, server)
            servers.append(server)
        deadline = time.monotonic() + FLEET_READY_TIMEOUT
        for server in servers:
            assert server.proc is not None
            wait_ready(server.url, server.proc, server.log, max(1.0, deadline - time.monotonic()))
        yield servers
