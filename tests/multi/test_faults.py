"""Integration tests of failures around real keyturn processes on loopback, on a PostgreSQL server
of this module's own: the database stopped and started under traffic, an instance SIGKILLed
with refreshes in flight, an instance SIGTERMed with logins in flight.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD, bearer
from tests.multi.fleet import assert_no_token_logged, at_once, fleet_settings, generation, sign_in
from tests.postgres import PostgresServer, own_server
from tests.servers import Server, keyturn_servers

pytestmark = pytest.mark.server

REQUEST_BOUND = 3.0  # seconds: no request may take longer, outage or not (KEYTURN_DB_TIMEOUT is 1s)
OUTAGE = 2.0  # seconds at least without a database
RECOVERY_BOUND = 15.0  # seconds after PostgreSQL is back for every client to be served again
CLIENTS = 4
OUTAGE_DB = "outage"
LOGINS = 16  # argon2 at production cost: together they take a few hundred ms on 2 cores
_databases = itertools.count(1)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, which its tests stop and start."""
    with own_server() as server:
        yield server


@pytest.fixture
def database(pg: PostgresServer) -> Iterator[str]:
    """The name of a new, empty database (keyturn migrates it on start)."""
    name = f"faults_{next(_databases)}"
    pg.create_database(name)
    try:
        yield name
    finally:
        pg.drop_database(name)


# --- PostgreSQL stopped under traffic -----------------------------------------------------------


@dataclass
class Call:
    """One request a client made, as the client saw it."""

    kind: str
    started: float
    seconds: float
    status: int | None  # None: no HTTP answer at all
    body: Any = None
    retry_after: str | None = None


@dataclass
class Client:
    """A user who keeps refreshing (always with the newest token it holds) and calling /me."""

    url: str
    secret: str
    tokens: dict[str, Any]
    calls: list[Call] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_BOUND * 3) as http:
            while not stop.is_set():
                response = self._call(http, "refresh", "POST", "/v1/auth/refresh", json=self.refresh_body)
                if response is not None and response.status_code == 200:
                    self.tokens = response.json()
                self._call(http, "me", "GET", "/v1/auth/me", headers=bearer(self.tokens))
                stop.wait(0.05)

    @property
    def refresh_body(self) -> dict[str, str]:
        return {"refresh_token": self.tokens["refresh_token"]}

    @property
    def held(self) -> int:
        """The generation of the newest refresh token this client was given."""
        return generation(self.secret, self.tokens["refresh_token"])

    def _call(self, http: httpx.Client, kind: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.calls.append(Call(kind, started, time.monotonic() - started, None, repr(exc)))
            return None
        body = response.json() if response.headers.get("content-type") == "application/json" else response.text
        retry_after = response.headers.get("retry-after")
        self.calls.append(Call(kind, started, time.monotonic() - started, response.status_code, body, retry_after))
        return response

    def served_since(self, moment: float, status: int, kind: str = "refresh") -> bool:
        return any(c.kind == kind and c.status == status and c.started > moment for c in list(self.calls))


def wait_until(condition: Callable[[], bool], bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"not within {bound}s: {what}"
        time.sleep(0.1)


def refresh_on(server: Server, tokens: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=30)


def readyz(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=REQUEST_BOUND)


@pytest.fixture(scope="module")
def fleet_of_one(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """One instance with a 1 s database timeout; the grace window outlasts an outage (a client whose
    answer was lost retries the same token once the database is back)."""
    url = pg.create_database(OUTAGE_DB)
    settings = fleet_settings(url, db_timeout="1s", reuse_grace="1m")
    with keyturn_servers([tmp_path_factory.mktemp("outage")], **settings) as (server,):
        yield server, settings["secret"]
    assert_no_token_logged([server])


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_outage_answers_503_and_recovers_without_losing_a_token(
    mode: str, fleet_of_one: tuple[Server, str], pg: PostgresServer
) -> None:
    """PostgreSQL stopped under traffic: 200 or a quick 503 only, recovery on its own, no 200 the database lost."""
    server, secret = fleet_of_one
    clients = [Client(server.url, secret, sign_in(server.url, f"{mode}-{i}")) for i in range(CLIENTS)]
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    try:
        begun = time.monotonic()
        wait_until(lambda: all(c.served_since(begun, 200) for c in clients), 10, "traffic flows")
        assert readyz(server).status_code == 200

        pg.stop(mode)
        stopped = time.monotonic()
        wait_until(lambda: all(c.served_since(stopped, 503) for c in clients), 10, "every client sees a 503")
        down = readyz(server)
        assert (down.status_code, down.json()["error"]) == (503, "temporarily_unavailable")
        assert down.headers["retry-after"]
        time.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))

        pg.start()
        restarted = time.monotonic()
        wait_until(lambda: all(c.served_since(restarted, 200) for c in clients), RECOVERY_BOUND, "clients recover")
        wait_until(lambda: readyz(server).status_code == 200, RECOVERY_BOUND, "/readyz says ready")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=REQUEST_BOUND * 4)
        if not pg.running:
            pg.start()
    assert not any(t.is_alive() for t in threads)

    calls = [c for client in clients for c in client.calls]
    assert {c.status for c in calls} <= {200, 503}, [c for c in calls if c.status not in (200, 503)][:3]
    assert max(c.seconds for c in calls) < REQUEST_BOUND
    refused = [c for c in calls if c.status == 503]
    assert all(c.body["error"] == "temporarily_unavailable" and c.retry_after for c in refused)

    stored = {str(r[0]): r[1:] for r in pg.execute("SELECT id, generation, revoked_at FROM sessions", OUTAGE_DB)}
    for client in clients:
        held = client.held
        gen, revoked_at = stored[client.tokens["session_id"]]
        assert revoked_at is None
        # Every 200 was committed first (gen >= held); a 503 may hide one committed rotation whose
        # answer was lost (gen == held + 1), never more: the client only ever sends its newest token.
        assert held <= gen <= held + 1, (held, gen)
        again = httpx.post(f"{server.url}/v1/auth/refresh", json=client.refresh_body, timeout=REQUEST_BOUND)
        assert again.status_code == 200, again.text
        assert generation(secret, again.json()["refresh_token"]) == held + 1


