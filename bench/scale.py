"""Refresh throughput of one keyturn instance versus two on one PostgreSQL, measured in one run.

Starts a throwaway durable PostgreSQL (fsync on), two ``keyturn serve`` processes on it with a
shared secret, and (unless --quick) a third on SQLite for reference; seeds 64 users with one
session each; then drives chained refresh-token rotation with ``bench/load.mjs`` (Node,
keep-alive, round robin per request), every phase for the same duration:

    PostgreSQL, 1 instance and 2 instances, at 16 and 64 connections, in rounds that alternate
    which setup goes first (ABBA), so drift and background load favour neither;
    SQLite, 1 instance, at 16 and 64 connections (reference).

The chains continue across phases: each virtual user keeps its session and newest token, so a
token minted by one instance is redeemed at the other. After each phase every session's
generation in the database must have moved by exactly the number of 200 answers its virtual user
counted, its newest token must name that generation, and there must be no non-2xx answer.

CPU time of each process group (each keyturn process, the PostgreSQL cluster, the load
generator) and of the whole machine is sampled from /proc at the edges of the measured window,
so CPU taken by processes this run did not start shows up as "other".
Results go to bench/results/scale-<UTC time>.json; markdown tables go to stdout.

    .venv/bin/python bench/scale.py [--quick] [--rounds N] [--duration S] [--pin] [--pool-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test suite's PostgreSQL and server helpers live in tests/

from tests.postgres import PostgresServer  # noqa: E402 -- importable only after the path insert
from tests.servers import Server, spawn_keyturn, stop, wait_ready  # noqa: E402 -- importable only after the path insert

from keyturn.core.masterkey import MasterKey  # noqa: E402
from keyturn.core.refresh import RefreshTokenCodec  # noqa: E402

LOAD = Path(__file__).with_name("load.mjs")
RESULTS = Path(__file__).with_name("results")
PASSWORD = "correct horse battery staple"
ISSUER = "https://auth.bench.invalid"
USERS = 64
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Chain:
    """One virtual user's session and its newest refresh token."""

    username: str
    session_id: str
    token: str


@dataclass
class Instance:
    name: str
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.server.proc is not None
        return self.server.proc


# processes and CPU time


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds of the process and of its reaped children)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        table[int(entry.name)] = (int(rest[1]), sum(int(v) for v in rest[11:15]) / TICK)
    return table


def tree_cpu(table: dict[int, tuple[int, float]], root: int) -> float:
    """CPU seconds of ``root`` and all its descendants, living or exited (an exited child's time
    moves into its parent's cutime/cstime, so backends that come and go are not lost)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo.extend(children.get(pid, []))
    return total


def machine_ticks() -> dict[str, float]:
    """Whole-machine CPU seconds by kind, from the first line of /proc/stat."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    values = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    return {n: int(v) / TICK for n, v in zip(names, values, strict=True)}


def cpu_snapshot(groups: dict[str, int]) -> dict[str, Any]:
    table = proc_table()
    return {"groups": {name: tree_cpu(table, pid) for name, pid in groups.items()}, "machine": machine_ticks()}


def cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per process group between two snapshots, and the whole machine's use in cores.

    ``other_cores`` is CPU not charged to this run's processes: other users of a shared machine,
    kernel threads, interrupts. ``steal_cores`` is time the hypervisor gave to other guests."""
    seconds = after["t"] - before["t"]
    groups = {k: round(after["groups"][k] - before["groups"][k], 3) for k in before["groups"]}
    machine = {k: after["machine"][k] - before["machine"][k] for k in before["machine"]}
    busy = sum(machine.values()) - machine["idle"] - machine["iowait"] - machine["steal"]
    return {
        "window_s": round(seconds, 3),
        "process_cpu_s": groups,
        "machine_busy_cores": round(busy / seconds, 2),
        "other_cores": round(max(0.0, busy - sum(groups.values())) / seconds, 2),
        "machine_iowait_cores": round(machine["iowait"] / seconds, 2),
        "machine_steal_cores": round(machine["steal"] / seconds, 2),
    }


def busy_cores(seconds: float = 1.0) -> float:
    before = machine_ticks()
    time.sleep(seconds)
    after = machine_ticks()
    idle = {"idle", "iowait", "steal"}
    return sum(after[k] - before[k] for k in after if k not in idle) / seconds


def wait_for_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait (at most ``limit`` seconds) until the machine is nearly idle; return the busy cores
    last seen. On a shared machine other people's test runs compete for the same two cores."""
    deadline = time.monotonic() + limit
    busy = busy_cores()
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_cores()
    return round(busy, 2)


