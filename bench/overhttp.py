"""keyturn over HTTP: real server processes pinned to one core, wrk on the other, in one run.

For each backend it starts ``keyturn serve`` (uvicorn, one worker, pinned to CPU 0), logs in the
chains it needs, and runs wrk (``-t1``, pinned to CPU 1, ``bench/wrk/keyturn.lua``) against
``GET /v1/auth/me``, ``POST /v1/auth/refresh`` with chained rotation, and ``POST /v1/auth/login``
at each connection count. Next to them, on the same uvicorn: the bare ASGI ceiling and a
plain Starlette route (the framework's share), and a resource server protected by keyturn's Starlette
adapter (``bench/apps.py``), following the revocation feed (``protected``, the default) and not
(``protected_nofeed``). Rates are counted from each run's first answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's server and PostgreSQL helpers live in tests/

from tests.servers import Server, free_port, keyturn_server, stop, wait_ready_url  # noqa: E402

from keyturn.core.masterkey import MasterKey  # noqa: E402
from keyturn.core.refresh import RefreshTokenCodec  # noqa: E402

SERVER_CPU = "0"
LOAD_CPU = "1"
LUA = ROOT / "bench" / "wrk" / "keyturn.lua"
PASSWORD = "correct horse battery staple"
# Rate limiting stays on (its cost is part of every request), with limits no benchmark reaches:
# one user logs in, and one session refreshes, far more often than any real client would.
LIMITS = ("login_ip", "login_failures", "account_failures", "register_ip", "refresh_session", "global")
HIGH_LIMITS = {f"rate_limit_{name}": "1000000/second" for name in LIMITS}
# Metrics stay on too, as in a deployment that scrapes them: outside --dev that takes a token.
METRICS = {"metrics_token": "bench-metrics-" + os.urandom(24).hex()}


def pinned(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def wrk(
    url: str,
    connections: int,
    seconds: float,
    mode: str = "get",
    file: Path | None = None,
    headers: Sequence[str] = (),
    *,
    extra: Sequence[str] = (),
    cpu: str | None = LOAD_CPU,
    limited: bool = False,
) -> dict[str, Any]:
    """One wrk run (one thread, on the load core, or ``cpu=None``: on any) of
    ``bench/wrk/keyturn.lua`` (``extra``: more script arguments after ``file``; ``limited``: a 429
    is counted apart, not as non-2xx); returns the script's JSON report plus req_s and limited_s."""
    cmd = [*(pinned(cpu) if cpu else []), "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s"]
    cmd += ["-s", str(LUA)]
    for header in headers:
        cmd += ["-H", header]
    cmd += [url, "--", mode, *([str(file)] if file else []), *extra]
    env = {**os.environ, "WRK_LIMITED": "1" if limited else "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True, env=env).stdout
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    # Counted from the first answer: a login's first answers wait for a queue of argon2id hashes.
    steady = max(report["duration_us"] - report["first_answer_us"], report["duration_us"] // 2)
    report["req_s"] = report["ok"] / (steady / 1e6)
    report["limited_s"] = report["limited"] / (steady / 1e6)
    report["p50_ms"], report["p99_ms"] = report["p50_us"] / 1000, report["p99_us"] / 1000
    return report


def wrk_version() -> str:
    probe = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (probe.stdout + probe.stderr).split("[")[0].strip()


@dataclass
class Chain:
    session_id: str
    refresh_token: str
    access_token: str


@dataclass
class Keyturn:
    server: Server
    database_url: str
    secret: str

    @property
    def url(self) -> str:
        return self.server.url

    def generation(self, token: str) -> tuple[str, int]:
        decoded = RefreshTokenCodec.from_master(MasterKey(self.secret)).decode(token)
        return str(decoded.session_id), decoded.generation


@contextmanager
def keyturn(
    workdir: Path,
    database_url: str,
    secret: str,
    *,
    cpu: str | None = SERVER_CPU,
    serve_args: Sequence[str] = (),
    real_limits: bool = False,
    **extra: str,
) -> Iterator[Keyturn]:
    """``keyturn serve <serve_args>`` on ``database_url``, pinned to ``cpu`` (None: not pinned),
    ready on entry, stopped on exit; the rate limits set out of reach, or (``real_limits``) at
    their defaults."""
    workdir.mkdir(parents=True, exist_ok=True)
    with keyturn_server(
        workdir,
        launcher=pinned(cpu) if cpu else [],
        serve_args=serve_args,
        database_url=database_url,
        secret=secret,
        log_level="warning",  # uvicorn's access log is off at warning, as it is in the examples
        prune_interval="0",
        **{**({} if real_limits else HIGH_LIMITS), **METRICS, "rate_limit_enabled": "true", **extra},
    ) as server:
        yield Keyturn(server, database_url, secret)


@contextmanager
def asgi_app(workdir: Path, target: str, *, factory: bool = False, env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve ``target`` with uvicorn as ``keyturn serve`` runs it (same loop, parser and logging
    level), pinned to the server core; yields its base URL."""
    port = free_port()
    uvicorn = Path(sys.executable).with_name("uvicorn")
    cmd = [str(uvicorn), target, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-server-header", "--no-proxy-headers", *(["--factory"] if factory else [])]
    with served(cmd, port, workdir, cwd=ROOT, env={**os.environ, **(env or {})}) as url:
        yield url


@contextmanager
def served(cmd: list[str], port: int, workdir: Path, *, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run ``cmd`` (a server on ``port``) pinned to the server core, logging to ``workdir``; ready
    (``/healthz``) on entry, stopped on exit; yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*pinned(SERVER_CPU), *cmd], cwd=cwd, env=env, stdout=out, stderr=out)
    server = Server(f"http://127.0.0.1:{port}", port, workdir, log, proc)
    try:
        wait_ready_url(f"{server.url}/healthz", proc, log)
        yield server.url
    finally:
        stop(server)


async def _sign_in(base: str, username: str, count: int) -> list[Chain]:
    creds = {"username": username, "password": PASSWORD}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        r = await client.post("/v1/auth/register", json=creds)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"register: {r.status_code} {r.text}")
        gate = asyncio.Semaphore(4)

        async def one() -> Chain:
            async with gate:
                r = await client.post("/v1/auth/login", json=creds)
            r.raise_for_status()
            body = r.json()
            return Chain(body["session_id"], body["refresh_token"], body["access_token"])

        return list(await asyncio.gather(*(one() for _ in range(count))))


def sign_in(base: str, count: int, username: str = "bench") -> list[Chain]:
    """Register ``username`` (if new) and open ``count`` sessions: one refresh chain each."""
    return asyncio.run(_sign_in(base, username, count))


async def _generations(database_url: str, ids: list[str]) -> dict[str, int]:
    from tests.helpers import fetch

    rows = await fetch(database_url, "SELECT id, generation FROM sessions")
    wanted = {i.replace("-", "") for i in ids}
    return {str(r[0]).replace("-", ""): int(r[1]) for r in rows if str(r[0]).replace("-", "") in wanted}


def refresh_run(
    kt: Keyturn,
    chains: list[Chain],
    seconds: float,
    tmp: Path,
    *,
    cpu: str | None = LOAD_CPU,
    connections: int | None = None,
    limited: bool = False,
) -> dict[str, Any]:
    """Chained rotation, one chain per connection unless ``connections`` says fewer (``limited``:
    a 429 drops its chain, counted apart); checks the database afterwards: the generations moved
    by at least the 200s wrk counted, and by at most one more per connection (requests still in
    flight when wrk stopped)."""
    connections = connections or len(chains)
    start = dict(kt.generation(c.refresh_token) for c in chains)
    tokens = tmp / f"chains-{len(chains)}.txt"
    tokens.write_text("".join(c.refresh_token + "\n" for c in chains))
    report = wrk(f"{kt.url}/v1/auth/refresh", connections, seconds, "refresh", tokens, cpu=cpu, limited=limited)
    after = asyncio.run(_generations(kt.database_url, list(start)))
    moved = sum(after[sid.replace("-", "")] - gen for sid, gen in start.items())
    report["generations_moved"] = moved
    report["verified"] = report["ok"] <= moved <= report["ok"] + connections and report["non_2xx"] == 0
    return report


def row(backend: str, endpoint: str, connections: int, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": backend, "endpoint": endpoint, "connections": connections,
        "req_s": round(report["req_s"], 1), "p50_ms": round(report["p50_ms"], 2), "p99_ms": round(report["p99_ms"], 2),
        "non_2xx": report["non_2xx"], "socket_errors": report["socket_errors"], "verified": report.get("verified"),
        "first_answer_ms": round(report["first_answer_us"] / 1000, 1),
    }  # fmt: skip


def run_backend(
    backend: str, kt: Keyturn, levels: Sequence[int], seconds: float, tmp: Path, *, resource: bool = False
) -> list[dict[str, Any]]:
    """``/me``, refresh and login at every level on one keyturn server (and, once, the bare
    ceiling and the protected resource server beside it)."""
    chains = sign_in(kt.url, sum(levels))
    rows: list[dict[str, Any]] = []
    login_body = tmp / "login.json"
    login_body.write_text(json.dumps({"username": "bench", "password": PASSWORD}))
    bearer = f"Authorization: Bearer {chains[0].access_token}"
    with ceiling_apps(resource, tmp, kt.url) as urls:
        taken = 0
        for level in levels:
            if urls:
                rows += ceiling_rows(urls, level, seconds, bearer)
            rows.append(row(backend, "me", level, wrk(f"{kt.url}/v1/auth/me", level, seconds, headers=[bearer])))
            rows.append(row(backend, "refresh", level, refresh_run(kt, chains[taken : taken + level], seconds, tmp)))
            taken += level
            # A login costs one argon2id hash (~35 ms): with many connections the first answers
            # take seconds to come, so login runs long enough for that start to matter little.
            login = wrk(f"{kt.url}/v1/auth/login", level, seconds * (1 if level == 1 else 4), "post", login_body)
            rows.append(row(backend, "login", level, login))
    return rows


CEILING_ROUNDS = 3


def ceiling_rows(urls: list[str], level: int, seconds: float, bearer: str) -> list[dict[str, Any]]:
    """The bare ceiling, the plain Starlette route and the protected resource (feed followed, and
    not) in short interleaved rounds (the order alternating); each row is its app's median round.
    A burst of noise on the shared machine then spoils one round, not the ceiling every ratio
    divides by."""
    apps = [
        ("bare", f"{urls[0]}/", []),
        ("starlette", f"{urls[1]}/orders", []),
        ("protected", f"{urls[2]}/orders", [bearer]),
        ("protected_nofeed", f"{urls[3]}/orders", [bearer]),
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in apps}
    for r in range(CEILING_ROUNDS):
        for name, url, headers in apps if r % 2 == 0 else reversed(apps):
            runs[name].append(wrk(url, level, max(1.0, seconds / CEILING_ROUNDS), headers=headers))
    return [
        row("none", name, level, sorted(runs[name], key=lambda x: x["req_s"])[CEILING_ROUNDS // 2]) for name in runs
    ]


@contextmanager
def ceiling_apps(enabled: bool, tmp: Path, issuer: str) -> Iterator[list[str]]:
    if not enabled:
        yield []
        return
    unfollowed = {"BENCH_ISSUER": issuer, "BENCH_FEED": "off"}
    with (
        asgi_app(tmp / "bare", "bench.apps:bare") as bare,
        asgi_app(tmp / "starlette", "bench.apps:starlette_plain", factory=True) as plain,
        asgi_app(tmp / "resource", "bench.apps:resource", factory=True, env={"BENCH_ISSUER": issuer}) as res,
        asgi_app(tmp / "resource-nofeed", "bench.apps:resource", factory=True, env=unfollowed) as nofeed,
    ):
        yield [bare, plain, res, nofeed]


def main() -> None:
    levels = [int(x) for x in (sys.argv[1:] or ["1", "16", "64"])]
    secret = "bench-" + os.urandom(24).hex()
    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as t:
        tmp = Path(t)
        started = time.monotonic()
        with keyturn(tmp / "sqlite", f"sqlite+aiosqlite:///{tmp / 'keyturn.db'}", secret) as kt:
            rows = run_backend("sqlite", kt, levels, 5, tmp, resource=True)
        for r in rows:
            print(json.dumps(r))
        print(f"{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
