"""The first-party JSON API: HTTP in, service call, HTTP out; no business rules here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.responses import JSONResponse

from ...core.errors import InvalidRequest, MissingToken
from ...core.refresh import RefreshToken
from ...integrations.fastapi import BearerToken
from ..service import Caller, Client, Service, SessionRecord
from .body import JSONBodyRoute
from .cookies import BrowserMode, refresh_cookie
from .ratelimit import RateLimits, client_ip
from .schemas import (
    LoginRequest,
    LogoutRequest,
    Me,
    PasswordChange,
    RefreshRequest,
    Registration,
    SessionOut,
    SessionRename,
    SessionsOut,
    TokenResponse,
    UserOut,
)

__all__ = ["router"]


T = TypeVar("T")
router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=JSONBodyRoute)
bearer_scheme = BearerToken(auto_error=False, description="An access token from /v1/auth/login or /v1/auth/refresh.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request (`invalid_request`)"},
    401: {"description": "Refused credentials or token"},
    403: {"description": "Cookie mode: Origin, content type or CSRF token refused"},
    503: {"description": "Store unavailable (`temporarily_unavailable`); nothing was issued"},
}
_TOKENS: dict[str, Any] = {"response_model": TokenResponse, "response_model_exclude_none": True, "responses": _ERRORS}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def limits(request: Request) -> RateLimits:
    found: RateLimits = request.app.state.limits
    return found


def browser(request: Request) -> BrowserMode:
    found: BrowserMode = request.app.state.browser
    return found


def client(request: Request) -> Client:
    ip = client_ip(request, service(request).settings.trusted_proxies)
    return Client(ip=ip, user_agent=request.headers.get("user-agent", ""))


def _dependency(get: Callable[[Request], T]) -> Callable[[Request], Awaitable[T]]:
    """``get`` as an ``async def`` dependency: FastAPI runs a plain ``def`` dependency in a worker
    thread, a thread hop on every request for what is a dictionary lookup."""

    async def dependency(request: Request) -> T:
        return get(request)

    return dependency


async def ceiling(request: Request) -> None:
    """The server-wide ceiling on auth requests (per process, or shared through Redis)."""
    lim = limits(request)
    await lim.hit(lim.ceiling, "global")


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Caller:
    if credentials is None:
        raise MissingToken()
    return await service(request).auth.authenticate(credentials.credentials)


async def optional_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Caller | None:
    return None if credentials is None else await caller(request, credentials)


async def session_cookie(request: Request) -> RefreshToken | None:
    """The refresh cookie's token, read once, after the CSRF checks every request that carries it
    must pass: origin and content type, then the token, then the session's CSRF token.

    Declared before the bearer dependency on each route, so a forged request is refused
    by these checks before anything else is looked at."""
    token = refresh_cookie(request)
    if token is None:
        return None
    edge = browser(request)
    edge.check_cookie_request(request)
    presented = service(request).auth.read_refresh_token(token)
    edge.check_csrf(request, presented.session_id)
    return presented


router.dependencies.append(Depends(ceiling))

Svc = Annotated[Service, Depends(_dependency(service))]
Limits = Annotated[RateLimits, Depends(_dependency(limits))]
Browser = Annotated[BrowserMode, Depends(_dependency(browser))]
Who = Annotated[Client, Depends(_dependency(client))]
Authed = Annotated[Caller, Depends(caller)]
Cookie = Annotated[RefreshToken | None, Depends(session_cookie)]


@router.post("/register", status_code=201, responses={**_ERRORS, 409: {"description": "Username taken"}})
async def register(body: Registration, svc: Svc, who: Who, lim: Limits) -> UserOut:
    """Create an account (when `KEYTURN_ALLOW_REGISTRATION` is on); limited per client IP. With an
    `email`, a verification link is mailed; an address another account has gets the same answer
    (its owner is mailed instead)."""
    await lim.hit(lim.register_ip, "register-ip", who.ip)
    user = await svc.auth.register(body.username, body.password, who, body.email)
    return UserOut(id=str(user.id), username=user.username, created_at=user.created_at)


@router.post("/login", **_TOKENS)
async def login(body: LoginRequest, request: Request, svc: Svc, who: Who, lim: Limits, edge: Browser) -> Response:
    """Sign in with a password; opens a session. With `"mode": "cookie"` the refresh token is
    set as an HttpOnly cookie instead of being returned."""
    cookie = edge.wants_cookie(body.mode)
    if cookie:
        edge.check_origin(request)  # no logging a victim into the attacker's account
    async with lim.login_attempt(body.username, who.ip):
        pair = await svc.auth.login(body.username, body.password, who, body.device_name)
    return edge.token_response(pair, cookie=cookie)


@router.post("/refresh", **_TOKENS)
async def refresh(
    svc: Svc,
    who: Who,
    lim: Limits,
    edge: Browser,
    cookie: Cookie,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> Response:
    """Rotate: trade the current refresh token (body, or cookie in browser mode) for a new pair."""
    from_body = body.refresh_token if body is not None else None
    if from_body is not None and svc.settings.cookie_mode == "always":
        raise InvalidRequest("This server takes refresh tokens only from its cookie.")
    presented = svc.auth.read_refresh_token(from_body) if from_body is not None else cookie
    if presented is None:
        raise InvalidRequest("Send refresh_token in the body, or the session cookie.")
    await lim.hit(lim.refresh_session, "refresh", str(presented.session_id))
    return edge.token_response(await svc.auth.refresh(presented, who), cookie=from_body is None)


@router.post("/logout", status_code=204, responses=_ERRORS)
async def logout(
    svc: Svc,
    who: Who,
    edge: Browser,
    cookie: Cookie,
    me: Annotated[Caller | None, Depends(optional_caller)],
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    """End this session, named by `refresh_token` in the body, the bearer token, or the cookie;
    when more than one is sent, they must name the same session."""
    from_body = body.refresh_token if body is not None else None
    presented = svc.auth.read_refresh_token(from_body) if from_body is not None else cookie
    await svc.auth.logout(me, presented, who)  # neither token: MissingToken
    return _no_content(edge, clear=cookie is not None)


@router.post("/logout-all", status_code=204, responses=_ERRORS)
async def logout_all(svc: Svc, who: Who, edge: Browser, cookie: Cookie, me: Authed) -> Response:
    """End every session of this user."""
    await svc.auth.logout_all(me, who)
    return _no_content(edge, clear=cookie is not None)


@router.get("/sessions", responses=_ERRORS)
async def sessions(svc: Svc, me: Authed) -> SessionsOut:
    """This user's live sessions (devices), most recently used first."""
    records = await svc.auth.sessions(me)
    return SessionsOut(sessions=[_session(r, me) for r in records])