def allowed_cpus(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


# servers


def start_instance(name: str, database_url: str, args: argparse.Namespace, workdir: Path, cpus: str | None) -> Instance:
    cwd = workdir / name
    cwd.mkdir()
    server = spawn_keyturn(
        cwd,
        own_issuer=False,
        launcher=["taskset", "-c", cpus] if cpus else [],
        database_url=database_url,
        secret=args.secret,
        issuer=ISSUER,
        rate_limit_enabled="false",
        metrics_token=args.secret[::-1],  # metrics on, as a scraped deployment runs (needs a token without --dev)
        log_level="warning",  # access logging would dominate the profile
        prune_interval="0",
        db_pool_size=str(args.pool_size),
        db_max_overflow=str(args.max_overflow),
    )
    assert server.proc is not None
    wait_ready(server.url, server.proc, server.log, timeout=60)
    return Instance(name, server)


def stop_instance(instance: Instance) -> None:
    if instance.server.proc is not None and instance.server.proc.poll() is None:
        stop(instance.server)


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.data / "postmaster.pid").read_text().splitlines()[0])


# seeding and verification


async def _sign_in(client: httpx.AsyncClient, base: str, username: str, gate: asyncio.Semaphore) -> Chain:
    creds = {"username": username, "password": PASSWORD}
    async with gate:
        r = await client.post(f"{base}/v1/auth/register", json=creds)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"register {username}: {r.status_code} {r.text}")
        r = await client.post(f"{base}/v1/auth/login", json=creds)
        r.raise_for_status()
    body = r.json()
    return Chain(username, str(uuid.UUID(body["session_id"])), body["refresh_token"])


async def _seed(bases: list[str], usernames: list[str]) -> list[Chain]:
    gate = asyncio.Semaphore(8)  # two argon2 hashes each: more in flight only queues them
    async with httpx.AsyncClient(timeout=60) as client:
        calls = [_sign_in(client, bases[i % len(bases)], u, gate) for i, u in enumerate(usernames)]
        return list(await asyncio.gather(*calls))


def seed(bases: list[str], usernames: list[str]) -> list[Chain]:
    """Register (if new) and log in each user concurrently: one fresh session per user."""
    return asyncio.run(_seed(bases, usernames))


def token_generation(secret: str, token: str) -> tuple[str, int]:
    """The session and generation a refresh token names (checked with the deployment's secret)."""
    decoded = RefreshTokenCodec.from_master(MasterKey(secret)).decode(token)
    return str(decoded.session_id), decoded.generation


class Generations:
    """Reads every session's generation from the database under test."""

    def __init__(self, pg: PostgresServer | None = None, database: str = "", sqlite_path: Path | None = None) -> None:
        self.pg, self.database, self.sqlite_path = pg, database, sqlite_path

    def read(self) -> dict[str, int]:
        if self.pg is not None:
            rows = self.pg.execute("SELECT id::text, generation FROM sessions", self.database)
        else:
            assert self.sqlite_path is not None
            with sqlite3.connect(self.sqlite_path, timeout=10) as conn:
                rows = conn.execute("SELECT id, generation FROM sessions").fetchall()
        return {str(uuid.UUID(str(sid))): int(gen) for sid, gen in rows}


