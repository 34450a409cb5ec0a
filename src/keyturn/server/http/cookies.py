"""Browser mode: the refresh token in an HttpOnly cookie, and the checks that keep it from
being used by other sites (Origin / Fetch Metadata, JSON only, double-submit CSRF token).

SameSite=Strict alone is not enough: another port or subdomain of the same site is
"same-site" and gets the cookie, so every request that uses it must also come from an
allowed origin and carry the session's CSRF token.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ...core.csrf import CsrfTokens
from ...core.errors import ContentTypeNotAllowed, InvalidRequest, OriginNotAllowed
from ...core.masterkey import MasterKey
from ..config import Settings, is_loopback_host
from ..service import TokenPair

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "REFRESH_COOKIE",
    "BrowserMode",
    "CookieFilter",
    "refresh_cookie",
    "token_body",
]

R = TypeVar("R", bound=Response)
REFRESH_COOKIE = "__Secure-keyturn-refresh"
CSRF_COOKIE = "__Host-keyturn-csrf"
CSRF_HEADER = "x-csrf-token"
REFRESH_PATH = "/v1/auth"
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")  # RFC 6265 cookie-octets
# One "; name=value" pair of a Cookie header (RFC 6265 §5.4), matched from a ";" up to the next:
# no part after the first ";" matches one, so every attempt stays within its own pair, and the
# text is scanned once (linear, whatever the header holds).
_REFRESH_PAIR = re.compile(rf";[ \t]*{re.escape(REFRESH_COOKIE)}[ \t]*=[ \t]*([^;]*)")


class BrowserMode:
    """Browser mode of one app: which logins answer with cookies, the cookies themselves, and the
    double-submit CSRF token, a MAC of the session id under a key only this edge holds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._csrf = CsrfTokens.from_master(MasterKey(settings.secret.get_secret_value()))
        self._origins = _allowed_origins(settings.issuer, settings.cors_origins, dev=settings.dev)

    def wants_cookie(self, mode: str | None) -> bool:
        """Whether a login answers in cookie mode: ``KEYTURN_COOKIE_MODE``, else the client's choice.

        Raises:
            InvalidRequest: the client asked for a mode this deployment does not offer.
        """
        rule = self.settings.cookie_mode
        if rule == "auto":
            return mode == "cookie"
        if mode is not None and (mode == "cookie") != (rule == "always"):
            raise InvalidRequest(f"This server does not deliver refresh tokens in {mode} mode.")
        return rule == "always"

    def token_response(self, pair: TokenPair, *, cookie: bool) -> JSONResponse:
        """The token response; in cookie mode the refresh token goes only into its cookie, next to
        the session's CSRF token in a cookie the page can read."""
        response = JSONResponse(token_body(pair, refresh_token=not cookie))
        if cookie:
            samesite = self.settings.cookie_samesite
            age = pair.refresh_token_expires_in
            response.set_cookie(
                REFRESH_COOKIE, pair.refresh_token, max_age=age, path=REFRESH_PATH, secure=True, httponly=True,
                samesite=samesite,
            )  # fmt: skip
            csrf = self._csrf.token(uuid.UUID(pair.session_id))
            response.set_cookie(CSRF_COOKIE, csrf, max_age=age, path="/", secure=True, samesite=samesite)
        return response

    def check_cookie_request(self, request: Request) -> None:
        """What a state-changing request that carries the refresh cookie must pass before its token
        is even read: an allowed origin, and for a POST a JSON body (which no form can send).

        Raises:
            OriginNotAllowed, ContentTypeNotAllowed.
        """
        self.check_origin(request)
        if request.method == "POST":
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != "application/json":
                raise ContentTypeNotAllowed()

    def check_csrf(self, request: Request, session_id: uuid.UUID) -> None:
        """The request's ``X-CSRF-Token`` must be the one of the session its cookie names.

        Raises:
            CsrfTokenInvalid: missing, or another session's.
        """
        self._csrf.check(session_id, request.headers.get(CSRF_HEADER))

    def check_origin(self, request: Request) -> None:
        """The request must come from the issuer's origin or one listed in ``KEYTURN_CORS_ORIGINS``.

        Never from "this server's own origin" as the request names it: ``Host`` is written by the
        client (and by whatever proxy or DNS name reaches us), so trusting it trusts anyone.

        Without an Origin header, Fetch Metadata must say ``same-origin``.

        Raises:
            OriginNotAllowed: anything else, including ``Origin: null``.
        """
        origin = request.headers.get("origin")
        if origin is None:
            if request.headers.get("sec-fetch-site") == "same-origin":
                return
            raise OriginNotAllowed("The request has no Origin header, so it cannot use the session cookie.")
        if origin not in self._origins:
            raise OriginNotAllowed()

    def clear(self, response: R) -> R:
        """Expire both cookies (with the attributes they were set with, or browsers ignore it)."""
        samesite = self.settings.cookie_samesite
        response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH, secure=True, httponly=True, samesite=samesite)
        response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite=samesite)
        return response


