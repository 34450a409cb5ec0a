"""Integration tests of the revocation feed across three real keyturn processes on loopback sharing
one real PostgreSQL server of this module's own: a verifier following one instance refuses, within
seconds, the sessions ended on any other; misses none of many ended at once; and loses none when
PostgreSQL restarts under the fleet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import Any

import httpx
import pytest

from keyturn.core.errors import SessionEnded
from keyturn.verify import FeedStatus, RevocationFeed, Verifier
from tests.helpers import bearer
from tests.multi.fleet import ISSUER, assert_no_token_logged, at_once, fleet_settings, sign_in
from tests.postgres import PostgresServer, own_server
from tests.servers import Server, keyturn_servers

pytestmark = pytest.mark.server

INSTANCES = 3
PROPAGATION = 2.0  # seconds from a logout's answer to the first refusal (instances poll the feed every 200 ms)
# Sessions logged out at once. Without the feed's ordering lock (store/_revocations.py) 60 make
# one of the readers skip an entry in nearly every run; 30, in about half.
CROWD = 60
OUTAGE = 1.0  # seconds without PostgreSQL: the instances' feed watchers fail several times
RECOVERY_BOUND = 15.0  # seconds for every instance to answer /readyz again once PostgreSQL is back


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, which its last test restarts."""
    with own_server() as server:
        yield server


@pytest.fixture(scope="module")
def verifiers() -> Iterator[list[Verifier]]:
    """Every verifier the module makes, closed once the fleet has stopped (whose SIGTERM answers
    their held long polls at once, so closing waits for none of them)."""
    made: list[Verifier] = []
    yield made
    for verifier in made:
        verifier.close()