def verify(
    chains: list[Chain], before: dict[str, int], after: dict[str, int], load: dict[str, Any], secret: str
) -> dict[str, Any]:
    """Compare each session's generation step with the 200s its virtual user counted."""
    problems = []
    for chain, counted in zip(chains, load["chains"], strict=False):
        moved = after[chain.session_id] - before[chain.session_id]
        if moved != counted["ok"]:
            problems.append(f"{chain.username}: generation moved {moved}, load generator counted {counted['ok']}")
        if counted["stopped"] is None:
            session, generation = token_generation(secret, chain.token)
            if (session, generation) != (chain.session_id, after[chain.session_id]):
                problems.append(f"{chain.username}: newest token names generation {generation}")
        else:
            problems.append(f"{chain.username}: chain stopped: {counted['stopped']}")
    ok_total = sum(c["ok"] for c in load["chains"])
    moved_total = sum(after[c.session_id] - before[c.session_id] for c in chains[: load["concurrency"]])
    if load["non_2xx"] or load["transport_errors"]:
        problems.append(f"non-2xx {load['non_2xx']}, transport errors {load['transport_errors']}")
    return {"ok": not problems, "total_200": ok_total, "total_generations": moved_total, "problems": problems[:20]}


# PostgreSQL counters


def pg_counters(pg: PostgresServer, database: str) -> dict[str, float]:
    (commits, sessions), *_ = pg.execute(
        "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = current_database()", database
    )
    (syncs, sync_ms, wal_bytes), *_ = pg.execute("SELECT wal_sync, wal_sync_time, wal_bytes FROM pg_stat_wal")
    return {
        "xact_commit": commits,
        "backends_opened": sessions,
        "wal_sync": syncs,
        "wal_sync_ms": float(sync_ms),
        "wal_bytes": float(wal_bytes),
    }


# About how many connections this script opens between two pg_counters() snapshots (the rest of
# the first, the generations read, the second); backends report the count lazily, so it is ±3.
_OWN_CONNECTIONS = 3


def pg_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {k: after[k] - before[k] for k in before}
    delta["backends_opened"] = max(0, delta["backends_opened"] - _OWN_CONNECTIONS)
    return delta


# one phase


@dataclass
class Phase:
    round: int
    setup: str
    instances: list[Instance]
    concurrency: int

    @property
    def label(self) -> str:
        return f"r{self.round} {self.setup} c{self.concurrency}"


def _wait_markers(proc: subprocess.Popen[bytes], groups: dict[str, int], deadline: float) -> list[dict[str, Any]]:
    """Sample CPU when the load generator says its measured window starts and ends."""
    assert proc.stderr is not None
    snapshots, buffer, stderr = [], b"", b""
    while len(snapshots) < 2 and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        stderr += chunk
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip() in (b"measure-start", b"measure-end"):
                snapshots.append(cpu_snapshot(groups) | {"t": time.monotonic()})
    if len(snapshots) < 2:
        proc.kill()
        raise RuntimeError(f"load generator ended early:\n{stderr.decode(errors='replace')}")
    return snapshots


