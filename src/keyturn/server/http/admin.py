"""Operator routes over HTTP, for users with the ``admin`` role (``keyturn users grant NAME admin``),
whose tokens then carry the ``admin`` scope: the audit log and the signing keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ...core.errors import InvalidRequest
from ..config import parse_duration
from ..service import AuditRecord, Caller, KeyStatus
from .body import JSONBodyRoute
from .routes import Authed, Svc

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=JSONBodyRoute)


class AuditEvent(BaseModel):
    id: int | None
    at: datetime
    event: str
    outcome: str
    user_id: str | None
    session_id: str | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any] | None


class AuditLog(BaseModel):
    events: list[AuditEvent]


class Keys(BaseModel):
    keys: list[KeyStatus]


class Rotation(BaseModel):
    delay: str | None = None  # a duration such as 10m; the default is KEYTURN_KEY_PUBLISH_DELAY


_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid token"},
    403: {"description": "Not an admin"},
}


async def admin(me: Authed, svc: Svc) -> Caller:
    """The caller, if its token has the ``admin`` scope and its user the ``admin`` role (403 otherwise)."""
    svc.auth.require_admin(me)
    return me


@router.get("/audit", responses=_ADMIN_ERRORS)
async def audit(
    svc: Svc,
    _: Annotated[Caller, Depends(admin)],
    user: str | None = None,
    event: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AuditLog:
    """The audit log, newest first (filters: user, event (repeatable), since, until)."""
    if any(t is not None and t.utcoffset() is None for t in (since, until)):
        raise InvalidRequest("since and until need a time zone, e.g. 2026-01-01T00:00:00Z.")
    records = await svc.admin.audit(user, event or (), since, until, limit)
    return AuditLog(events=[_event(r) for r in records])


@router.get("/keys", responses=_ADMIN_ERRORS)
async def keys(svc: Svc, _: Annotated[Caller, Depends(admin)]) -> Keys:
    """Every stored signing key: published (in the JWKS) and signing now, or not."""
    return Keys(keys=await svc.admin.keys())


@router.post("/keys/rotate", status_code=201, responses={**_ADMIN_ERRORS, 400: {"description": "Bad delay"}})
async def rotate(svc: Svc, me: Annotated[Caller, Depends(admin)], body: Rotation | None = None) -> KeyStatus:
    """Publish a new signing key now; it takes over signing after ``delay``. Every instance
    publishes it within seconds; give verifiers' caches time (the default delay) before it signs."""
    try:
        delay = parse_duration(body.delay) if body and body.delay is not None else None
    except ValueError as exc:
        raise InvalidRequest(f"delay: {exc}") from None
    kid = (await svc.admin.rotate_key(delay, by=me.user.id)).kid
    return next(k for k in await svc.admin.keys() if k.kid == kid)


def _event(r: AuditRecord) -> AuditEvent:
    return AuditEvent(
        id=r.id,
        at=r.at,
        event=r.event,
        outcome=r.outcome,
        user_id=str(r.user_id) if r.user_id else None,
        session_id=str(r.session_id) if r.session_id else None,
        ip=r.ip,
        user_agent=r.user_agent,
        detail=r.detail,
    )