@pytest.fixture(scope="module")
def fleet(
    pg: PostgresServer, verifiers: list[Verifier], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Three instances of one deployment (one issuer, one secret) on one new PostgreSQL database."""
    settings = fleet_settings(pg.create_database("feed"))
    cwds = [tmp_path_factory.mktemp("feed_instance") for _ in range(INSTANCES)]
    with keyturn_servers(cwds, **settings) as servers:
        yield servers
    assert_no_token_logged(servers)


@pytest.fixture
def follow(verifiers: list[Verifier]) -> Callable[[Server], Verifier]:
    """Make a resource server's verifier that takes its keys and its feed from one instance.

    Every instance advertises ``<issuer>/v1/revocations``, and the fleet's issuer is a name no
    test can reach, so the instance's own URLs are given."""

    def make(server: Server) -> Verifier:
        feed = RevocationFeed(url=f"{server.url}/v1/revocations")
        verifier = Verifier(ISSUER, ISSUER, jwks_url=f"{server.url}/.well-known/jwks.json", revocations=feed)
        verifiers.append(verifier)
        return verifier

    return make


def logout(server: Server, tokens: dict[str, Any]) -> None:
    response = httpx.post(f"{server.url}/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, timeout=30)
    assert response.status_code == 204, response.text


def refusal(verifier: Verifier, tokens: dict[str, Any]) -> SessionEnded | None:
    """The verifier's refusal of the session's access token, or None if it still accepts it."""
    try:
        claims = verifier.verify(tokens["access_token"])
    except SessionEnded as exc:
        return exc
    assert claims.sid == tokens["session_id"]
    return None


def refused_within(verifier: Verifier, tokens: dict[str, Any], bound: float) -> None:
    """Ask every few milliseconds until the verifier refuses the session's token (at most ``bound`` seconds)."""
    started = time.monotonic()
    while (exc := refusal(verifier, tokens)) is None:
        assert time.monotonic() - started < bound, f"session {tokens['session_id']} still accepted after {bound}s"
        time.sleep(0.005)
    assert exc.reason == "session_ended"


def health(verifier: Verifier) -> FeedStatus:
    status = verifier.status()
    assert status is not None
    return status


def ready(server: Server) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class FeedReader:
    """A reader that pages through one instance's feed over and over with no wait, the hardest
    reader to keep from skipping an entry: it asks while transactions commit."""

    def __init__(self, server: Server) -> None:
        self.url = f"{server.url}/v1/revocations"
        self.seen: set[str] = set()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FeedReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        cursor: str | None = None
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                response = http.get(self.url, params={} if cursor is None else {"after": cursor})
                if response.status_code != 200:
                    self.error = f"{response.status_code} {response.text}"
                    return
                page = response.json()
                self.seen |= {entry["sid"] for entry in page["entries"]}
                cursor = page["cursor"]


def test_logout_on_one_instance_is_refused_by_a_verifier_following_another(
    fleet: list[Server], follow: Callable[[Server], Verifier]
) -> None:
    """A logout committed on A is refused by a verifier following B's feed within 2 s."""
    a, b, _ = fleet
    verifier = follow(b)
    tokens = sign_in(a.url, "leaver")
    assert refusal(verifier, tokens) is None
    logout(a, tokens)
    refused_within(verifier, tokens, PROPAGATION)
    assert health(verifier).state == "following"


def test_logout_everywhere_on_one_instance_is_refused_by_a_verifier_following_another(
    fleet: list[Server], follow: Callable[[Server], Verifier]
) -> None:
    """Logout-all on C ends the user's sessions from A and B: a verifier following B refuses both within 2 s."""
    a, b, c = fleet
    verifier = follow(b)
    sessions = [sign_in(a.url, "everywhere"), sign_in(b.url, "everywhere", register=False)]
    assert [refusal(verifier, tokens) for tokens in sessions] == [None, None]
    response = httpx.post(f"{c.url}/v1/auth/logout-all", headers=bearer(sessions[0]), timeout=30)
    assert response.status_code == 204, response.text
    started = time.monotonic()
    for tokens in sessions:
        refused_within(verifier, tokens, max(0.0, started + PROPAGATION - time.monotonic()))


def test_logouts_at_once_on_every_instance_are_all_refused(
    fleet: list[Server], follow: Callable[[Server], Verifier]
) -> None:
    """60 logouts at once over A, B and C: a verifier following B, and a reader paging each
    instance without waiting, end up with every one of them (no position skipped while others commit)."""
    verifier = follow(fleet[1])
    sign_in(fleet[0].url, "crowd")
    sessions = at_once([partial(sign_in, fleet[i % INSTANCES].url, "crowd", register=False) for i in range(CROWD)])
    ended = {tokens["session_id"] for tokens in sessions}
    assert [refusal(verifier, tokens) for tokens in sessions] == [None] * CROWD
    with ExitStack() as readers:
        pages = [readers.enter_context(FeedReader(server)) for server in fleet]
        at_once([partial(logout, fleet[i % INSTANCES], tokens) for i, tokens in enumerate(sessions)])
        started = time.monotonic()
        for tokens in sessions:
            refused_within(verifier, tokens, max(0.0, started + PROPAGATION - time.monotonic()))
        while not all(reader.seen >= ended for reader in pages):
            missed = [len(ended - reader.seen) or reader.error for reader in pages]
            assert time.monotonic() < started + PROPAGATION, f"revocations missed by the readers of A, B, C: {missed}"
            time.sleep(0.01)
    status = health(verifier)
    assert (status.refused, status.ended_sessions >= CROWD) == (CROWD, True)


def test_postgresql_restart_loses_no_revocation(
    fleet: list[Server], follow: Callable[[Server], Verifier], pg: PostgresServer
) -> None:
    """PostgreSQL crashed and restarted: the verifier and a new one refuse the session ended
    before, and a logout after the restart reaches both within 2 s."""
    a, b, c = fleet
    verifier = follow(b)
    before = sign_in(a.url, "before-restart")
    assert refusal(verifier, before) is None
    logout(a, before)
    refused_within(verifier, before, PROPAGATION)
    time.sleep(0.2)  # the verifier's next poll is already held by B, whose watcher then loses the database
    try:
        pg.stop("immediate")  # a crash: only what was committed survives
        time.sleep(OUTAGE)
    finally:
        pg.start()
    deadline = time.monotonic() + RECOVERY_BOUND
    while not all(ready(server) for server in fleet):
        assert time.monotonic() < deadline, "the fleet did not recover"
        time.sleep(0.1)
    assert refusal(verifier, before) is not None
    while health(verifier).failures:  # a poll was refused in the outage: it is backing off
        assert time.monotonic() < deadline, "the verifier did not follow again"
        time.sleep(0.05)
    bootstrapped = follow(c)  # its first page is read from the restarted database
    assert refusal(bootstrapped, before) is not None

    after = sign_in(c.url, "after-restart")
    assert [refusal(verifier, after), refusal(bootstrapped, after)] == [None, None]
    logout(a, after)
    started = time.monotonic()
    refused_within(verifier, after, PROPAGATION)
    refused_within(bootstrapped, after, max(0.0, started + PROPAGATION - time.monotonic()))
    assert [health(v).state for v in (verifier, bootstrapped)] == ["following"] * 2
