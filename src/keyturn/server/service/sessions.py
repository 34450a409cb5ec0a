"""Using and ending sessions: authenticate an access token, list devices, sign out."""

from __future__ import annotations

import uuid
from datetime import datetime

from ...core.errors import (
    InsufficientScope,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    NotFound,
    SessionEnded,
    UnknownSession,
)  # fmt: skip
from ...core.refresh import RefreshToken
from ...core.roles import ADMIN, parse_roles
from ...core.sessions import SessionBounds
from ...core.tokens import AccessClaims
from ..store import SessionRecord
from .context import Caller, Client, Context, parse_uuid, state_of
from .signin import device_label

__all__ = ["SessionUse", "session_ended"]


class SessionUse:
    """Authenticated requests and sign-out, for ``AuthService``."""

    ctx: Context

    async def authenticate(self, access_token: object) -> Caller:
        """Verify an access token and check that its session and user are still live.

        Raises:
            InvalidToken (or a subclass), Unavailable.
        """
        now = self.ctx.clock()
        return await self.caller_of(await self.ctx.verify_access(access_token, now), now)

    async def caller_of(self, claims: AccessClaims, now: datetime) -> Caller:
        """The caller of verified ``claims``, if their session and user are live at ``now``.

        Raises:
            SessionEnded, Unavailable.
        """
        sid = parse_uuid(claims.sid)
        found = await self.ctx.store.session_and_user(sid) if sid else None
        if found is None:
            raise session_ended()
        session, user = found
        if str(user.id) != claims.sub or not SessionBounds.at(now, self.ctx.lifetimes).is_live(state_of(session, user)):
            raise session_ended()
        return Caller(claims, user, session)

    def require_admin(self, caller: Caller) -> None:
        """The admin API needs both: a token issued with the ``admin`` scope, and the ``admin`` role
        on the user *now* (read with the session on this request), so a revoked role ends admin
        access at once, not at the token's expiry.

        Raises:
            InsufficientScope: either is missing.
        """
        caller.claims.require((ADMIN,))
        if ADMIN not in parse_roles(caller.user.roles):
            raise InsufficientScope((ADMIN,))

    async def logout(self, caller: Caller | None, refresh_token: RefreshToken | object, client: Client) -> None:
        """End one session, named by the access token, the refresh token, or both (then they must
        name the same session: one party's access token never ends another party's session).
        The refresh token is one read by ``read_refresh_token``, or as presented, or None.

        Raises:
            InvalidGrant: the refresh token names no session.
            InvalidRequest: the access token and the refresh token name different sessions.
        """
        presented = None if refresh_token is None else self.ctx.presented(refresh_token)
        if presented is None:
            if caller is None:
                raise MissingToken("Send a bearer access token or a refresh_token.")
            await self._revoke(caller.user.id, client, "logout", only=caller.session.id)
            return
        if caller is not None and presented.session_id != caller.session.id:
            raise InvalidRequest(
                "The access token and the refresh token belong to different sessions.", reason="session_mismatch"
            )
        async with self.ctx.store.read() as tx:
            record = await tx.session(presented.session_id)
        if record is None:
            raise UnknownSession()
        await self._revoke(record.user_id, client, "logout", only=record.id)

    async def logout_all(self, caller: Caller, client: Client) -> None:
        """End every session of the caller's user."""
        await self._revoke(caller.user.id, client, "logout_all")

    async def revoke_session(self, caller: Caller, session_id: str, client: Client) -> None:
        """End one of the caller's own sessions.

        Raises:
            NotFound: no live session of this user has that id.
        """
        sid = parse_uuid(session_id)
        if sid is None or not await self._revoke(caller.user.id, client, "session_revoked", only=sid):
            raise NotFound("No such session.")

    async def rename_session(
        self, caller: Caller, session_id: str, device_name: str | None, client: Client
    ) -> SessionRecord:
        """Name one of the caller's own live sessions, so the user can tell devices apart; the
        name is cleaned as at sign-in, and an empty one clears it. Audited ``session_renamed``.

        Raises:
            NotFound: no live session of this user has that id.
        """
        sid = parse_uuid(session_id)
        if sid is None:
            raise NotFound("No such session.")
        now = self.ctx.clock()
        bounds = SessionBounds.at(now, self.ctx.lifetimes)
        async with self.ctx.store.write() as tx:
            record = await tx.rename_session(sid, caller.user.id, device_label(device_name), bounds)
            if record is not None:
                await self.ctx.audit_session(tx, now, "session_renamed", client, record)
        if record is None:
            raise NotFound("No such session.")
        return record

    async def revoke_token(self, token: str, hint: str | None, client: Client, *, owner: str) -> None:
        """RFC 7009: end the session of a refresh token or of an access token (``hint`` says which
        to try first) issued to the client ``owner``. A token that names no live session, or is
        no token of ours, is no error: the caller answers 200 all the same (§2.2).

        Raises:
            InvalidGrant: the token was issued to another client (§2.1), Unavailable.
        """
        tries = (self._revoke_access, self._revoke_refresh)
        for revoke in tries if hint == "access_token" else tries[::-1]:
            if await revoke(token, client, owner):
                return

    async def _revoke_refresh(self, token: str, client: Client, owner: str) -> bool:
        try:
            presented = self.ctx.presented(token)
        except InvalidGrant:
            return False
        async with self.ctx.store.read() as tx:
            record = await tx.session(presented.session_id)
        if record is not None:
            _owned(record.client_id, owner)
            await self._revoke(record.user_id, client, "logout", only=record.id)
        return True

    async def _revoke_access(self, token: str, client: Client, owner: str) -> bool:
        try:
            caller = await self.authenticate(token)
        except InvalidToken:
            return False
        _owned(caller.session.client_id, owner)
        await self._revoke(caller.user.id, client, "logout", only=caller.session.id)
        return True

    async def _revoke(self, user_id: uuid.UUID, client: Client, event: str, *, only: uuid.UUID | None = None) -> int:
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            ids = await tx.revoke_sessions(user_id, now, event, only=only, tokens_until=self.ctx.tokens_until(now))
            await self.ctx.audit(tx, now, event, client, user_id=user_id, session_id=only, count=len(ids))
        return len(ids)

    async def sessions(self, caller: Caller) -> list[SessionRecord]:
        """The user's live sessions, most recently used first."""
        bounds = SessionBounds.at(self.ctx.clock(), self.ctx.lifetimes)
        async with self.ctx.store.read() as tx:
            return await tx.live_sessions(caller.user.id, bounds)

    async def record_rate_limited(self, client: Client, kind: str, limit: str) -> None:
        """Audit a refused request (the caller decides how often: not once per 429)."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await self.ctx.audit(tx, now, "rate_limited", client, outcome="refused", kind=kind, limit=limit)


def session_ended() -> InvalidToken:
    """The refusal of an access token whose session or user is no longer live."""
    return SessionEnded()


def _owned(client_id: str, owner: str) -> None:
    if client_id != owner:
        raise InvalidGrant("The token was issued to another client.", reason="other_client")
