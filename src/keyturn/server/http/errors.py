"""Error answers at the FastAPI edge: keyturn errors with ``keyturn.verify.bearer``'s one table of
statuses, bodies and headers; FastAPI's own (validation, 404, 405) in the same shape."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from ...core.errors import InvalidGrant, KeyturnError, RateLimited
from ...verify.bearer import NO_STORE, STATUS, answer, error_body
from .cookies import refresh_cookie
from .metrics import observe_refusal
from .routes import client, limits, service

__all__ = ["STATUS", "error_response", "install_error_handlers"]

_log = logging.getLogger("keyturn.http")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


def error_response(code: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An OAuth-style error body (RFC 6749 §5.2) with the status the table gives ``code``."""
    status = STATUS.get(code, 400)
    return JSONResponse(error_body(code, description), status_code=status, headers={**NO_STORE, **(headers or {})})


async def keyturn_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KeyturnError)
    observe_refusal(request, exc)
    if isinstance(exc, RateLimited):
        await _audit_refusal(request, exc)
    reply = answer(exc)
    response = JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
    if isinstance(exc, InvalidGrant) and refresh_cookie(request) is not None:
        # The session behind the cookie is over (or the cookie is bad): the browser should forget it.
        request.app.state.browser.clear(response)
    return response


async def _audit_refusal(request: Request, exc: RateLimited) -> None:
    who = client(request)
    try:
        if await limits(request).first_refusal(exc, who.ip):
            await service(request).auth.record_rate_limited(who, exc.kind, exc.limit)
    except KeyturnError:  # the store is down: the 429 still goes out
        _log.warning("could not audit a rate-limited request")


def validation_error(_request: Request, exc: Exception) -> Response:
    """Replace FastAPI's 422, which echoes the submitted input (passwords too)."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query")) or "body"
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        message = "The body is not valid JSON."
    elif kind == "missing":
        message = f"The field '{where}' is required."
    elif kind == "extra_forbidden":
        message = f"The field '{where}' is not allowed."
    elif where == "body":
        message = "The body must be a JSON object."
    else:
        message = f"The field '{where}' has the wrong type or value."
    return error_response("invalid_request", message)


def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request")
    description = {404: "No such route.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
    response = error_response(code, description, dict(exc.headers or {}))
    response.status_code = exc.status_code
    return response


def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug: log it server-side (type and route only), answer without any detail."""
    _log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response("server_error", "The server could not handle the request.")


def install_error_handlers(app: object) -> None:
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)
    app.add_exception_handler(KeyturnError, keyturn_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
