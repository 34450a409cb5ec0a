"""Integration tests of ``GET /v1/revocations`` (keyturn.server.http.feed): in-process, the real
ASGI app on a real database (SQLite file and PostgreSQL): the page's shape and headers, the
refusals of bad parameters, a long poll answered by a logout, and the RFC 8414 metadata that
names the feed. And a real server process on loopback stopped with SIGTERM while a long poll
waits: it stops gracefully within seconds, not after the poll's wait."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.core.revocations import FeedPage
from keyturn.server.http import create_app
from keyturn.server.http.feed import wake_on_exit
from keyturn.server.service import Service
from tests.conftest import ISSUER
from tests.helpers import assert_refused, bearer, signed_in
from tests.servers import spawn_keyturn, wait_ready

pytestmark = pytest.mark.anyio
FEED = "/v1/revocations"
BAD_CURSOR = "The cursor 'after' is not one this feed sent."


def wrong(name: str) -> str:
    return f"The field '{name}' has the wrong type or value."


async def test_the_feed_is_a_page_of_ended_sessions_not_to_be_cached(client: httpx.AsyncClient) -> None:
    """200 with cursor, reset, more and entries of sid, at, until and reason; Cache-Control:
    no-store; no credential needed; the page reads back as the verifier parses it."""
    tokens = await signed_in(client)
    assert (await client.post("/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    response = await client.get(FEED)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"cursor", "reset", "more", "entries"}
    assert (body["reset"], body["more"]) == (False, False)
    [entry] = body["entries"]
    assert set(entry) == {"sid", "at", "until", "reason"}
    assert (entry["sid"], entry["reason"]) == (tokens["session_id"], "logout")
    assert entry["until"] - entry["at"] == 15 * 60 + 5  # the access-token lifetime and the leeway
    page = FeedPage.from_json(body)
    assert str(page.cursor) == body["cursor"]


async def test_the_cursor_of_a_page_reads_what_came_after_it(client: httpx.AsyncClient) -> None:
    """Sent back as ``after``, the cursor gives only the newer entries; ``limit`` pages with ``more``."""
    first = await signed_in(client)
    await client.post("/v1/auth/logout", headers=bearer(first))
    cursor = (await client.get(FEED)).json()["cursor"]
    second = await signed_in(client, "bob")
    await client.post("/v1/auth/logout", headers=bearer(second))
    after = (await client.get(FEED, params={"after": cursor})).json()
    assert [e["sid"] for e in after["entries"]] == [second["session_id"]]
    one = (await client.get(FEED, params={"limit": 1})).json()
    assert ([e["sid"] for e in one["entries"]], one["more"]) == ([first["session_id"]], True)


BAD_PARAMETERS = [
    ({"after": "nonsense"}, BAD_CURSOR),
    ({"after": "0123abcd.١٢"}, BAD_CURSOR),  # Arabic-Indic digits
    ({"after": "0123abcd.-1"}, BAD_CURSOR),
    ({"after": "a" * 60 + ".1234"}, wrong("after")),  # 65 characters
    ({"wait": "26"}, wrong("wait")),
    ({"wait": "-1"}, wrong("wait")),
    ({"wait": "soon"}, wrong("wait")),
    ({"wait": "nan"}, wrong("wait")),
    ({"limit": "0"}, wrong("limit")),
    ({"limit": "1001"}, wrong("limit")),
]


async def test_bad_parameters_are_400_saying_which(client: httpx.AsyncClient) -> None:
    """400 invalid_request with the description naming the parameter, not cached (one app for
    all the cases: the refusals do not depend on each other)."""
    for params, description in BAD_PARAMETERS:
        response = await client.get(FEED, params=params)
        assert_refused(response, 400, "invalid_request", description)
        assert response.headers["cache-control"] == "no-store", params


async def test_a_long_poll_is_answered_soon_after_a_logout(client: httpx.AsyncClient) -> None:
    """A poll with nothing new waits; a logout meanwhile answers it within a few watcher
    intervals with that session, long before its ``wait`` is over."""
    tokens = await signed_in(client)
    cursor = (await client.get(FEED)).json()["cursor"]
    poll = asyncio.create_task(client.get(FEED, params={"after": cursor, "wait": 20}))
    await asyncio.sleep(0.3)  # the poll is waiting
    assert not poll.done()
    assert (await client.post("/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    logged_out = time.monotonic()
    response = await asyncio.wait_for(poll, timeout=20)
    assert time.monotonic() - logged_out < 3
    assert response.status_code == 200
    assert [e["sid"] for e in response.json()["entries"]] == [tokens["session_id"]]


async def test_a_long_poll_with_nothing_new_returns_the_same_cursor_after_its_wait(client: httpx.AsyncClient) -> None:
    """``wait`` accepts fractions of a second; with nothing new the answer is an empty page with
    the cursor it was asked from."""
    cursor = (await client.get(FEED)).json()["cursor"]
    started = time.monotonic()
    response = await client.get(FEED, params={"after": cursor, "wait": "0.3"})
    assert 0.25 <= time.monotonic() - started < 3
    assert response.json() == {"cursor": cursor, "reset": False, "more": False, "entries": []}


async def test_the_metadata_names_the_feed_and_the_feed_answers_there(client: httpx.AsyncClient) -> None:
    """The RFC 8414 document's ``keyturn_revocations_endpoint`` (how verifiers find the feed, as
    the README and docs/deployment.md promise) is this issuer's /v1/revocations, and it answers 200."""
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    url = metadata["keyturn_revocations_endpoint"]
    assert url == f"{ISSUER}{FEED}"
    response = await client.get(url)
    assert response.status_code == 200
    FeedPage.from_json(response.json())


