"""Tests of the verifier's revocation feed follower (``keyturn.verify.revocations``).

Unit (no I/O): ``RevocationFeed``'s settings, and which verifiers follow a feed. Integration: real
`keyturn --dev serve` processes on SQLite on loopback (register, sign in and end sessions over
HTTP, disable users with the real CLI) and one tiny ``http.server`` on loopback. A verifier
following the feed, sync (a thread follows) and async (a task follows), refuses the tokens of every
kind of ended session within 2 s; a verifier started later knows of sessions ended before it; one
following a keyturn that restarts, or that stops answering, behaves as documented.

Sync followers (threads) are closed at the end of the module, once their servers have stopped:
stopping answers their held long polls at once, where ``close()`` during a held poll would wait out
its ``timeout`` (5 s by default). Async followers (tasks) are closed, and awaited, by their test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import pytest

from keyturn.core.errors import SessionEnded, Unavailable
from keyturn.core.keys import KeyRing, generate_key
from keyturn.core.tokens import issue_access_token
from keyturn.verify import RevocationFeed, Verifier
from tests.helpers import PASSWORD
from tests.servers import KEYTURN, READY_TIMEOUT, Server, free_port, spawn_keyturn, wait_ready
from tests.servers import stop as stop_server
from tests.verify.issuer import stub_issuer

ISSUER = "https://auth.example"
AUDIENCE = "https://api.example"
JWKS = {"keys": [generate_key("ES256", now=datetime(2026, 1, 1, tzinfo=UTC)).public_jwk()]}
NEW_PASSWORD = "a whole new passphrase"
PROPAGATION = 2.0  # seconds from the answer that ends a session to its tokens' refusal
RECOVERY = 20.0  # seconds to follow again once keyturn is back (the follower's back-off is capped at 15 s)
FEED_DOWN = "The issuer's revocation feed cannot be reached; try again shortly."
E = TypeVar("E", bound=Exception)


# --- unit: settings ---------------------------------------------------------------------------


def quick(*, fail_open: bool = False) -> RevocationFeed:
    """A feed that counts as stale after 3 s without an answer (polls held 1 s)."""
    return RevocationFeed(
        max_staleness=timedelta(seconds=3), wait=timedelta(seconds=1), timeout=1.0, fail_open=fail_open
    )


class NoKeys:
    """A key source never asked in these tests (``Verifier(keys=...)``)."""

    async def ring_async(self, now: datetime, kid: object = None) -> KeyRing:
        raise AssertionError("not asked")


def test_max_staleness_must_exceed_wait_plus_timeout() -> None:
    """A feed whose healthy long poll (wait + timeout) could outlast max_staleness is refused."""
    with pytest.raises(ValueError, match="max_staleness must be longer than wait plus timeout"):
        RevocationFeed(max_staleness=timedelta(seconds=25), wait=timedelta(seconds=20), timeout=5.0)
    with pytest.raises(ValueError, match="max_staleness"):
        RevocationFeed(max_staleness=timedelta(seconds=2), wait=timedelta(seconds=1), timeout=1.0)
    assert quick().max_staleness == 3.0


def test_wait_is_capped_at_the_servers_limit() -> None:
    """A longer wait is asked as 25 s, the most the feed holds a poll (so 31 s of staleness is enough)."""
    assert RevocationFeed(wait=timedelta(minutes=5), max_staleness=timedelta(seconds=31)).wait == 25.0


@pytest.mark.parametrize(
    ("kwargs", "follows"),
    [
        ({}, True),
        ({"jwks_url": "https://auth.example/keys.json"}, True),
        ({"jwks": JWKS}, False),
        ({"keys": NoKeys()}, False),
        ({"revocations": False}, False),
        ({"jwks": JWKS, "revocations": True}, True),
        ({"keys": NoKeys(), "revocations": True}, True),
    ],
    ids=["issuer", "jwks_url", "static-jwks", "keys", "off", "static-jwks-on", "keys-on"],
)
def test_which_verifiers_follow_the_feed(kwargs: dict[str, Any], follows: bool) -> None:
    """Followed by default only when keys come from the issuer; revocations=True/False overrides it."""
    verifier = Verifier(ISSUER, AUDIENCE, **kwargs)
    if follows:
        assert verifier.revocations is not None
        status = verifier.status()
        assert status is not None
        assert (status.state, status.fail_open) == ("starting", False)
    else:
        assert verifier.revocations is None
        assert verifier.status() is None


def test_a_given_feed_is_the_one_followed() -> None:
    """Verifier(revocations=RevocationFeed(...)) follows that feed, bound to the verifier's issuer."""
    feed = RevocationFeed(fail_open=True)
    verifier = Verifier(f"{ISSUER}/", AUDIENCE, jwks=JWKS, revocations=feed)
    assert verifier.revocations is feed
    assert feed.issuer == f"{ISSUER}/"  # as configured: its metadata must name exactly this (RFC 8414 §3.3)
    status = verifier.status()
    assert status is not None
    assert status.fail_open