@router.delete(
    "/sessions/{session_id}", status_code=204, responses={**_ERRORS, 404: {"description": "No such session"}}
)
async def end_session(session_id: str, svc: Svc, who: Who, edge: Browser, cookie: Cookie, me: Authed) -> Response:
    """End one of this user's sessions."""
    await svc.auth.revoke_session(me, session_id, who)
    return _no_content(edge, clear=cookie is not None and session_id == str(me.session.id))


@router.patch("/sessions/{session_id}", responses={**_ERRORS, 404: {"description": "No such session"}})
async def rename_session(
    session_id: str, body: SessionRename, svc: Svc, who: Who, cookie: Cookie, me: Authed
) -> SessionOut:
    """Name one of this user's sessions (devices); an empty name clears it."""
    record = await svc.auth.rename_session(me, session_id, body.device_name, who)
    return _session(record, me)


@router.get("/me", responses=_ERRORS)
async def whoami(me: Authed) -> Me:
    """The caller, from the access token (whose session must still be live)."""
    c = me.claims
    return Me(
        sub=c.sub, username=me.user.username, email=me.user.email, email_verified=me.user.email_verified_at is not None,
        session_id=c.sid, client_id=c.client_id, scope=" ".join(c.scope),
        exp=c.exp, iat=c.iat, auth_time=c.auth_time,
    )  # fmt: skip


@router.post("/password", **_TOKENS)
async def change_password(
    body: PasswordChange, svc: Svc, who: Who, lim: Limits, edge: Browser, cookie: Cookie, me: Authed
) -> JSONResponse:
    """Change the password: every other session ends; this one gets a fresh pair. Wrong current
    passwords count against the account's sign-in failure limits, and end the session after
    `KEYTURN_PASSWORD_CHANGE_FAILURES`."""
    async with lim.password_check(me.user.username_key, who.ip):
        pair = await svc.auth.change_password(me, body.current_password, body.new_password, who)
    return edge.token_response(pair, cookie=cookie is not None)


def _no_content(edge: BrowserMode, *, clear: bool) -> Response:
    response = Response(status_code=204)
    return edge.clear(response) if clear else response


def _session(record: SessionRecord, me: Caller) -> SessionOut:
    return SessionOut(
        id=str(record.id), current=record.id == me.session.id, user_agent=record.user_agent, ip=record.ip,
        device_name=record.device_name, created_at=record.created_at, last_used_at=record.last_used_at,
    )  # fmt: skip
