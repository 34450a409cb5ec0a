"""The RFC 6750 edge: the bearer token of an ``Authorization`` header, and the one table from
error codes to HTTP answers (status, OAuth-style body, ``WWW-Authenticate`` challenge).

Framework-free, so the server and every integration (FastAPI, Starlette, Flask, Django) read
tokens and answer errors the same way.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import InsufficientScope, InvalidToken, KeyturnError, MalformedToken, MissingToken, RateLimited

__all__ = ["NO_STORE", "STATUS", "ErrorAnswer", "answer", "bearer_token", "error_body"]

STATUS = {
    "invalid_request": 400,
    "invalid_credentials": 401,
    "invalid_grant": 401,
    "invalid_token": 401,
    "invalid_client": 401,
    "unsupported_grant_type": 400,
    "unauthorized_client": 400,
    "invalid_scope": 400,
    "registration_closed": 403,
    "email_not_verified": 403,
    "insufficient_scope": 403,
    "csrf_failed": 403,
    "origin_not_allowed": 403,
    "csrf_token_invalid": 403,
    "content_type_not_allowed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "username_taken": 409,
    "request_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "invalid_configuration": 500,
    "server_error": 500,
    "temporarily_unavailable": 503,
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def error_body(code: str, description: str) -> dict[str, str]:
    """The OAuth-style error body (RFC 6749 §5.2) of every refusal keyturn sends."""
    return {"error": code, "error_description": description}


class ErrorAnswer:
    """What to send for an error: ``status``, JSON ``body`` and ``headers``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def answer(exc: KeyturnError, realm: str = "keyturn", *, resource_metadata: str | None = None) -> ErrorAnswer:
    """The HTTP answer for ``exc``, with the ``WWW-Authenticate`` challenge RFC 6750 §3 asks for.

    Args:
        exc: the refusal.
        realm: named in the challenge.
        resource_metadata: the URL of the API's RFC 9728 metadata, named in every Bearer challenge
            (401, and 403 ``insufficient_scope``) so clients can discover the issuer (§5.1).
            Resource servers pass it (``keyturn.verify.resource``); keyturn's server, none.
    """
    headers = dict(NO_STORE)
    more = "" if resource_metadata is None else f', resource_metadata="{_quoted(resource_metadata)}"'
    if isinstance(exc, MissingToken):
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}"{more}'
    elif isinstance(exc, InvalidToken):
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}", error="invalid_token"{more}'
    elif isinstance(exc, InsufficientScope):
        scope = " ".join(exc.required)
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}", error="insufficient_scope", scope="{scope}"{more}'
    status = STATUS.get(exc.code, 400)
    if status == 401 and "WWW-Authenticate" not in headers:
        # RFC 9110 §15.5.2: every 401 names a challenge. Refused credentials or refresh tokens
        # (sent in the body) are answered with the scheme this API authenticates requests by.
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}"{more}'
    if exc.code == "temporarily_unavailable":
        headers["Retry-After"] = "1"
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return ErrorAnswer(status, error_body(exc.code, exc.description), headers)


def _quoted(value: str) -> str:
    """``value`` as the inside of an RFC 9110 §5.6.4 quoted-string (a URL has no ``"`` or ``\\``;
    this keeps a header whole whatever it is given)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1).

    Raises:
        MissingToken: no header, or another scheme.
        MalformedToken: ``Bearer`` with nothing usable after it.
    """
    if not authorization:
        raise MissingToken()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = token.strip()
    if not token or " " in token:
        raise MalformedToken()
    return token
