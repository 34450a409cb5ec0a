"""Request bodies: the one parser of every JSON body keyturn accepts, and the route class that makes
FastAPI use it.

A body is refused (400 ``invalid_request``, each with its own ``reason``) when it is:

- not UTF-8, or starts with a byte order mark (RFC 8259 §8.1: JSON exchanged between systems is
  UTF-8, and a parser may refuse a BOM); a UTF-16 or UTF-32 body never gets this far;
- not JSON, or JSON with ``NaN``/``Infinity`` (not JSON numbers, RFC 8259 §6);
- an object that names a member twice (RFC 8259 §4 leaves the meaning to each parser: one that
  keeps the first and one that keeps the last would read two different requests);
- nested more than ``MAX_JSON_DEPTH`` deep (our bodies are flat objects).

Every step is linear in the size of the body, whatever its bytes: the decoding and the parsing
run in C, with one callback per object, and the depth is measured in a few passes that run in C
too. This replaces a nesting check that ran a backtracking pattern over the raw text before
routing: on an unterminated string it retried from every quote, quadratic, on the event loop.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ...core._strictjson import strict_decoder
from ...core.errors import InvalidRequest

__all__ = ["MAX_JSON_DEPTH", "JSONBodyRequest", "JSONBodyRoute", "parse_json_body"]

MAX_JSON_DEPTH = 16


def parse_json_body(raw: bytes) -> Any:
    """The JSON value of a request body, under the rules in this module's docstring.

    Raises:
        InvalidRequest: the body breaks one of them; ``reason`` says which.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raise InvalidRequest(
            "The body starts with a byte order mark; send UTF-8 JSON without one.", reason="json_encoding"
        )
    # A NUL is never in JSON text (RFC 8259 §7: control characters are escaped), yet UTF-16 and
    # UTF-32 text is full of them, and without a BOM it is valid UTF-8: name the real mistake.
    if b"\x00" in raw:
        raise InvalidRequest(
            "The body is not UTF-8 (it looks like UTF-16 or UTF-32); send UTF-8 JSON.", reason="json_encoding"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8; send UTF-8 JSON.", reason="json_encoding") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # the C decoder recurses per level; the interpreter's limit stops it
        raise _too_deep() from None
    except json.JSONDecodeError as exc:
        description = f"The body is not valid JSON: {exc.msg} at character {exc.pos}."
        raise InvalidRequest(description, reason="json_invalid") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidRequest("The body is not valid JSON.", reason="json_invalid") from None
    # Fewer brackets than the limit cannot nest beyond it (brackets in strings only overcount).
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _nested_too_deeply(text):
        raise _too_deep()
    return value


def _nested_too_deeply(text: str) -> bool:
    """Whether the JSON ``text`` (already parsed, so valid) nests arrays and objects more than
    ``MAX_JSON_DEPTH`` deep, in a few passes over it that each run in C.

    Strings are cut out: escaped backslashes first, then escaped quotes (escapes read left to right,
    as ``str.replace`` matches), after which every quote opens or closes a string. Of the rest only
    the brackets are kept, and each pass removes every innermost pair: the text nests at most
    ``MAX_JSON_DEPTH`` deep if that many passes leave nothing. A walk over the parsed value, one
    Python step per container, cost ten times more on a body of nothing but brackets.
    """
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[::2]).encode()
    brackets = outside.translate(_PARENS, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def _too_deep() -> InvalidRequest:
    description = f"The JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)."
    return InvalidRequest(description, reason="json_too_deep")


_DECODER = strict_decoder(
    duplicate=lambda: InvalidRequest(
        "The JSON body names a member twice; send each member once.", reason="json_duplicate_member"
    ),
    constant=lambda name: InvalidRequest(f"{name} is not a JSON number.", reason="json_invalid"),
)
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JSONBodyRequest(Request):
    """A request whose ``json()`` is ``parse_json_body`` (FastAPI reads JSON bodies through it)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class JSONBodyRoute(APIRoute):
    """A FastAPI route that parses its JSON body with ``parse_json_body``, refusing as keyturn does.

    FastAPI turns any error of ``Request.json()`` other than ``json.JSONDecodeError`` into a bare
    ``HTTPException(400)`` raised from it; the keyturn error underneath is raised again instead,
    so the error table answers it like every other refusal.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(JSONBodyRequest(request.scope, request.receive))
            except HTTPException as exc:
                if isinstance(exc.__cause__, InvalidRequest):
                    raise exc.__cause__ from None
                raise

        return handle
