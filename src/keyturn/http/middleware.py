"""Pure ASGI middleware: a bounded request body and security headers on every response."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_JSON_DEPTH", "BodyLimit", "SecurityHeaders"]

MAX_JSON_DEPTH = 16  # our bodies are flat objects; deep nesting only costs parser stack
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")

_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
_PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds nosniff, no-referrer, frame denial and a Content-Security-Policy to every response."""

    def __init__(self, app: ASGIApp, *, docs_prefixes: tuple[str, ...] = ("/docs", "/static-offline-docs")) -> None:
        self.app = app
        self.docs_prefixes = docs_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        csp = _csp(path, self.docs_prefixes)
        headers = [*_HEADERS, (b"content-security-policy", csp)]
        if path.startswith("/v1/auth/"):  # tokens and session data must not be cached anywhere
            headers += [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in headers if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await _too_large(send)
                return
        if _nesting(bytes(body)) > MAX_JSON_DEPTH:
            await _refuse(send, 400, "invalid_request", "The JSON body is nested too deeply.")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send) -> None:
    await _refuse(send, 413, "request_too_large", "The request body is too large.")


async def _refuse(send: Send, status: int, code: str, description: str) -> None:
    payload = json.dumps({"error": code, "error_description": description})
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload.encode()})


def _nesting(body: bytes) -> int:
    """How deeply a JSON text nests arrays and objects (strings ignored), without parsing it."""
    if b"[" not in body and b"{" not in body:
        return 0
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest
