"""The revocation feed, measured in one run: how soon a logout reaches a resource server that
follows the feed, and what following it costs a verification.

- propagation: from the moment a logout's answer arrives (the session ended in a transaction
  that committed before it) to the first refusal by a ``Verifier`` following the feed in this
  process, checked by a thread every half millisecond; over N logouts sent at random moments,
  whatever the verifier is doing (so they fall anywhere in the server's
  ``KEYTURN_REVOCATION_POLL`` interval), with one keyturn instance on SQLite, one on PostgreSQL,
  and three on one PostgreSQL database (logout on the first, the verifier following the second:
  the commit reaches it through the database);
- throughput: the cached-verification fast path ``Verifier.verify(token)`` in one thread, with
  the feed on (following a real server, a few hundred ended sessions in memory: the logouts, and
  a user with ``ENDED`` sessions disabled by its operator) and off (``revocations=False``), their
  batches interleaved as in ``bench/inprocess.py``.

The servers are not pinned to a core: three instances share the machine's cores with this
process, as they would share a host. ``python -m bench.feed [--quick]`` runs it alone (it starts
its own PostgreSQL, with fsync on as in the rest of the benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from tests.postgres import PostgresServer
from tests.servers import KEYTURN

from bench import growth, inprocess
from bench.overhttp import Chain, Keyturn, keyturn, sign_in
from keyturn.core.errors import SessionEnded
from keyturn.verify import RevocationFeed, Verifier

SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 3))
FLEET_ISSUER = "https://auth.bench-fleet.keyturn.test"  # one issuer for the three instances
CHECK_EVERY = 0.0005  # seconds between two checks of a token waiting to be refused
GAP = 0.1  # seconds at most between two logouts (uniform): they come at any phase of the server's 200 ms poll
MISSED_AFTER = 10.0  # seconds after which a logout not yet refused counts as missed
ENDED = 300  # ended sessions in the following verifier's memory while its throughput is measured


@contextmanager
def deployment(
    backend: str, instances: int, tmp: Path, pg: PostgresServer | None
) -> Iterator[tuple[str, list[Keyturn]]]:
    """``instances`` keyturn servers sharing one new database (and, for more than one, an issuer
    and a secret); yields the issuer and the servers, started one after the other."""
    name = f"feed_{backend}_{instances}"
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / f'{name}.db'}"
    else:
        assert pg is not None, "the PostgreSQL setups need a server"
        url = pg.create_database(name)
    secret = secrets.token_urlsafe(48)
    shared = {"issuer": FLEET_ISSUER} if instances > 1 else {}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(keyturn(tmp / f"{name}-{i}", url, secret, cpu=None, **shared)) for i in range(instances)
        ]
        yield FLEET_ISSUER if instances > 1 else servers[0].url, servers


def follower(issuer: str, server: Keyturn) -> Verifier:
    """A resource server's verifier taking its keys and its feed from ``server`` (the fleet's
    issuer is a name nobody can reach, so its URLs are given; the feed's settings are the defaults)."""
    feed = RevocationFeed(url=f"{server.url}/v1/revocations")
    return Verifier(issuer, issuer, jwks_url=f"{server.url}/.well-known/jwks.json", revocations=feed)


class Watch:
    """A thread that asks the verifier about every token handed to it, every ``CHECK_EVERY``,
    and records how long after its hand-over each was first refused."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.latencies: list[float] = []
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._refused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-feed-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def ended(self, token: str, answered: float) -> None:
        """``token``'s session ended; the answer that said so arrived at ``answered`` (perf_counter)."""
        with self._lock:
            self._refused.clear()
            self._pending[token] = answered

    def wait_refused(self, timeout: float) -> bool:
        """Wait until every token handed over so far is refused (False: ``timeout`` passed first)."""
        return self._refused.wait(timeout)

    @property
    def missed(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = list(self._pending.items())
            for token, answered in pending:
                try:
                    self.verifier.verify(token)
                except SessionEnded:
                    refused = time.perf_counter()
                    with self._lock:
                        del self._pending[token]
                        self.latencies.append(refused - answered)
                        if not self._pending:
                            self._refused.set()
            time.sleep(CHECK_EVERY)


def propagation(verifier: Verifier, logout_at: Keyturn, chains: list[Chain], rng: random.Random) -> dict[str, Any]:
    """Log ``chains`` out one after another on ``logout_at``, each at a random moment (not waiting
    for the previous one's refusal), and time each one's first refusal."""
    for chain in chains:  # verified once while live: later checks take the cached path
        verifier.verify(chain.access_token)
    with Watch(verifier) as watch, httpx.Client(base_url=logout_at.url, timeout=30) as http:
        for chain in chains:
            time.sleep(rng.uniform(0, GAP))
            response = http.post("/v1/auth/logout", json={"refresh_token": chain.refresh_token})
            answered = time.perf_counter()
            if response.status_code != 204:
                raise RuntimeError(f"logout: {response.status_code} {response.text}")
            watch.ended(chain.access_token, answered)
        watch.wait_refused(MISSED_AFTER)
        missed = watch.missed
    ms = sorted(x * 1000 for x in watch.latencies)
    if not ms:
        raise RuntimeError(f"not one of {len(chains)} logouts was refused within {MISSED_AFTER}s")
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "logouts": len(chains), "missed": missed, "p50_ms": round(cuts[49], 1), "p90_ms": round(cuts[89], 1),
        "p99_ms": round(cuts[98], 1), "max_ms": round(ms[-1], 1), "mean_ms": round(statistics.fmean(ms), 1),
    }  # fmt: skip