# --- a real server process ------------------------------------------------------------------------


@pytest.mark.server
def test_sigterm_answers_a_waiting_long_poll_and_the_server_exits_at_once(tmp_path: Path) -> None:
    """`keyturn --dev serve`, a poll waiting with wait=25, then SIGTERM: the poll is answered
    (200, nothing new) and the process shuts down gracefully within a few seconds, not after the
    poll's 25."""
    server = spawn_keyturn(tmp_path, "--dev", own_issuer=False)
    assert server.proc is not None
    answered: dict[str, Any] = {}
    try:
        wait_ready(server.url, server.proc, server.log)
        cursor = httpx.get(f"{server.url}{FEED}").json()["cursor"]

        def poll() -> None:
            try:
                response = httpx.get(f"{server.url}{FEED}", params={"after": cursor, "wait": 25}, timeout=40)
                answered["response"] = response
            except httpx.HTTPError as exc:
                answered["error"] = exc

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        time.sleep(0.5)  # the poll is waiting on the server
        assert poller.is_alive()
        server.proc.terminate()
        stopped = time.monotonic()
        server.proc.wait(timeout=20)
        took = time.monotonic() - stopped
        poller.join(timeout=5)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)
    assert took < 10, f"SIGTERM took {took:.1f}s:\n{server.log.read_text()}"
    response = answered.get("response")
    assert response is not None, answered
    assert response.status_code == 200
    assert response.json()["entries"] == []
    log = server.log.read_text()
    assert "Application shutdown complete" in log, log  # a graceful stop, not the signal's default action
    assert server.proc.returncode == -signal.SIGTERM, log  # uvicorn re-raises the signal once it has stopped


async def test_a_long_poll_whose_reader_hangs_up_ends_at_once(service: Service) -> None:
    """A reader that disconnects while its poll waits frees the poll at once (499, sent to nobody),
    not after the wait."""
    app = create_app(service.settings, service=service)
    cursor = str((await service.feed.page()).cursor)
    first = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if first:
            return first.pop()
        await asyncio.sleep(0.2)
        return {"type": "http.disconnect"}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": FEED, "raw_path": FEED.encode(), "query_string": f"after={cursor}&wait=20".encode(),
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80),
        "root_path": "",
    }  # fmt: skip
    started = time.monotonic()
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert time.monotonic() - started < 3
    assert sent[0]["status"] == 499


def test_a_stop_signal_answers_waiting_polls_and_reaches_the_servers_own_handler() -> None:
    """SIGTERM closes the feed (waiting polls answer at once), then runs the handler it replaced
    (uvicorn's); a default or ignored disposition is put back and taken; restore() undoes it."""
    closed: list[bool] = []

    class Feed:
        def close(self) -> None:
            closed.append(True)

    heard: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: heard.append(signum))
    try:
        restore = wake_on_exit(Feed())  # type: ignore[arg-type]
        signal.raise_signal(signal.SIGTERM)
        assert (closed, heard) == ([True], [signal.SIGTERM])
        restore()
        signal.raise_signal(signal.SIGTERM)
        assert (closed, heard) == ([True], [signal.SIGTERM, signal.SIGTERM])
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        restore = wake_on_exit(Feed())  # type: ignore[arg-type]
        signal.raise_signal(signal.SIGTERM)  # ignored, as it was: the test goes on
        assert closed == [True, True]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        restore()
    finally:
        signal.signal(signal.SIGTERM, before)
