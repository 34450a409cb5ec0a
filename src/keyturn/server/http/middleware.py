"""Pure ASGI middleware: a bounded header block and request body, and security headers on every response."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...verify.bearer import error_body

__all__ = [
    "HEADERS_TOO_LARGE", "HEADERS_TOO_LARGE_DESCRIPTION", "HSTS", "BodyLimit", "HeaderLimit", "SecurityHeaders",
    "add_headers", "declared_too_large", "read_body", "replay",
]  # fmt: skip

HEADERS_TOO_LARGE = "request_headers_too_large"
HEADERS_TOO_LARGE_DESCRIPTION = "The request's header block is too large."


_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
_PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Two years, this host only: subdomains of the issuer's host are not keyturn's to bind (RFC 6797 §6.1).
HSTS = b"max-age=63072000"
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds nosniff, no-referrer, frame denial and a Content-Security-Policy to every response, and
    ``Strict-Transport-Security`` with ``hsts`` (the issuer is https)."""

    def __init__(
        self, app: ASGIApp, *, docs_prefixes: tuple[str, ...] = ("/docs", "/static-offline-docs"), hsts: bool = False
    ) -> None:
        self.app = app
        self.docs_prefixes = docs_prefixes
        self.always = [*_HEADERS, (b"strict-transport-security", HSTS)] if hsts else _HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.headers_for(str(scope["path"]))

        async def send_with_headers(message: Message) -> None:
            add_headers(message, headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def headers_for(self, path: str) -> list[tuple[bytes, bytes]]:
        """The headers every response to ``path`` carries."""
        headers = [*self.always, (b"content-security-policy", _csp(path, self.docs_prefixes))]
        if path.startswith("/v1/auth/"):  # tokens and session data must not be cached anywhere
            headers += [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
        return headers


def add_headers(message: Message, headers: list[tuple[bytes, bytes]]) -> None:
    """Add to a response's start message each of ``headers`` it does not set itself."""
    if message["type"] == "http.response.start":
        present = {name for name, _ in message.get("headers", [])}
        message["headers"] = [*message.get("headers", []), *((n, v) for n, v in headers if n not in present)]


def _csp(path: str, docs_prefixes: tuple[str, ...]) -> bytes:
    if path == "/" or path.startswith("/static/"):
        return _PAGE_CSP
    return _DOCS_CSP if path.startswith(docs_prefixes) else _API_CSP


class BodyLimit:
    """Reads at most ``limit`` bytes of a request body before the app sees it; more gets 413."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope, self.limit):
            await _too_large(send)
            return
        read, complete = await read_body(receive, self.limit)
        if not complete:
            if read[-1]["type"] == "http.request":  # over the limit; otherwise the client left
                await _too_large(send)
            return
        whole: Message = {
            "type": "http.request",
            "body": b"".join(m.get("body", b"") for m in read),
            "more_body": False,
        }
        await self.app(scope, replay([whole], receive), send)


async def read_body(receive: Receive, limit: int) -> tuple[list[Message], bool]:
    """A request's messages up to its whole body; False when the body went over ``limit`` bytes or
    the client left (or sent anything but body) first."""
    read: list[Message] = []
    size, more = 0, True
    while more:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return read, False
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
        if size > limit:
            return read, False
    return read, True


def replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` (already read) first, in order, then the rest."""
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed


class HeaderLimit:
    """Answers 431 (RFC 6585 §5) to a request whose header block is over ``max_bytes`` or has more
    than ``max_fields`` fields, before anything else reads it.

    The server keyturn ships (``keyturn serve``) refuses such a request while reading it
    (``keyturn.server.http.protocol``); this is the same bound for an app run by another server, which
    has already read the headers, so it only keeps them from reaching the routes.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_fields: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_fields = max_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.too_large(scope):
            await _refuse(send, 431, HEADERS_TOO_LARGE, HEADERS_TOO_LARGE_DESCRIPTION)
            return
        await self.app(scope, receive, send)

    def too_large(self, scope: Scope) -> bool:
        """Whether the request's header block is over either bound."""
        headers = scope.get("headers", [])
        # The request line and each field's ": " and CRLF count too, as on the wire.
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + 16
        size += sum(len(name) + len(value) + 4 for name, value in headers)
        return len(headers) > self.max_fields or size > self.max_bytes


def declared_too_large(scope: Scope, limit: int) -> bool:
    """Whether the request's ``Content-Length`` is over ``limit`` bytes, or not a length at all."""
    declared = dict(scope.get("headers", [])).get(b"content-length")
    # More digits than any limit has is too large, without int() (which refuses 4300+ digits).
    return declared is not None and (not declared.isdigit() or len(declared) > 18 or int(declared) > limit)


async def _too_large(send: Send) -> None:
    await _refuse(send, 413, "request_too_large", "The request body is too large.")


async def _refuse(send: Send, status: int, code: str, description: str) -> None:
    payload = json.dumps(error_body(code, description))
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload.encode()})
