"""Unit tests of the pure ASGI middleware (no I/O: each is called with a hand-made scope), and
integration tests in-process of the header bound through the whole app (real SQLite file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from keyturn.server.http import create_app
from keyturn.server.http.middleware import BodyLimit, HeaderLimit, read_body, replay
from tests.conftest import ISSUER, make_settings
from tests.helpers import body_size, signed_in
from tests.hostile import BENIGN_BODY, MAX_BODY, WORST_BODIES
from tests.timing import cost_ratio


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body and answers 200 with its length."""
    size = await body_size(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def _scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/v1/auth/login", "headers": headers}


async def _call(
    app: BodyLimit | HeaderLimit, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> list[Message]:
    """Send ``body`` through ``app`` in one message; the messages it answers with."""
    sent: list[Message] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    declared = [(b"content-length", str(len(body)).encode())] if headers is None else headers
    await app(_scope(declared), receive, send)
    return sent


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as running:
        yield running


@pytest.mark.parametrize("worst", ["unterminated string of escaped quotes", "brackets 64 Ki deep"])
def test_body_limit_reads_a_worst_case_body_in_linear_time(runner: asyncio.Runner, worst: str) -> None:
    """The body check that runs on every request, before routing and rate limits, costs no more on
    the old nesting pre-check's worst cases than on a benign 64 KiB body (it was quadratic: 17 s)."""
    app = BodyLimit(_echo_length, limit=MAX_BODY)

    def through(body: bytes) -> None:
        (start, _) = runner.run(_call(app, body))
        assert start["status"] == 200

    assert cost_ratio(through, WORST_BODIES[worst], BENIGN_BODY, bound=10) < 10


def test_a_body_in_one_byte_messages_is_replayed_in_linear_time(runner: asyncio.Runner) -> None:
    """What ``HotPath`` hands on when it does not answer: a client may send its body a byte per
    message (64 Ki of them); replaying every message read costs about what reading them did."""
    one_byte: list[Message] = [{"type": "http.request", "body": b"x", "more_body": True} for _ in range(MAX_BODY)]
    one_byte[-1] = {"type": "http.request", "body": b"x", "more_body": False}

    async def read_then(replayed: bool) -> int:
        pending = iter(one_byte)

        async def receive() -> Message:
            return next(pending, None) or {"type": "http.disconnect"}

        read, complete = await read_body(receive, MAX_BODY)
        assert complete
        if not replayed:
            return sum(len(m["body"]) for m in read)
        again = replay(read, receive)
        return sum([len((await again())["body"]) for _ in read])

    def through(replayed: bool) -> None:
        assert runner.run(read_then(replayed)) == MAX_BODY

    assert cost_ratio(through, True, False, bound=10) < 10


def test_body_limit_refuses_a_content_length_of_thousands_of_digits_with_413(runner: asyncio.Runner) -> None:
    """A Content-Length too long for int() (over 4,300 digits) is too large, not a crash."""
    app = BodyLimit(_echo_length, limit=MAX_BODY)
    for declared in (b"1" * 5000, b"0" * 5000, b"9" * 19):
        (start, body) = runner.run(_call(app, b"{}", [(b"content-length", declared)]))
        assert start["status"] == 413
        assert json.loads(body["body"])["error"] == "request_too_large"


ONE_MIB = 1024 * 1024


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        [("x-big", "a" * ONE_MIB)],
        [(f"x-h{i}", "v") for i in range(13_000)],
        [(f"x-h{i}", "v") for i in range(101)],
        [("cookie", "c=" + "a" * 17_000)],
    ],
    ids=["one 1 MiB header", "13,000 small headers", "101 fields", "a 17 KB cookie"],
)
async def test_app_answers_431_to_a_header_block_over_the_limit(
    client: httpx.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    """Under any server, a header block over 16 KiB or 100 fields is refused with 431 and an
    OAuth-style body before any route runs (today's main read it and answered 401)."""
    tokens = await signed_in(client, "many-headers")
    request = client.build_request(
        "GET", "/v1/auth/me", headers=[("authorization", f"Bearer {tokens['access_token']}"), *headers]
    )
    # Past the client's cookie jar, which looks up each header of the request once per header
    # (quadratic in httpx, seconds for 13,000 of them); the app sees the same request.
    response = await client._transport.handle_async_request(request)
    await response.aread()
    assert response.status_code == 431
    assert response.json() == {
        "error": "request_headers_too_large",
        "error_description": "The request's header block is too large.",
    }
    assert response.headers["x-content-type-options"] == "nosniff"
    fine = await client.get(
        "/v1/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}", "x-a": "b" * 8000}
    )
    assert fine.status_code == 200


def test_header_limit_counts_fields_and_bytes(runner: asyncio.Runner) -> None:
    """The bound holds at exactly the limit: max_fields fields and max_bytes bytes pass, one more fails."""
    app = HeaderLimit(_echo_length, max_bytes=4096, max_fields=40)

    def status(headers: list[tuple[bytes, bytes]]) -> int:
        scope = {**_scope(headers), "raw_path": b"/v1/auth/login", "query_string": b""}
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        runner.run(app(scope, receive, send))
        return int(sent[0]["status"])

    fields = [(b"x-%d" % i, b"v") for i in range(40)]
    assert status(fields) == 200
    assert status([*fields, (b"x-one-more", b"v")]) == 431
    line = len(b"/v1/auth/login") + 16  # what the request line adds to the head
    assert status([(b"x-a", b"b" * (4096 - line - 7))]) == 200
    assert status([(b"x-a", b"b" * (4096 - line - 6))]) == 431


@pytest.mark.anyio
async def test_app_takes_its_header_bounds_from_the_settings(tmp_path: Path) -> None:
    """KEYTURN_MAX_HEADER_BYTES and KEYTURN_MAX_HEADER_FIELDS are the bounds the app enforces."""
    settings = make_settings(tmp_path / "keyturn.db", max_header_bytes=4096, max_header_fields=40)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as small:
        assert (await small.get("/healthz", headers={"x-a": "b" * 3000})).status_code == 200
        assert (await small.get("/healthz", headers={"x-a": "b" * 5000})).status_code == 431
        assert (await small.get("/healthz", headers=[(f"x-{i}", "v") for i in range(30)])).status_code == 200
        assert (await small.get("/healthz", headers=[(f"x-{i}", "v") for i in range(41)])).status_code == 431
