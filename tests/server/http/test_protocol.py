"""Unit tests of ``keyturn.server.http.protocol``: the bounded httptools protocol fed bytes directly, as
the event loop would feed them, with a transport that records what is written (no sockets)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from keyturn.server.http.protocol import HeadLimitedHttpToolsProtocol, http_protocol
from tests.conftest import make_settings
from tests.helpers import body_size

pytestmark = pytest.mark.anyio

LIMIT = 4096
FIELDS = 20


class Transport:
    """What the protocol needs of an asyncio transport; keeps what is written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.writes = 0
        self.closed = False
        self.protocol: object = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after the close"
        self.written += data
        self.writes += 1

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol

    def get_protocol(self) -> object:
        return self.protocol


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 with how many header fields and body bytes it was given."""
    size = await body_size(receive)
    body = json.dumps({"fields": len(scope["headers"]), "body": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def exchange(*chunks: bytes) -> tuple[Transport, list[bytes]]:
    """Feed ``chunks`` to one connection (stopping when it closes) and let the app answer; the
    transport, and the responses written, split at each status line."""
    config = Config(app=app, lifespan="off", log_config=None, access_log=False)
    config.load()
    state = ServerState()
    protocol = HeadLimitedHttpToolsProtocol(
        config=config, server_state=state, app_state={}, max_head_bytes=LIMIT, max_head_fields=FIELDS
    )
    transport = Transport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        if transport.closed:
            break
        protocol.data_received(chunk)
        while state.tasks:
            await asyncio.gather(*state.tasks)
        await asyncio.sleep(0)  # the loop's turn ends: what it wrote is sent
    responses = [b"HTTP/1.1" + r for r in bytes(transport.written).split(b"HTTP/1.1")[1:]]
    return transport, responses


def head(size: int, *, fields: int = 1, path: bytes = b"/") -> bytes:
    """A GET request head of exactly ``size`` bytes with ``fields`` header fields (padding the last)."""
    lines = [b"GET %s HTTP/1.1\r\n" % path] + [b"x-%d: v\r\n" % i for i in range(fields - 1)]
    used = sum(map(len, lines)) + len(b"x-pad: \r\n\r\n")
    assert size >= used
    return b"".join(lines) + b"x-pad: " + b"a" * (size - used) + b"\r\n\r\n"


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def refused(response: bytes) -> bool:
    """A 431 with the OAuth-style body, closing the connection."""
    top, _, body = response.partition(b"\r\n\r\n")
    return (
        status(response) == 431
        and b"connection: close" in top
        and json.loads(body)
        == {"error": "request_headers_too_large", "error_description": "The request's header block is too large."}
    )


async def test_a_head_of_exactly_the_limit_passes_and_one_byte_more_is_431() -> None:
    """The bound counts every byte of the request line and the fields, CRLFs included."""
    _, (ok,) = await exchange(head(LIMIT))
    assert status(ok) == 200
    transport, (too_large,) = await exchange(head(LIMIT + 1))
    assert refused(too_large)
    assert transport.closed


async def test_a_long_head_arriving_a_byte_at_a_time_is_refused_at_the_limit() -> None:
    """The bytes are counted as they arrive, whatever the chunks: the app never runs."""
    data = head(64 * 1024)
    _, responses = await exchange(*(data[i : i + 1] for i in range(len(data))))
    assert len(responses) == 1
    assert refused(responses[0])


async def test_a_one_mib_header_is_refused_after_the_first_read() -> None:
    """A single 1 MiB header, in 64 KiB reads: refused when the first read overflows, the rest unread."""
    data = head(1024 * 1024)
    _, (response,) = await exchange(*(data[i : i + 65536] for i in range(0, len(data), 65536)))
    assert refused(response)


async def test_more_fields_than_the_limit_are_431_within_the_byte_bound() -> None:
    """20 fields pass; 21 (in a head of a few hundred bytes) are 431."""
    _, (ok,) = await exchange(head(300, fields=FIELDS))
    assert json.loads(ok.partition(b"\r\n\r\n")[2])["fields"] == FIELDS
    _, (too_many,) = await exchange(head(300, fields=FIELDS + 1))
    assert refused(too_many)


async def test_a_body_in_the_same_read_as_the_head_is_not_counted_as_head() -> None:
    """A head under the bound followed by a 100 KB body, all in one read: the body reaches the app."""
    body = b"b" * 100_000
    request = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    _, (response,) = await exchange(request)
    assert status(response) == 200
    assert json.loads(response.partition(b"\r\n\r\n")[2])["body"] == len(body)


async def test_every_request_on_a_kept_alive_connection_gets_its_own_bound() -> None:
    """Three requests near the bound on one connection all pass; a fourth over it is refused."""
    near = head(LIMIT - 10)
    _, responses = await exchange(near, near, near, head(LIMIT + 10))
    assert [status(r) for r in responses] == [200, 200, 200, 431]


async def test_a_response_leaves_in_one_write() -> None:
    """uvicorn writes a response's head and body apart; the connection sends them as one write, and
    each response on a kept-alive connection as its own."""
    transport, responses = await exchange(head(200), head(300), head(400))
    assert [status(r) for r in responses] == [200, 200, 200]
    assert transport.writes == 3
    assert transport.written == b"".join(responses)


async def test_a_refusal_is_written_before_the_connection_closes() -> None:
    """A 431 and its close in the same turn: the held bytes go first (the transport refuses a write
    after its close), then the close."""
    transport, (response,) = await exchange(head(LIMIT + 1))
    assert refused(response)
    assert (transport.writes, transport.closed) == (1, True)


async def test_what_is_held_for_a_client_that_left_is_dropped() -> None:
    """Bytes held when the connection is aborted, or closed by the other side, are never written."""
    for end in ("abort", "gone"):
        config = Config(app=app, lifespan="off", log_config=None, access_log=False)
        config.load()
        protocol = HeadLimitedHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}, max_head_bytes=LIMIT, max_head_fields=FIELDS
        )
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.transport.write(b"held")
        if end == "abort":
            protocol.transport.abort()
        else:
            transport.closed = True
        await asyncio.sleep(0)
        assert (transport.writes, transport.closed) == (0, True)


async def test_writelines_and_an_end_of_writing_keep_the_order() -> None:
    """``writelines`` is held with the turn's other writes (not sent ahead of them), and
    ``write_eof`` sends what is held before it ends the writing."""
    config = Config(app=app, lifespan="off", log_config=None, access_log=False)
    config.load()
    protocol = HeadLimitedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, max_head_bytes=LIMIT, max_head_fields=FIELDS
    )
    transport = Transport()
    ended: list[bytes] = []
    transport.write_eof = lambda: ended.append(bytes(transport.written))  # type: ignore[attr-defined]
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.transport.write(b"a")
    protocol.transport.writelines([b"b", b"c"])
    protocol.transport.write_eof()
    await asyncio.sleep(0)
    assert (bytes(transport.written), transport.writes, ended) == (b"abc", 1, [b"abc"])


def test_serve_builds_the_protocol_from_the_settings(tmp_path: Any) -> None:
    """What `keyturn serve` passes to uvicorn carries KEYTURN_MAX_HEADER_BYTES and _FIELDS, and pickles
    (worker processes are spawned with it)."""
    import pickle

    settings = make_settings(tmp_path / "keyturn.db", max_header_bytes=8192, max_header_fields=50)
    factory = pickle.loads(pickle.dumps(http_protocol(settings)))  # noqa: S301 - our own bytes, as a worker gets them
    assert factory.keywords == {"max_head_bytes": 8192, "max_head_fields": 50}
    assert factory.func is HeadLimitedHttpToolsProtocol
