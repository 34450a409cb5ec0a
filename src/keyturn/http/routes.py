"""The first-party JSON API: HTTP in, service call, HTTP out; no business rules here."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import MissingToken
from ..service import Caller, Client, Service, TokenPair
from ..store import SessionRecord
from .schemas import (
    Credentials,
    LoginRequest,
    LogoutRequest,
    Me,
    PasswordChange,
    RefreshRequest,
    SessionOut,
    SessionsOut,
    TokenResponse,
    UserOut,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/auth", tags=["auth"])
_bearer = HTTPBearer(auto_error=False, description="An access token from /v1/auth/login or /v1/auth/refresh.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed request (`invalid_request`)"},
    401: {"description": "Refused credentials or token"},
    503: {"description": "Store unavailable (`temporarily_unavailable`); nothing was issued"},
}


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def client(request: Request) -> Client:
    host = request.client.host if request.client else ""
    return Client(ip=host, user_agent=request.headers.get("user-agent", ""))


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if credentials is None:
        raise MissingToken()
    return await service(request).auth.authenticate(credentials.credentials)


async def optional_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller | None:
    return None if credentials is None else await caller(request, credentials)


Svc = Annotated[Service, Depends(service)]
Who = Annotated[Client, Depends(client)]
Authed = Annotated[Caller, Depends(caller)]


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(**asdict(pair))


@router.post("/register", status_code=201, responses={**_ERRORS, 409: {"description": "Username taken"}})
async def register(body: Credentials, svc: Svc, who: Who) -> UserOut:
    """Create an account (when `KEYTURN_ALLOW_REGISTRATION` is on)."""
    user = await svc.auth.register(body.username, body.password, who)
    return UserOut(id=str(user.id), username=user.username, created_at=user.created_at)


@router.post("/login", responses=_ERRORS)
async def login(body: LoginRequest, svc: Svc, who: Who) -> TokenResponse:
    """Sign in with a password; opens a session and returns its first token pair."""
    return _tokens(await svc.auth.login(body.username, body.password, who, body.device_name))


@router.post("/refresh", responses=_ERRORS)
async def refresh(body: RefreshRequest, svc: Svc, who: Who) -> TokenResponse:
    """Rotate: trade the current refresh token for a new pair (each token works once)."""
    return _tokens(await svc.auth.refresh(body.refresh_token, who))


@router.post("/logout", status_code=204, responses=_ERRORS)
async def logout(
    svc: Svc,
    who: Who,
    me: Annotated[Caller | None, Depends(optional_caller)],
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    """End this session, named by the bearer token or by `refresh_token` in the body."""
    if me is None and (body is None or body.refresh_token is None):
        raise MissingToken("Send a bearer access token or a refresh_token.")
    await svc.auth.logout(me, body.refresh_token if body else None, who)
    return Response(status_code=204)


@router.post("/logout-all", status_code=204, responses=_ERRORS)
async def logout_all(svc: Svc, who: Who, me: Authed) -> Response:
    """End every session of this user."""
    await svc.auth.logout_all(me, who)
    return Response(status_code=204)


@router.get("/sessions", responses=_ERRORS)
async def sessions(svc: Svc, me: Authed) -> SessionsOut:
    """This user's live sessions (devices), most recently used first."""
    records = await svc.auth.sessions(me)
    return SessionsOut(sessions=[_session(r, me) for r in records])


@router.delete(
    "/sessions/{session_id}", status_code=204, responses={**_ERRORS, 404: {"description": "No such session"}}
)
async def end_session(session_id: str, svc: Svc, who: Who, me: Authed) -> Response:
    """End one of this user's sessions."""
    await svc.auth.revoke_session(me, session_id, who)
    return Response(status_code=204)


@router.get("/me", responses=_ERRORS)
async def whoami(me: Authed) -> Me:
    """The caller, from the access token (whose session must still be live)."""
    c = me.claims
    return Me(
        sub=c.sub,
        username=me.user.username,
        session_id=c.sid,
        client_id=c.client_id,
        scope=" ".join(c.scope),
        exp=c.exp,
        iat=c.iat,
        auth_time=c.auth_time,
    )


@router.post("/password", responses=_ERRORS)
async def change_password(body: PasswordChange, svc: Svc, who: Who, me: Authed) -> TokenResponse:
    """Change the password: every other session ends; this one gets a fresh pair."""
    return _tokens(await svc.auth.change_password(me, body.current_password, body.new_password, who))


def _session(record: SessionRecord, me: Caller) -> SessionOut:
    return SessionOut(
        id=str(record.id),
        current=record.id == me.session.id,
        user_agent=record.user_agent,
        ip=record.ip,
        device_name=record.device_name,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
    )