def token_body(pair: TokenPair, *, refresh_token: bool = True) -> dict[str, Any]:
    """The JSON body of a token response: ``TokenPair``'s fields, without the refresh token in
    cookie mode."""
    return {name: getattr(pair, name) for name in _TOKEN_FIELDS if refresh_token or name != "refresh_token"}


_TOKEN_FIELDS = tuple(f.name for f in fields(TokenPair))


def refresh_cookie(request: Request) -> str | None:
    """The refresh cookie's value, or ``None`` when the request has none; the last one wins.

    Looked up by one linear scan of the ``Cookie`` headers instead of ``request.cookies``, which
    unquotes every cookie with ``http.cookies._unquote``: quadratic in a quoted value of
    backslashes before Python 3.11.10 (CVE-2024-7592). A refresh token is base64url, so its value
    needs no unquoting (RFC 6265 §4.1.1 allows a pair of double quotes around it; they are dropped).
    """
    return _refresh_cookie(request.headers.getlist("cookie"))


def _refresh_cookie(headers: Iterable[str]) -> str | None:
    found = None
    for header in headers:
        for pair in _REFRESH_PAIR.finditer(";" + header):
            found = pair[1].rstrip(" \t")
    if found is not None and len(found) >= 2 and found[0] == found[-1] == '"':
        return found[1:-1]
    return found


class CookieFilter:
    """Leaves nothing in a request's ``Cookie`` headers but one refresh cookie of cookie characters
    (RFC 6265 §4.1.1; any other value is emptied, and refused later like any malformed token).

    FastAPI parses every request's cookies with Starlette's ``request.cookies``, for cookie
    parameters (keyturn has none), and so does whatever else reads them: after this middleware
    they parse one short pair with nothing to unquote, whatever the client sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers", [])
            sent = [value.decode("latin-1") for name, value in headers if name == b"cookie"]
            if sent:
                kept = [(name, value) for name, value in headers if name != b"cookie"]
                token = _refresh_cookie(sent)
                if token is not None:
                    token = token if _COOKIE_VALUE.fullmatch(token) else ""
                    kept.append((b"cookie", f"{REFRESH_COOKIE}={token}".encode("latin-1")))
                scope["headers"] = kept  # in place: outer middleware reads what the router adds to it
        await self.app(scope, receive, send)


def _allowed_origins(issuer: str, listed: tuple[str, ...], *, dev: bool) -> frozenset[str]:
    """The issuer's origin and the listed ones; in development, also the issuer's other loopback
    names (the page opened at http://localhost:8000 when the issuer says 127.0.0.1). All of it
    comes from the settings, never from the request."""
    parts = urlsplit(issuer)
    origins = {f"{parts.scheme}://{parts.netloc}", *listed}
    if dev and parts.hostname and is_loopback_host(parts.hostname):
        port = "" if parts.port is None else f":{parts.port}"
        origins |= {f"{parts.scheme}://{name}{port}" for name in ("127.0.0.1", "localhost", "[::1]")}
    return frozenset(origins)