def end_many(server: Keyturn, issuer: str, count: int) -> None:
    """Store ``count`` live sessions of one user and end them all at once, as its operator does
    with ``keyturn users disable`` (stored directly: ``count`` logins would take seconds of argon2id)."""
    growth.seed_sessions(server.database_url, count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env |= {"KEYTURN_DATABASE_URL": server.database_url, "KEYTURN_SECRET": server.secret, "KEYTURN_ISSUER": issuer}
    disable = [str(KEYTURN), "users", "disable", "bench-seed"]  # the user growth.seed_sessions stores them for
    subprocess.run(disable, env=env, check=True, capture_output=True, timeout=60)


def throughput(issuer: str, server: Keyturn, on: Verifier, quick: bool) -> dict[str, Any]:
    """Cached ``Verifier.verify`` of a live session's token with the feed followed (``on``) and
    without (a verifier of the same keys, ``revocations=False``), interleaved."""
    token = sign_in(server.url, 1, username="bench-reader")[0].access_token
    off = Verifier(issuer, issuer, jwks_url=f"{server.url}/.well-known/jwks.json", revocations=False)
    deadline = time.monotonic() + MISSED_AFTER
    while (held := _held(on)) < ENDED:  # the disabled user's sessions are on their way
        if time.monotonic() > deadline:
            raise RuntimeError(f"the verifier holds {held} ended sessions, not {ENDED}")
        time.sleep(0.01)
    on.verify(token)
    off.verify(token)
    profile = inprocess.QUICK if quick else inprocess.DEFAULT
    off_s, on_s = inprocess.interleaved(lambda: off.verify(token), lambda: on.verify(token), profile)
    return {
        "path": "in-process, cached", "off_per_s": round(1 / off_s, 1), "on_per_s": round(1 / on_s, 1),
        "ratio": round(off_s / on_s, 3), "ended_sessions": _held(on), "state": _state(on),
    }  # fmt: skip


def _held(verifier: Verifier) -> int:
    status = verifier.status()
    return 0 if status is None else status.ended_sessions


def _state(verifier: Verifier) -> str:
    status = verifier.status()
    return "none" if status is None else status.state


def measure(
    backend: str, instances: int, logouts: int, tmp: Path, pg: PostgresServer | None, *, quick: bool
) -> dict[str, Any]:
    """One setup's propagation row (and, on the first setup, the throughput measured beside it)."""
    rng = random.Random(f"{backend}-{instances}")  # noqa: S311 - the moments of logouts, not a secret
    with deployment(backend, instances, tmp, pg) as (issuer, servers):
        verifier = follower(issuer, servers[min(1, instances - 1)])  # the second instance, if there is one
        try:
            chains = sign_in(servers[0].url, logouts, username="bench-feed")
            row = {"setup": _setup(backend, instances), "backend": backend, "instances": instances}
            row |= propagation(verifier, servers[0], chains, rng)
            if (backend, instances) == SETUPS[0]:
                end_many(servers[0], issuer, ENDED)
                row["throughput"] = throughput(issuer, servers[0], verifier, quick)
            return row
        finally:
            verifier.close()


def _setup(backend: str, instances: int) -> str:
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
    if instances == 1:
        return f"1 instance, {name}"
    return f"{instances} instances, one {name}: logout on the 1st, verifier following the 2nd"


def run(logouts: int, tmp: Path, pg: PostgresServer | None, *, quick: bool = False) -> dict[str, Any]:
    """Every setup's propagation over ``logouts`` logouts, and the verifier's throughput with the
    feed on and off (measured beside the first setup)."""
    started = time.monotonic()
    rows = [measure(b, n, logouts, tmp, pg, quick=quick) for b, n in SETUPS if b == "sqlite" or pg is not None]
    inproc = rows[0].pop("throughput")
    return {"propagation": rows, "throughput": [inproc], "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 logouts per setup instead of 200")
    args = parser.parse_args()
    pg = PostgresServer(durable=True)
    try:
        pg.start()
        with tempfile.TemporaryDirectory(prefix="keyturn-bench-feed-") as tmp:
            print(json.dumps(run(50 if args.quick else 200, Path(tmp), pg, quick=args.quick), indent=2))
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