# --- An instance killed or stopped while requests are in flight -----------------------------------


def test_refreshes_cut_off_by_a_killed_instance_complete_on_another(
    database: str, pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGKILL A mid-refresh: each old token retried on B within the grace gets 200, A's answer where it gave one."""
    # A small pool queues the refreshes inside A, so that the kill finds many in flight; the reuse
    # grace window is the default 10 s.
    settings = fleet_settings(pg.url(database), db_pool_size="6", db_max_overflow="0", db_timeout="10s")
    cwds = [tmp_path_factory.mktemp("killed"), tmp_path_factory.mktemp("survivor")]
    with keyturn_servers(cwds, **settings) as (a, b):
        assert a.proc is not None
        sign_in(b.url, "many")
        sessions = at_once([partial(sign_in, s.url, "many", register=False) for s in [a, b] * 12])
        one_done = threading.Event()

        def refresh_on_a(http: httpx.Client, tokens: dict[str, Any]) -> httpx.Response | None:
            try:
                return http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            except httpx.TransportError:
                return None
            finally:
                one_done.set()

        with ExitStack() as stack, ThreadPoolExecutor(1) as background:
            connections = [stack.enter_context(httpx.Client(base_url=a.url, timeout=30)) for _ in sessions]
            for http in connections:  # connected beforehand, so that the refreshes reach A together
                assert http.get("/healthz").status_code == 200
            calls = [partial(refresh_on_a, http, t) for http, t in zip(connections, sessions, strict=True)]
            in_flight = background.submit(at_once, calls)
            assert one_done.wait(30)
            os.kill(a.proc.pid, signal.SIGKILL)
            answers = in_flight.result(timeout=30)
        assert a.proc.wait(10) == -signal.SIGKILL
        answered = [r is not None for r in answers]
        assert any(answered), "A answered none before it was killed"
        assert not all(answered), "A answered every refresh before it was killed"

        retried = at_once([partial(refresh_on, b, t) for t in sessions])
    assert [r.status_code for r in retried] == [200] * len(sessions), [r.text for r in retried if r.status_code != 200]
    for from_a, from_b in zip(answers, retried, strict=True):
        if from_a is not None:
            assert from_a.status_code == 200
            assert from_b.json()["refresh_token"] == from_a.json()["refresh_token"]
    stored = {str(r[0]): r[1:] for r in pg.execute("SELECT id, generation, revoked_at FROM sessions", database)}
    assert [stored[t["session_id"]] for t in sessions] == [(1, None)] * len(sessions)


def test_sigterm_lets_in_flight_logins_finish(
    database: str, pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM with 16 logins in flight: all answer 200, then the process shuts down cleanly."""
    settings = fleet_settings(pg.url(database))
    with keyturn_servers([tmp_path_factory.mktemp("terminated")], **settings) as (server,):
        assert server.proc is not None
        sign_in(server.url, "patient")
        sent = threading.Semaphore(0)

        def trace(event: str, _info: object) -> None:
            if event == "http11.send_request_body.complete":
                sent.release()

        def login() -> tuple[int, float]:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                creds = {"username": "patient", "password": PASSWORD}
                response = http.post("/v1/auth/login", json=creds, extensions={"trace": trace})
                return response.status_code, time.monotonic()

        with ThreadPoolExecutor(1) as background:
            logins = background.submit(at_once, [login] * LOGINS)
            for _ in range(LOGINS):
                assert sent.acquire(timeout=30)
            time.sleep(0.1)  # the server has read them: each is a request in progress, not a connection
            terminated = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            results = logins.result(timeout=30)
        code = server.proc.wait(timeout=20)
    assert [status for status, _ in results] == [200] * LOGINS
    assert any(done > terminated for _, done in results), "every login finished before the SIGTERM"
    log = server.log.read_text()
    assert "Application shutdown complete" in log
    assert f"Finished server process [{server.proc.pid}]" in log
    # uvicorn shuts down gracefully, then re-raises the signal it caught with the default handler
    # restored (uvicorn >= 0.29), so a clean stop on SIGTERM ends "killed by SIGTERM".
    assert code in (0, -signal.SIGTERM)
