"""Operator routes over HTTP: reading the audit log, for access tokens with the ``admin`` scope."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ..errors import InsufficientScope, InvalidRequest
from ..service import Caller
from ..service.auth import ADMIN_SCOPE
from ..store import AuditRecord
from .routes import Authed, Svc

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])


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


def admin(me: Authed) -> Caller:
    """The caller, if its access token carries the ``admin`` scope (403 otherwise)."""
    if ADMIN_SCOPE not in me.claims.scope:
        raise InsufficientScope((ADMIN_SCOPE,))
    return me


@router.get("/audit", responses={401: {"description": "No valid token"}, 403: {"description": "Not an admin"}})
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
