"""keyturn's benchmark suite: one command, bounded in time, loopback only (``make bench``).

    .venv/bin/python -m bench.run            # default profile, about 10 minutes
    .venv/bin/python -m bench.run --quick    # about 3 minutes: SQLite only (but the feed), fewer levels

Starts everything it measures itself (keyturn servers, the bare ASGI ceiling, a resource server,
the issue-18 reference server, a throwaway PostgreSQL with fsync on), measures, stops it all, and writes
``bench/results/<date>.json``, ``.md`` and ``.png``, plus ``latest.md`` and ``latest.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.postgres import PostgresServer

from bench import feed, growth, inprocess, limits, overhttp, reference, report, workers
from bench.scale import deadline

RESULTS = overhttp.ROOT / "bench" / "results"


@dataclass(frozen=True)
class Profile:
    name: str
    levels: tuple[int, ...]
    seconds: float
    backends: tuple[str, ...]
    sizes: tuple[int, ...]
    scale: bool
    workers: bool  # the --workers 2 rows (bench/workers.py)
    refreshes: int
    feed_logouts: int  # per setup of the revocation feed's propagation
    bound_s: int


SIZES = (1_000, 100_000, 1_000_000)
PROFILES = {
    "default": Profile("default", (1, 16, 64), 5.0, ("sqlite", "postgresql"), SIZES, True, True, 1000, 200, 720),
    "quick": Profile("quick", (1, 64), 3.0, ("sqlite",), SIZES[:2], False, False, 200, 50, 240),
}


def database(backend: str, tmp: Path, pg: PostgresServer | None, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / f'{name}.db'}"
    assert pg is not None
    return pg.create_database(name)


def measure_backend(backend: str, profile: Profile, tmp: Path, pg: PostgresServer | None) -> dict[str, Any]:
    secret = secrets.token_urlsafe(48)
    out: dict[str, Any] = {}
    first = backend == profile.backends[0]
    with overhttp.keyturn(tmp / f"{backend}-http", database(backend, tmp, pg, "http"), secret) as kt:
        out["http"] = overhttp.run_backend(backend, kt, profile.levels, profile.seconds, tmp, resource=first)
        out["one_session"] = growth.one_session(backend, kt, profile.refreshes)
    with overhttp.keyturn(tmp / f"{backend}-growth", database(backend, tmp, pg, "growth"), secret) as kt:
        out["growth"] = growth.growth(backend, kt, list(profile.sizes), profile.seconds, max(profile.levels), tmp)
    out["limits"] = limits.run(backend, database(backend, tmp, pg, "limits"), secret, profile.seconds, tmp)
    if profile.workers:
        out["workers"] = workers.run(backend, lambda n: database(backend, tmp, pg, n), secret, 2 * profile.seconds, tmp)
    return out


def scale(tmp: Path) -> dict[str, Any]:
    """One keyturn instance versus two on one PostgreSQL (``bench/scale.py --quick``)."""
    path = tmp / "scale.json"
    script = overhttp.ROOT / "bench" / "scale.py"
    cmd = [sys.executable, str(script), "--quick", "--no-sqlite", "--quiet-wait", "0", "--out", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=240)
    data = json.loads(path.read_text())
    rows = [
        {"instances": 1 if "1 instance" in r["setup"] else 2, "connections": r["connections"], "req_s": r["rps"],
         "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "non_2xx": r["non_2xx"] + r["transport_errors"],
         "keyturn_cpu_ms_per_refresh": r["keyturn_cpu_ms_per_refresh"], "verified": r["verified"]}
        for r in data["summary"]
    ]  # fmt: skip
    return {"rows": rows, "ratio_64": data["ratio_2_over_1"].get("c64", {}).get("ratio")}


def environment(pg: PostgresServer | None) -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    versions = {name: version(name) for name in ("keyturn", "uvicorn", "uvloop", "httptools", "starlette", "fastapi",
                                                  "sqlalchemy", "aiosqlite", "asyncpg", "pyjwt", "cryptography",
                                                  "argon2-cffi")}  # fmt: skip
    versions["wrk"] = overhttp.wrk_version()
    versions.update(reference.versions())
    if pg is not None:
        versions["postgresql"] = pg.execute("SHOW server_version")[0][0]
    machine = {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
               "kernel": platform.release()}  # fmt: skip
    return {"machine": machine, "versions": versions}


def run(profile: Profile) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "profile": profile.name}
    result["stack"] = (
        f"uvicorn {version('uvicorn')} (uvloop, httptools), one worker pinned to CPU {overhttp.SERVER_CPU}; "
        f"wrk -t1 pinned to CPU {overhttp.LOAD_CPU}; PostgreSQL with fsync on; SQLite WAL, synchronous=FULL"
    )
    _step("in-process")
    result["inprocess"] = inprocess.run(quick=profile.name == "quick")
    pg: PostgresServer | None = PostgresServer(durable=True)  # every profile measures the feed on PostgreSQL
    tmp = Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
    try:
        if pg is not None:
            pg.start()
        result.update(environment(pg))
        for key in ("http", "one_session", "growth", "limits", "workers"):
            result[key] = []
        for backend in profile.backends:
            _step(f"over HTTP, growth and storage on {backend}")
            for key, rows in measure_backend(backend, profile, tmp, pg).items():
                result[key] += rows if isinstance(rows, list) else [rows]
        _step("the issue-18 reference server (express-seed), default and SEED_KEYOBJECT=1")
        result["reference"] = reference.run(profile.levels, profile.seconds, tmp)
        _step("revocation feed: propagation (SQLite, PostgreSQL, three instances), verifier throughput")
        result["feed"] = feed.run(profile.feed_logouts, tmp, pg, quick=profile.name == "quick")
        if pg is not None:
            pg.destroy()
            pg = None
        if profile.scale:
            _step("one instance versus two on PostgreSQL")
            result["scale"] = scale(tmp)
    finally:
        if pg is not None:
            pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["targets"] = report.evaluate(result)
    return result


def _step(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def write(result: dict[str, Any], results: Path = RESULTS) -> Path:
    results.mkdir(exist_ok=True)
    stem = results / result["date"].replace(":", "")
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    text = report.markdown(result)
    stem.with_suffix(".md").write_text(text)
    report.chart(result, stem.with_suffix(".png"))
    if result["profile"] == "default":
        (results / "latest.md").write_text(text)
        shutil.copyfile(stem.with_suffix(".png"), results / "latest.png")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick profile (about 3 minutes)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write (default bench/results)")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is missing: run scripts/bench, which installs it")
    if problem := reference.missing():
        parser.error(f"{problem} (scripts/bench installs it)")
    profile = PROFILES["quick" if args.quick else "default"]
    with deadline(profile.bound_s):
        result = run(profile)
    path = write(result, args.results)
    print(report.markdown(result))
    print(f"\nresults: {path} (.md, .png)", file=sys.stderr)


if __name__ == "__main__":
    main()
