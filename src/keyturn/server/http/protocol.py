"""The HTTP/1.1 protocol ``keyturn serve`` runs: uvicorn's httptools protocol with the request
head (request line and header fields) bounded, answered 431 beyond it (RFC 6585 §5).

httptools (llhttp) limits neither a request line nor a header field, and uvicorn not their
number: a single 1 MiB header, or 13,000 small ones, would be read, kept and handed to the app.
Here the bytes of a request head are counted as they arrive, before the parser buffers them, and
its fields as they are parsed; past either bound the client gets 431 and the connection is closed,
before the app sees anything. A pipelined request that starts in the same read as the end of the
one before it may run past the byte bound by at most that one read; its fields are still counted.

``HeaderLimit`` (``keyturn.server.http.middleware``) keeps the same bounds inside the app, for
deployments that run it under another server.

The protocol also sends what one turn of the event loop writes to a connection as one write
(``_Coalesced``): uvicorn writes a response's head and its body separately, and each write is a
system call that, on loopback, also runs the receiving side's TCP. Joined, a small answer costs
one (issue 18: ``GET /v1/auth/me`` +22 % req/s). Nothing is reordered: a close or an end of
writing sends what is held first.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ...verify.bearer import error_body
from ..config import Settings
from .middleware import HEADERS_TOO_LARGE, HEADERS_TOO_LARGE_DESCRIPTION

__all__ = ["HeadLimitedHttpToolsProtocol", "http_protocol"]

_REFUSAL = json.dumps(error_body(HEADERS_TOO_LARGE, HEADERS_TOO_LARGE_DESCRIPTION)).encode()


def http_protocol(settings: Settings) -> Callable[..., HeadLimitedHttpToolsProtocol]:
    """What ``keyturn serve`` gives uvicorn as ``http``, with the bounds of ``settings``.

    A partial of a module-level class, so it pickles by reference into worker processes.
    """
    return functools.partial(
        HeadLimitedHttpToolsProtocol,
        max_head_bytes=settings.max_header_bytes,
        max_head_fields=settings.max_header_fields,
    )


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop llhttp; answered 431 by ``send_400_response``."""


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over ``max_head_bytes`` bytes or
    ``max_head_fields`` header fields with 431."""

    def __init__(self, *args: Any, max_head_bytes: int, max_head_fields: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.max_head_fields = max_head_fields
        self._in_head = True  # between requests, or reading a request line and its fields
        self._head_bytes = 0
        self._head_fields = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Coalesced(transport, self.loop)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what the head may still take: if it ends in there, the rest is its body (or the
        # next request); if it does not, the head is too large, and the rest is never parsed.
        self._head_bytes = self.max_head_bytes
        super().data_received(data[:room])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:  # refused, or upgraded
            return
        if self._in_head:
            self._refuse()
        else:
            self.data_received(data[room:])

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.max_head_fields:
            raise _HeadTooLarge()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._head_fields = True, 0, 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; the one our callback raised is a 431.
        if self._head_fields > self.max_head_fields:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self.logger.warning("Request header block too large: answered 431.")
        content = [STATUS_LINE[431]]
        content += [b"%s: %s\r\n" % (name, value) for name, value in self.server_state.default_headers]
        content += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(_REFUSAL),
            b"connection: close\r\n\r\n",
            _REFUSAL,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()


class _Coalesced:
    """A connection's transport whose writes of one loop turn leave as one write, at the end of
    that turn (or before a close or an end of writing); everything else goes to the transport."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def writelines(self, lines: Iterable[bytes]) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._held:
            data, self._held = b"".join(self._held), []
            if not self._transport.is_closing():  # the client has gone: nothing to send it
                self._transport.write(data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