def run_load(
    phase: Phase, chains: list[Chain], groups: dict[str, int], args: argparse.Namespace, tmp: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run of load.mjs; the chains take the newest tokens it ends with."""
    tokens_in, tokens_out, out = tmp / "tokens-in.txt", tmp / "tokens-out.txt", tmp / "load-out.json"
    tokens_in.write_text("".join(c.token + "\n" for c in chains[: phase.concurrency]))
    config = {
        "targets": [i.url for i in phase.instances],
        "tokens_file": str(tokens_in),
        "tokens_out": str(tokens_out),
        "concurrency": phase.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
    }
    (tmp / "load.json").write_text(json.dumps(config))
    with out.open("wb") as stdout:
        # A fixed argv of our own script: no shell, no untrusted input.
        proc = subprocess.Popen([args.node, str(LOAD), str(tmp / "load.json")], stdout=stdout, stderr=subprocess.PIPE)
    deadline = time.monotonic() + args.warmup + args.duration + 30
    try:
        start, end = _wait_markers(proc, groups | {"node": proc.pid}, deadline)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode})")
    for chain, token in zip(chains, tokens_out.read_text().split(), strict=False):
        chain.token = token
    return json.loads(out.read_text()), cpu_delta(start, end)


def run_phase(
    phase: Phase, chains: list[Chain], db: Generations, pg: PostgresServer | None, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """Drive one phase, check every chain against the database, and renew chains that broke."""
    before = db.read()
    counters = pg_counters(pg, "keyturn") if pg else None
    load, cpu = run_load(phase, chains, args.groups, args, tmp)
    after = db.read()
    check = verify(chains, before, after, load, args.secret)
    stats = None
    if pg is not None and counters is not None:
        time.sleep(1.1)  # backends flush their statistics at most once a second
        stats = pg_delta(counters, pg_counters(pg, "keyturn")) | {"refreshes": check["total_200"]}
    stopped = [c for c, s in zip(chains, load["chains"], strict=False) if s["stopped"]]
    if stopped:  # their tokens may be stale: give those virtual users fresh sessions
        fresh = {c.username: c for c in seed([phase.instances[0].url], [c.username for c in stopped])}
        for chain in stopped:
            chain.session_id, chain.token = fresh[chain.username].session_id, fresh[chain.username].token
    load.pop("chains")
    return {
        "round": phase.round,
        "setup": phase.setup,
        "concurrency": phase.concurrency,
        "load": load,
        "cpu": cpu,
        "postgres": stats,
        "verified": check,
    }


# report

GROUPS = ["keyturn-a", "keyturn-b", "keyturn-sqlite", "postgres", "node"]


def aggregate(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setup, connections): sums over rounds; percentiles are medians over rounds."""
    rows = []
    keys = sorted({(p["setup"], p["concurrency"]) for p in phases})
    for setup, conns in keys:
        group = [p for p in phases if (p["setup"], p["concurrency"]) == (setup, conns)]
        seconds = sum(p["cpu"]["window_s"] for p in group)
        requests = sum(p["load"]["requests"] for p in group)
        cpu = {g: sum(p["cpu"]["process_cpu_s"].get(g, 0.0) for p in group) for g in GROUPS}
        keyturn_s = sum(v for g, v in cpu.items() if g.startswith("keyturn"))
        rows.append({
            "setup": setup,
            "connections": conns,
            "rounds": len(group),
            "requests": requests,
            "rps": round(sum(p["load"]["rps"] for p in group) / len(group), 1),
            "rps_by_round": [p["load"]["rps"] for p in group],
            "p50_ms": statistics.median(p["load"]["latency_ms"]["p50"] for p in group),
            "p99_ms": statistics.median(p["load"]["latency_ms"]["p99"] for p in group),
            "non_2xx": sum(sum(p["load"]["non_2xx"].values()) for p in group),
            "transport_errors": sum(sum(p["load"]["transport_errors"].values()) for p in group),
            "stale_socket_retries": sum(p["load"]["stale_socket_retries"] for p in group),
            "cores": {g: round(v / seconds, 2) for g, v in cpu.items()},
            "our_cores": round(sum(cpu.values()) / seconds, 2),
            "other_cores": _weighted(group, "other_cores", seconds),
            "steal_cores": _weighted(group, "machine_steal_cores", seconds),
            "keyturn_cpu_ms_per_refresh": round(keyturn_s / max(requests, 1) * 1000, 2),
            "postgres_cpu_ms_per_refresh": round(cpu["postgres"] / max(requests, 1) * 1000, 2),
            "node_cpu_ms_per_refresh": round(cpu["node"] / max(requests, 1) * 1000, 2),
            "verified": all(p["verified"]["ok"] for p in group),
            "postgres": _pg_summary([p["postgres"] for p in group if p["postgres"]]),
        })  # fmt: skip
    return rows


def _weighted(group: list[dict[str, Any]], key: str, seconds: float) -> float:
    return round(sum(p["cpu"][key] * p["cpu"]["window_s"] for p in group) / seconds, 2)


def _pg_summary(stats: list[dict[str, float]]) -> dict[str, float] | None:
    if not stats:
        return None
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    refreshes = max(total["refreshes"], 1)
    return {
        "commits_per_refresh": round(total["xact_commit"] / refreshes, 2),
        "refreshes_per_wal_fsync": round(refreshes / max(total["wal_sync"], 1), 2),
        "mean_wal_fsync_ms": round(total["wal_sync_ms"] / max(total["wal_sync"], 1), 3),
        "wal_bytes_per_refresh": round(total["wal_bytes"] / refreshes),
        "backends_opened": int(total["backends_opened"]),
    }


QUIET = 0.25  # cores of foreign CPU (other + steal) below which a phase counts as undisturbed


def _foreign(phase: dict[str, Any]) -> float:
    return phase["cpu"]["other_cores"] + phase["cpu"]["machine_steal_cores"]


def ratios(rows: list[dict[str, Any]], phases: list[dict[str, Any]]) -> dict[str, Any]:
    """2 instances ÷ 1 instance at each connection count.

    ``ratio``: of the mean req/s over all rounds. ``by_round``: each round's ratio with the most
    foreign CPU either phase of it saw. ``quiet_ratio``: over the rounds where both phases saw
    less than QUIET cores of it. ``idle_model``: the req/s an otherwise idle machine could reach,
    from the measured CPU per refresh, with one keyturn process using at most one core."""
    by = {(r["setup"], r["connections"]): r for r in rows}
    out = {}
    for (setup, conns), one in by.items():
        two = by.get(("PG, 2 instances", conns))
        if setup != "PG, 1 instance" or two is None:
            continue
        pairs = []
        for n in sorted({p["round"] for p in phases}):
            a, b = (next(p for p in phases if (p["setup"], p["concurrency"], p["round"]) == (s, conns, n))
                    for s in ("PG, 1 instance", "PG, 2 instances"))  # fmt: skip
            pairs.append((round(b["load"]["rps"] / a["load"]["rps"], 2), round(max(_foreign(a), _foreign(b)), 2)))
        quiet = [r for r, f in pairs if f < QUIET]
        out[f"c{conns}"] = {
            "ratio": round(two["rps"] / one["rps"], 2),
            "by_round": [{"ratio": r, "foreign_cores": f} for r, f in pairs],
            "quiet_ratio": round(statistics.mean(quiet), 2) if quiet else None,
            "quiet_rounds": len(quiet),
            "idle_model": _idle_model(one, two),
        }
    return out


def _idle_model(one: dict[str, Any], two: dict[str, Any]) -> dict[str, float]:
    cores = os.cpu_count() or 1

    def ceiling(row: dict[str, Any], instances: int) -> float:
        keyturn = row["keyturn_cpu_ms_per_refresh"]
        total = keyturn + row["postgres_cpu_ms_per_refresh"] + row["node_cpu_ms_per_refresh"]
        return min(instances * 1000 / keyturn, cores * 1000 / total)

    rps1, rps2 = ceiling(one, 1), ceiling(two, 2)
    return {"rps_1": round(rps1), "rps_2": round(rps2), "ratio": round(rps2 / rps1, 2)}


def markdown(rows: list[dict[str, Any]], duration: float) -> str:
    head = ["setup", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "cores: kt-a", "kt-b", "kt-sqlite"]
    head += ["postgres", "node", "ours", "other", "steal", "keyturn CPU ms/refresh", "pg CPU ms/refresh", "verified"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cores = [f"{r['cores'][g]:.2f}" for g in GROUPS]
        cells = [r["setup"], str(r["connections"]), f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}"]
        cells += [str(r["non_2xx"] + r["transport_errors"]), *cores]
        cells += [f"{r[k]:.2f}" for k in ("our_cores", "other_cores", "steal_cores")]
        cells += [f"{r['keyturn_cpu_ms_per_refresh']:.2f}", f"{r['postgres_cpu_ms_per_refresh']:.2f}"]
        cells.append("yes" if r["verified"] else "NO")
        lines.append("| " + " | ".join(cells) + " |")
    rounds = rows[0]["rounds"] if rows else 0
    retries = sum(r["stale_socket_retries"] for r in rows)
    if retries:
        lines.append(f"\nretried on a fresh socket after the server closed an idle one: {retries} request(s)")
    lines.append(
        f"\n{rounds} round(s) of {duration:g} s per row; cores = CPU seconds ÷ measured seconds (the machine has "
        f"{os.cpu_count()}); other = CPU not charged to this run's processes (other users, kernel, interrupts); "
        "steal = CPU the hypervisor gave elsewhere."
    )
    return "\n".join(lines)


def pg_markdown(rows: list[dict[str, Any]]) -> str:
    head = ["setup", "conns", "commits/refresh", "refreshes/WAL fsync", "mean fsync ms", "WAL B/refresh"]
    head.append("backends opened")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r["postgres"]
        if p is not None:
            cells = [r["setup"], str(r["connections"]), *(str(v) for v in p.values())]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# orchestration


def _version(binary: str) -> str:
    # A local binary's --version: no shell, no untrusted input.
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()


def _versions(pg: PostgresServer, node: str) -> dict[str, str]:
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "?")  # fmt: skip
    return {
        "python": platform.python_version(),
        "node": _version(node),
        "postgres": _version(str(pg.bin / "postgres")),
        "kernel": platform.release(),
        "cpus": f"{os.cpu_count()} x {cpu_model}",
    }


def _phases(pg_a: Instance, pg_b: Instance, sqlite: Instance | None, args: argparse.Namespace) -> Iterator[Phase]:
    one = ("PG, 1 instance", [pg_a])
    two = ("PG, 2 instances", [pg_a, pg_b])
    step = 0
    for n in range(1, args.rounds + 1):
        for c in args.levels:
            # Alternate which setup goes first (ABBA) so drift and background load favour neither.
            for setup, targets in (one, two) if step % 2 == 0 else (two, one):
                yield Phase(n, setup, targets, c)
            step += 1
    if sqlite is not None:
        for c in args.levels:
            yield Phase(1, "SQLite, 1 instance", [sqlite], c)


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expire(*_: object) -> None:
        raise TimeoutError(f"the benchmark passed its {seconds} s bound")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _start_all(args: argparse.Namespace, pg: PostgresServer, tmp: Path, instances: list[Instance]) -> None:
    pg.start()
    pg.execute("ALTER SYSTEM SET track_wal_io_timing = on")
    pg.execute("SELECT pg_reload_conf()")
    url = pg.create_database("keyturn")
    pins = iter(["0", "1", "0"] if args.pin else [None] * 3)
    # One at a time: the first migrates the schema and makes the first signing key.
    for name in ("keyturn-a", "keyturn-b"):
        instances.append(start_instance(name, url, args, tmp, next(pins)))
    if args.sqlite:
        instances.append(start_instance("keyturn-sqlite", f"sqlite+aiosqlite:///{tmp / 'keyturn.db'}", args, tmp, None))


def main(args: argparse.Namespace) -> None:
    quiet = wait_for_quiet(args.quiet_wait)
    usernames = [f"bench-{i:03d}" for i in range(USERS)]
    tmp = Path(tempfile.mkdtemp(prefix="keyturn-scale-"))
    phases: list[dict[str, Any]] = []
    instances: list[Instance] = []
    pg = PostgresServer(durable=True)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        stack.callback(pg.destroy)
        stack.callback(lambda: [stop_instance(i) for i in instances])
        _start_all(args, pg, tmp, instances)
        by_name = {i.name: i for i in instances}
        pg_a, pg_b, sqlite = by_name["keyturn-a"], by_name["keyturn-b"], by_name.get("keyturn-sqlite")
        started = time.monotonic()
        pg_chains = seed([pg_a.url, pg_b.url], usernames)
        sqlite_chains = seed([sqlite.url], usernames) if sqlite else []
        seeding_s = time.monotonic() - started
        args.groups = {i.name: i.proc.pid for i in instances} | {"postgres": postmaster_pid(pg)}
        pg_db, sqlite_db = Generations(pg, "keyturn"), Generations(sqlite_path=tmp / "keyturn.db")
        for phase in _phases(pg_a, pg_b, sqlite, args):
            on_pg = phase.setup.startswith("PG")
            chains, db = (pg_chains, pg_db) if on_pg else (sqlite_chains, sqlite_db)
            result = run_phase(phase, chains, db, pg if on_pg else None, args, tmp)
            phases.append(result)
            load, cpu = result["load"], result["cpu"]
            print(
                f"{phase.label:<28} {load['rps']:7.0f} req/s  p50 {load['latency_ms']['p50']:7.1f} ms  "
                f"busy {cpu['machine_busy_cores']:.2f} cores (other {cpu['other_cores']:.2f}, "
                f"steal {cpu['machine_steal_cores']:.2f})  "
                f"verified {result['verified']['ok']}",
                file=sys.stderr,
            )
        pinning = {name: allowed_cpus(pid) for name, pid in args.groups.items()}
        meta = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "levels": args.levels,
            "users": USERS,
            "seeding_s": round(seeding_s, 1),
            "busy_cores_before_start": quiet,
            "routing": "round-robin per request; chains continue across phases",
            "cpus_allowed": pinning | {"node": allowed_cpus(os.getpid())},  # node inherits ours
            "keyturn_settings": {"db_pool_size": args.pool_size, "db_max_overflow": args.max_overflow},
            "postgres": {"fsync": "on", "synchronous_commit": "on", "max_connections": pg.max_connections},
            "versions": _versions(pg, args.node),
        }
    rows = aggregate(phases)
    report = {"meta": meta, "ratio_2_over_1": ratios(rows, phases), "summary": rows, "phases": phases}
    path = args.out or RESULTS / f"scale-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows, args.duration))
    for level, r in report["ratio_2_over_1"].items():
        rounds = ", ".join(f"{x['ratio']} (foreign {x['foreign_cores']})" for x in r["by_round"])
        model = r["idle_model"]
        print(
            f"\nratio 2 instances ÷ 1 instance at {level}: {r['ratio']}; by round: {rounds}; "
            f"quiet rounds ({r['quiet_rounds']}): {r['quiet_ratio']}; idle-machine model from CPU per refresh: "
            f"{model['rps_1']} -> {model['rps_2']} req/s = {model['ratio']}",
            end="",
        )
    print("\n\n" + pg_markdown(rows))
    print(f"\nmachine busy before start: {quiet} cores; results: {path}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of 4 s phases, no SQLite (under a minute)")
    parser.add_argument("--rounds", type=int, help="rounds of the PostgreSQL phases (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per phase (default 8, quick 4)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per phase (default 1.5, quick 1)")
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 64], help="connections (at most 64)")
    parser.add_argument(
        "--sqlite", action=argparse.BooleanOptionalAction, help="SQLite reference (default: unless quick)"
    )
    parser.add_argument("--pin", action="store_true", help="taskset keyturn-a to CPU 0, keyturn-b to CPU 1")
    parser.add_argument("--pool-size", type=int, default=10, help="KEYTURN_DB_POOL_SIZE (default 10)")
    parser.add_argument("--max-overflow", type=int, default=10, help="KEYTURN_DB_MAX_OVERFLOW (default 10)")
    parser.add_argument(
        "--quiet-wait", type=float, help="wait up to this long for an idle machine (default 30, quick 10)"
    )
    parser.add_argument("--out", type=Path, help="where to write the JSON (default bench/results/scale-<time>.json)")
    parser.add_argument("--node", default=shutil.which("node") or "node", help="the Node.js binary")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (4.0 if args.quick else 8.0)
    args.warmup = args.warmup or (1.0 if args.quick else 1.5)
    args.sqlite = (not args.quick) if args.sqlite is None else args.sqlite
    args.quiet_wait = (10.0 if args.quick else 30.0) if args.quiet_wait is None else args.quiet_wait
    args.secret = secrets.token_urlsafe(48)
    if max(args.levels) > USERS:
        parser.error(f"at most {USERS} connections: one seeded session each")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    count = 2 * len(arguments.levels) * arguments.rounds + (len(arguments.levels) if arguments.sqlite else 0)
    with deadline(int(arguments.quiet_wait + count * (arguments.duration + arguments.warmup + 6) + 90)):
        main(arguments)