# --- integration: a real keyturn ---------------------------------------------------------------


class Issuer:
    """`keyturn --dev serve` in a directory of its own, which a test may stop and start again on
    the same port and directory: the same issuer, secret and database."""

    def __init__(self, cwd: Path, **settings: str) -> None:
        self.cwd, self.port, self.settings = cwd, free_port(), settings
        self.server: Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = spawn_keyturn(self.cwd, "--dev", own_issuer=True, port=self.port, **self.settings)
        assert self.server.proc is not None
        wait_ready(self.url, self.server.proc, self.server.log, READY_TIMEOUT)

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server)
            self.server = None

    def cli(self, *args: str) -> str:
        """`keyturn --dev <args>` on this server's database and secret; its output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
        env["KEYTURN_ISSUER"] = self.url
        done = subprocess.run(
            [str(KEYTURN), "--dev", *args], cwd=self.cwd, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@contextmanager
def running(issuer: Issuer) -> Iterator[Issuer]:
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.stop()


@pytest.fixture(scope="module")
def verifiers() -> Iterator[list[Verifier]]:
    """The module's sync verifiers, closed once the servers have stopped (see the docstring above)."""
    made: list[Verifier] = []
    yield made
    for verifier in made:
        verifier.close()


@pytest.fixture(scope="module")
def issuer(verifiers: list[Verifier], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    """The keyturn most tests use; no grace for a replayed refresh token, so reuse is detected at once."""
    with running(Issuer(tmp_path_factory.mktemp("issuer"), reuse_grace="0")) as started:
        yield started


@pytest.fixture(scope="module")
def outage(verifiers: list[Verifier], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    """A keyturn of the tests that stop it (each starts it again before it ends)."""
    with running(Issuer(tmp_path_factory.mktemp("outage"))) as started:
        yield started


@pytest.fixture(scope="module")
def follower(issuer: Issuer, verifiers: list[Verifier]) -> Verifier:
    """A verifier with the default settings, following ``issuer``'s feed from a thread."""
    verifier = Verifier(issuer.url, issuer.url)
    verifiers.append(verifier)
    return verifier


@asynccontextmanager
async def following(url: str, **kwargs: Any) -> AsyncIterator[Verifier]:
    """A verifier used with verify_async (its follower is a task); on exit, closed and its task ended."""
    verifier = Verifier(url, url, **kwargs)
    try:
        yield verifier
    finally:
        verifier.close()
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "keyturn-revocations"]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            assert not pending, "close() left the follower task running"


class Account:
    """A new user of a keyturn server, signing in and ending sessions over HTTP."""

    def __init__(self, url: str) -> None:
        self.url, self.username = url, f"user-{uuid.uuid4().hex[:8]}"
        response = httpx.post(f"{url}/v1/auth/register", json={"username": self.username, "password": PASSWORD})
        assert response.status_code == 201, response.text

    def login(self) -> dict[str, Any]:
        """A new session's token pair."""
        response = self.post("/v1/auth/login", username=self.username, password=PASSWORD)
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair

    def post(self, path: str, access_token: str | None = None, **body: str) -> httpx.Response:
        headers = {} if access_token is None else {"authorization": f"Bearer {access_token}"}
        return httpx.post(f"{self.url}{path}", json=body or None, headers=headers)


class Ended(NamedTuple):
    refused: list[str]  # tokens whose session has just ended
    kept: list[str]  # tokens that must still verify


class Plan(NamedTuple):
    live: list[str]  # tokens of live sessions
    end: Callable[[], Ended]  # ends some of them (blocking HTTP or CLI)


def by_logout(issuer: Issuer) -> Plan:
    account = Account(issuer.url)
    token = account.login()["access_token"]

    def end() -> Ended:
        assert account.post("/v1/auth/logout", token).status_code == 204
        return Ended([token], [])

    return Plan([token], end)


def by_logout_all(issuer: Issuer) -> Plan:
    account = Account(issuer.url)
    tokens = [account.login()["access_token"] for _ in range(2)]

    def end() -> Ended:
        assert account.post("/v1/auth/logout-all", tokens[0]).status_code == 204
        return Ended(tokens, [])

    return Plan(tokens, end)


def by_password_change(issuer: Issuer) -> Plan:
    account = Account(issuer.url)
    this, other = account.login()["access_token"], account.login()["access_token"]

    def end() -> Ended:
        response = account.post("/v1/auth/password", this, current_password=PASSWORD, new_password=NEW_PASSWORD)
        assert response.status_code == 200, response.text
        return Ended([other], [this, response.json()["access_token"]])  # this session lives on

    return Plan([this, other], end)


def by_disable(issuer: Issuer) -> Plan:
    account = Account(issuer.url)
    tokens = [account.login()["access_token"] for _ in range(2)]

    def end() -> Ended:
        assert (
            issuer.cli("users", "disable", account.username).strip()
            == f"disabled {account.username}; ended 2 session(s)"
        )
        return Ended(tokens, [])

    return Plan(tokens, end)


def by_reuse(issuer: Issuer) -> Plan:
    account = Account(issuer.url)
    first = account.login()
    rotated = account.post("/v1/auth/refresh", refresh_token=first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    tokens = [first["access_token"], rotated.json()["access_token"]]

    def end() -> Ended:
        replay = account.post("/v1/auth/refresh", refresh_token=first["refresh_token"])
        assert (replay.status_code, replay.json()["error"]) == (401, "invalid_grant"), replay.text
        return Ended(tokens, [])

    return Plan(tokens, end)


ENDINGS: dict[str, Callable[[Issuer], Plan]] = {
    "logout": by_logout,
    "logout-all": by_logout_all,
    "password-change": by_password_change,
    "disable": by_disable,
    "reuse": by_reuse,
}


def refused(error: type[E], verify: Callable[[str], object], token: str, deadline: float) -> E:
    """Verify ``token`` until it is refused with ``error``, failing at ``deadline`` (time.monotonic())."""
    while True:
        try:
            verify(token)
        except error as exc:
            return exc
        assert time.monotonic() < deadline, f"the token is still accepted, not refused with {error.__name__}"
        time.sleep(0.02)


async def ended_async(verify: Callable[[str], Awaitable[object]], token: str, deadline: float) -> SessionEnded:
    while True:
        try:
            await verify(token)
        except SessionEnded as exc:
            return exc
        assert time.monotonic() < deadline, "the token is still accepted"
        await asyncio.sleep(0.02)


def state(verifier: Verifier) -> str | None:
    status = verifier.status()
    return None if status is None else status.state


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {within}s"
        time.sleep(0.05)


@pytest.mark.server
@pytest.mark.parametrize("how", ENDINGS)
def test_sync_verifier_refuses_ended_sessions_within_seconds(issuer: Issuer, follower: Verifier, how: str) -> None:
    """verify() (a thread follows) refuses an ended session's tokens within 2 s; the others still verify."""
    plan = ENDINGS[how](issuer)
    for token in plan.live:
        follower.verify(token)
    ended = plan.end()
    deadline = time.monotonic() + PROPAGATION
    for token in ended.refused:
        assert refused(SessionEnded, follower.verify, token, deadline).reason == "session_ended"
    for token in ended.kept:
        follower.verify(token)


@pytest.mark.server
@pytest.mark.anyio
@pytest.mark.parametrize("how", ENDINGS)
async def test_async_verifier_refuses_ended_sessions_within_seconds(issuer: Issuer, how: str) -> None:
    """verify_async() (a task follows) refuses an ended session's tokens within 2 s; the others still verify."""
    plan = ENDINGS[how](issuer)
    async with following(issuer.url) as verifier:
        for token in plan.live:
            await verifier.verify_async(token)
        ended = await asyncio.to_thread(plan.end)
        deadline = time.monotonic() + PROPAGATION
        for token in ended.refused:
            assert (await ended_async(verifier.verify_async, token, deadline)).reason == "session_ended"
        for token in ended.kept:
            await verifier.verify_async(token)


@pytest.mark.server
def test_verifier_started_after_a_logout_refuses_at_its_first_verification(
    issuer: Issuer, verifiers: list[Verifier]
) -> None:
    """A verifier (re)started after a session ended learns of it before answering its first request."""
    account = Account(issuer.url)
    token = account.login()["access_token"]
    assert account.post("/v1/auth/logout", token).status_code == 204
    verifier = Verifier(issuer.url, issuer.url)
    verifiers.append(verifier)
    with pytest.raises(SessionEnded) as caught:
        verifier.verify(token)
    assert caught.value.reason == "session_ended"


@pytest.mark.server
@pytest.mark.anyio
async def test_async_verifier_started_after_a_logout_refuses_at_its_first_verification(issuer: Issuer) -> None:
    """The same with verify_async: the first request waits for the feed's first page."""
    account = Account(issuer.url)
    token = account.login()["access_token"]
    assert account.post("/v1/auth/logout", token).status_code == 204
    async with following(issuer.url) as verifier:
        with pytest.raises(SessionEnded) as caught:
            await verifier.verify_async(token)
    assert caught.value.reason == "session_ended"


@pytest.mark.server
def test_keyturn_restart_keeps_refusals_and_delivers_new_ones(outage: Issuer, verifiers: list[Verifier]) -> None:
    """Across a keyturn restart a follower keeps its refusals and gets the sessions ended after it."""
    account = Account(outage.url)
    before, after = account.login()["access_token"], account.login()["access_token"]
    verifier = Verifier(outage.url, outage.url)
    verifiers.append(verifier)
    verifier.verify(before)
    verifier.verify(after)
    assert account.post("/v1/auth/logout", before).status_code == 204
    refused(SessionEnded, verifier.verify, before, time.monotonic() + PROPAGATION)

    outage.stop()
    outage.start()
    with pytest.raises(SessionEnded):
        verifier.verify(before)
    assert account.post("/v1/auth/logout", after).status_code == 204
    refused(SessionEnded, verifier.verify, after, time.monotonic() + RECOVERY)
    with pytest.raises(SessionEnded):
        verifier.verify(before)
    status = verifier.status()
    assert status is not None
    assert (status.state, status.failures, status.ended_sessions) == ("following", 0, 2)


@pytest.mark.server
def test_stale_feed_fails_closed_or_open_and_recovers(outage: Issuer, verifiers: list[Verifier]) -> None:
    """Keyturn down past max_staleness: Unavailable, or claims if fail_open; "stale" until it is back."""
    token = Account(outage.url).login()["access_token"]
    closed = Verifier(outage.url, outage.url, revocations=quick())
    opened = Verifier(outage.url, outage.url, revocations=quick(fail_open=True))
    verifiers += [closed, opened]
    for verifier in (closed, opened):
        verifier.verify(token)
    stopped = time.monotonic()
    outage.stop()
    try:
        closed.verify(token)  # a short outage changes nothing
        unavailable = refused(Unavailable, closed.verify, token, stopped + 3.0 + PROPAGATION)
        assert time.monotonic() - stopped > 1.5  # not on the first failed request
        assert unavailable.description == FEED_DOWN
        status = closed.status()
        assert status is not None
        assert (status.state, status.healthy, status.fail_open) == ("stale", False, False)
        assert status.failures >= 1
        assert status.last_error
        assert "keyturn_verify_feed_stale 1\n" in status.prometheus()

        wait_until(lambda: state(opened) == "stale", PROPAGATION, "stale")
        assert opened.verify(token).sub  # let through
        status = opened.status()
        assert status is not None
        assert (status.state, status.healthy, status.fail_open) == ("stale", False, True)
        assert "keyturn_verify_feed_fail_open 1\n" in status.prometheus()
    finally:
        outage.start()
    wait_until(lambda: state(closed) == state(opened) == "following", RECOVERY, "following again")
    assert closed.verify(token).sub


# --- integration: an issuer without a feed -----------------------------------------------------


@contextmanager
def issuer_without_feed(metadata: bool) -> Iterator[tuple[str, str]]:
    """A tiny issuer on loopback serving only a JWKS (and, with ``metadata``, RFC 8414 metadata
    that names no feed); yields its URL and a token it issued."""
    key = generate_key("ES256", now=datetime.now(UTC) - timedelta(minutes=1))
    documents: dict[str, Any] = {"/.well-known/jwks.json": {"keys": [key.public_jwk()]}}
    with stub_issuer(documents) as url:
        if metadata:
            named = {"issuer": url, "jwks_uri": f"{url}/.well-known/jwks.json"}
            documents["/.well-known/oauth-authorization-server"] = named
        token, _ = issue_access_token(
            key, issuer=url, audience=url, subject="user-1", session_id="s-1", client_id="keyturn",
            scope="profile", now=datetime.now(UTC), ttl=timedelta(minutes=5),
        )  # fmt: skip
        yield url, token


@pytest.mark.parametrize("metadata", [False, True], ids=["no-metadata", "metadata-without-feed"])
def test_issuer_without_a_feed_is_not_followed(metadata: bool) -> None:
    """An issuer whose metadata is missing (404) or names no feed: state "off" (healthy), tokens verify."""
    with issuer_without_feed(metadata) as (url, token):
        verifier = Verifier(url, url)
        try:
            assert verifier.verify(token).sub == "user-1"
            status = verifier.status()
            assert status is not None
            assert (status.state, status.healthy, status.failures) == ("off", True, 0)
            assert "keyturn_verify_feed_up 1\n" in status.prometheus()
        finally:
            verifier.close()
