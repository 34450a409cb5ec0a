"""Browser mode: the refresh token in an HttpOnly cookie, and the checks that keep it from
being used by other sites (Origin / Fetch Metadata, JSON only, double-submit CSRF token).

SameSite=Strict alone is not enough: another port or subdomain of the same site is
"same-site" and gets the cookie, so every request that uses it must also come from an
allowed origin and carry the session's CSRF token.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import JSONResponse, Response

from ..config import Settings
from ..errors import ContentTypeNotAllowed, InvalidRequest, OriginNotAllowed
from ..service import Service, TokenPair

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "REFRESH_COOKIE",
    "check_cookie_request",
    "check_origin",
    "clear_session_cookies",
    "token_response",
    "wants_cookie",
]

R = TypeVar("R", bound=Response)
REFRESH_COOKIE = "__Secure-keyturn-refresh"
CSRF_COOKIE = "__Host-keyturn-csrf"
CSRF_HEADER = "x-csrf-token"
REFRESH_PATH = "/v1/auth"


def wants_cookie(mode: str | None, settings: Settings) -> bool:
    """Whether a login answers in cookie mode: ``KEYTURN_COOKIE_MODE``, else the client's choice.

    Raises:
        InvalidRequest: the client asked for a mode this deployment does not offer.
    """
    rule = settings.cookie_mode
    if rule == "auto":
        return mode == "cookie"
    if mode is not None and (mode == "cookie") != (rule == "always"):
        raise InvalidRequest(f"This server does not deliver refresh tokens in {mode} mode.")
    return rule == "always"


def token_response(pair: TokenPair, settings: Settings, *, cookie: bool) -> JSONResponse:
    """The token response; in cookie mode the refresh token goes only into the cookie."""
    body: dict[str, Any] = {
        "access_token": pair.access_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
        "refresh_token_expires_in": pair.refresh_token_expires_in,
        "session_id": pair.session_id,
        "scope": pair.scope,
    }
    if not cookie:
        body["refresh_token"] = pair.refresh_token
    response = JSONResponse(body)
    if cookie:
        samesite = settings.cookie_samesite
        age = pair.refresh_token_expires_in
        response.set_cookie(
            REFRESH_COOKIE, pair.refresh_token, max_age=age, path=REFRESH_PATH, secure=True, httponly=True,
            samesite=samesite,
        )  # fmt: skip
        response.set_cookie(CSRF_COOKIE, pair.csrf_token, max_age=age, path="/", secure=True, samesite=samesite)
    return response


def clear_session_cookies(response: R, settings: Settings) -> R:
    """Expire both cookies (with the attributes they were set with, or browsers ignore it)."""
    samesite = settings.cookie_samesite
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH, secure=True, httponly=True, samesite=samesite)
    response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite=samesite)
    return response


def check_origin(request: Request, settings: Settings) -> None:
    """The request must come from this server's own origin, the issuer's, or a listed one.

    Without an Origin header, Fetch Metadata must say ``same-origin``.

    Raises:
        OriginNotAllowed: anything else, including ``Origin: null``.
    """
    origin = request.headers.get("origin")
    if origin is None:
        if request.headers.get("sec-fetch-site") == "same-origin":
            return
        raise OriginNotAllowed("The request has no Origin header, so it cannot use the session cookie.")
    if origin not in _allowed_origins(request, settings):
        raise OriginNotAllowed()


def check_cookie_request(request: Request, svc: Service, refresh_token: str) -> None:
    """All checks for a state-changing request that carries the refresh cookie.

    Raises:
        OriginNotAllowed, ContentTypeNotAllowed, CsrfTokenInvalid, InvalidGrant (bad cookie).
    """
    check_origin(request, svc.settings)
    if request.method == "POST":
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise ContentTypeNotAllowed()
    session_id = svc.ctx.codec.decode(refresh_token).session_id
    svc.ctx.csrf.check(session_id, request.headers.get(CSRF_HEADER))


def _allowed_origins(request: Request, settings: Settings) -> set[str]:
    own = f"{request.url.scheme}://{request.url.netloc}"
    issuer = urlsplit(settings.issuer)
    return {own, f"{issuer.scheme}://{issuer.netloc}", *settings.cors_origins}
