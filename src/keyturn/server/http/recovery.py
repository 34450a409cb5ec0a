"""Recovery by email over HTTP: verify an address, ask for a new verification link, ask for a
password-reset link, and reset the password with one (``keyturn.server.service`` ``Recovery``).

Asking for a link answers 202 with the same body for every address, after the same work, and is
limited per address and per client IP. A refused link is 400 ``invalid_grant`` (never 401: the
browser's session cookie, if any, is left alone).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...core.emails import normalize_email
from ...core.errors import InvalidGrant
from ...verify.bearer import NO_STORE, error_body
from .body import JSONBodyRoute
from .routes import Limits, Svc, Who
from .schemas import Address, LinkToken, NewPassword

__all__ = ["RESEND_STATUS", "RESET_STATUS", "router"]

router = APIRouter(prefix="/v1/auth", tags=["recovery"], route_class=JSONBodyRoute)

RESEND_STATUS = "If that address belongs to an account that is not verified yet, a new link is on its way."
RESET_STATUS = "If that address belongs to an account, a link to choose a new password is on its way."
_LINK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "`invalid_grant` (the link) or `invalid_request`"}
}
_ASK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not an email address"},
    429: {"description": "Too many requests for this address or from this client"},
    503: {"description": "No mail is configured, or the store is unavailable"},
}


@router.post("/email/verify", responses=_LINK_ERRORS)
async def verify_email(body: LinkToken, svc: Svc, who: Who, lim: Limits) -> JSONResponse:
    """Use a verification link's token: the account's address is verified."""
    await lim.hit(lim.recovery_ip, "recovery-ip", who.ip)
    try:
        user = await svc.auth.verify_email(body.token, who)
    except InvalidGrant as exc:
        return _refused(exc)
    return JSONResponse({"email": user.email, "email_verified": True}, headers=NO_STORE)


@router.post("/email/resend", status_code=202, responses=_ASK_ERRORS)
async def resend_verification(body: Address, svc: Svc, who: Who, lim: Limits) -> JSONResponse:
    """Ask for a new verification link; the same answer for every address."""
    await _limit(lim, who.ip, body.email)
    await svc.auth.resend_verification(body.email, who)
    return JSONResponse({"status": RESEND_STATUS}, status_code=202, headers=NO_STORE)


@router.post("/password/forgot", status_code=202, responses=_ASK_ERRORS)
async def forgot_password(body: Address, svc: Svc, who: Who, lim: Limits) -> JSONResponse:
    """Ask for a link to choose a new password; the same answer for every address."""
    await _limit(lim, who.ip, body.email)
    await svc.auth.forgot_password(body.email, who)
    return JSONResponse({"status": RESET_STATUS}, status_code=202, headers=NO_STORE)


@router.post("/password/reset", responses=_LINK_ERRORS)
async def reset_password(body: NewPassword, svc: Svc, who: Who, lim: Limits) -> JSONResponse:
    """Use a reset link's token to set a new password; every session of the account ends."""
    await lim.hit(lim.recovery_ip, "recovery-ip", who.ip)
    try:
        ended = await svc.auth.reset_password(body.token, body.new_password, who)
    except InvalidGrant as exc:
        return _refused(exc)
    return JSONResponse({"sessions_ended": ended}, headers=NO_STORE)


async def _limit(lim: Limits, ip: str, email: str) -> None:
    _, key = normalize_email(email)  # a malformed address is 400 for everyone alike
    await lim.hit(lim.recovery_ip, "recovery-ip", ip)
    await lim.hit(lim.recovery_address, "recovery-address", key)


def _refused(exc: InvalidGrant) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.description), status_code=400, headers=NO_STORE)
