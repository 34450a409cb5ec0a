"""Throughput per added core: ``keyturn serve --workers 2`` against one worker (issue 18, point 4).

Neither setup is pinned: the server's processes and the load generator (wrk, one thread) share
the machine's cores, as they would on a small host. For each backend (SQLite: one file written by
every worker process; PostgreSQL) and each setup, on a database of its own, 64 chains of refresh
tokens rotate for the same time; the CPU time of the server's process tree (uvicorn's supervisor
and its workers) is read from /proc at the edges of the run, so what the server used is known
however the cores were shared. Every chain is checked in the database afterwards, as in every
refresh run.

Reported per row: req/s, the cores the server used (its CPU seconds per second) and req/s per
core used; per backend: two workers ÷ one, of both req/s and req/s per core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import overhttp
from bench.scale import proc_table, tree_cpu

__all__ = ["run"]

CONNECTIONS = 64
WORKERS = (1, 2)


def run(backend: str, database: Callable[[str], str], secret: str, seconds: float, tmp: Path) -> list[dict[str, Any]]:
    """One row per setup on ``backend``; ``database(name)`` gives a fresh database's URL."""
    rows = []
    for workers in WORKERS:
        workdir = tmp / f"{backend}-workers-{workers}"
        args = ("--workers", str(workers))
        with overhttp.keyturn(workdir, database(f"workers{workers}"), secret, cpu=None, serve_args=args) as kt:
            chains = overhttp.sign_in(kt.url, CONNECTIONS)
            assert kt.server.proc is not None
            before = tree_cpu(proc_table(), kt.server.proc.pid)
            report = overhttp.refresh_run(kt, chains, seconds, tmp, cpu=None)
            used = tree_cpu(proc_table(), kt.server.proc.pid) - before
        cores = used / (report["duration_us"] / 1e6)
        row = overhttp.row(backend, "refresh", CONNECTIONS, report)
        rows.append(
            {
                **row,
                "variant": f"{workers} worker(s)",
                "workers": workers,
                "server_cores": round(cores, 2),
                "req_s_per_core": _per(row, cores),
            }
        )
    one, two = rows
    for key in ("req_s", "req_s_per_core"):
        two[f"{key}_ratio"] = round(two[key] / one[key], 2) if one[key] else None
    return rows


def _per(row: dict[str, Any], cores: float) -> float | None:
    return round(row["req_s"] / cores, 1) if cores > 0 else None
