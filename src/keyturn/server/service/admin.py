"""Operator use cases behind the CLI: users, keys, sessions, token inspection, the audit log."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ...core.errors import InsufficientScope, KeyturnError, NotFound
from ...core.keys import SigningKey
from ...core.roles import ADMIN, format_roles, parse_roles
from ...core.sessions import SessionBounds
from ...core.tokens import AccessClaims
from ...core.users import normalize_username
from ..store import AuditRecord, SessionRecord, Store, Tx, UserRecord
from .context import Client, Context, parse_uuid, state_of

__all__ = [
    "MAX_AUDIT_LIMIT", "AdminService", "KeyStatus", "TokenReport", "still_admin", "unverified", "user_named",
]  # fmt: skip

_OPERATOR = Client(ip="", user_agent="keyturn-cli")
MAX_AUDIT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class KeyStatus:
    kid: str
    alg: str
    created_at: datetime | None
    activates_at: datetime | None
    retired_at: datetime | None
    published: bool
    signing: bool


@dataclass(frozen=True, slots=True)
class TokenReport:
    """What ``keyturn token inspect`` shows: the decoded parts and the verdict."""

    header: dict[str, Any]
    claims: dict[str, Any]
    verified: AccessClaims | None
    error: KeyturnError | None
    session: str = "unknown"
    """The state of the token's session: ``live``, ``ended: <reason> at <time>``, ``expired: idle``
    or ``expired: absolute``, or ``unknown`` (no session of this deployment has its ``sid``)."""

    @property
    def usable(self) -> bool:
        """Whether the token would be accepted: verified, and its session live."""
        return self.error is None and self.session == "live"


class AdminService:
    """What an operator does from the command line."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def users(self) -> list[UserRecord]:
        async with self.ctx.store.read() as tx:
            return await tx.list_users()

    async def user(self, username: str) -> UserRecord:
        return await user_named(self.ctx.store, username)

    async def disable_user(self, username: str) -> int:
        """Disable an account and end its sessions; returns how many sessions ended."""
        user = await self.user(username)
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await tx.disable_user(user.id, now)
            ended = await tx.revoke_sessions(user.id, now, "user_disabled", tokens_until=self.ctx.tokens_until(now))
            await self.ctx.audit(tx, now, "user_disabled", _OPERATOR, user_id=user.id, ended=len(ended))
        return len(ended)

    async def grant_role(self, username: str, role: str) -> bool:
        """Give ``username`` the ``role``; its next token carries the role's scopes. Returns False
        when the user already had it.

        Raises:
            NotFound: no such user. ValueError: no such role.
        """
        return await self._change_roles(username, role, grant=True)

    async def revoke_role(self, username: str, role: str) -> bool:
        """Take ``role`` from ``username``: refused at once where the role is checked (the admin
        API), and gone from the user's tokens at their next refresh. Returns False when the user
        did not have it.

        Raises:
            NotFound: no such user. ValueError: no such role.
        """
        return await self._change_roles(username, role, grant=False)

    async def _change_roles(self, username: str, role: str, *, grant: bool) -> bool:
        format_roles([role])  # an unknown role raises before anything is read
        user_id = (await self.user(username)).id
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            user = await tx.lock_user(user_id)
            if user is None:
                raise NotFound(f"No user named {username!r}.")
            roles = parse_roles(user.roles)
            changed = (role in roles) != grant
            if changed:
                await tx.set_roles(user.id, format_roles(roles | {role} if grant else roles - {role}))
                event = "role_granted" if grant else "role_revoked"
                await self.ctx.audit(tx, now, event, _OPERATOR, user_id=user.id, role=role)
        return changed

    async def keys(self) -> list[KeyStatus]:
        now = self.ctx.clock()
        ring = await self.ctx.keys.ring(now, force=True)
        published = {k.kid for k in ring.published(now)}
        try:
            signer = ring.signer(now).kid
        except KeyturnError:
            signer = None
        return [_status(k, k.kid in published, k.kid == signer) for k in ring.all()]

    async def rotate_key(self, delay: timedelta | None = None, *, by: uuid.UUID | None = None) -> SigningKey:
        """Publish a new key; it signs after ``delay`` (default ``KEYTURN_KEY_PUBLISH_DELAY``).

        Args:
            delay: how long the new key is published before it signs.
            by: the user asking over HTTP; their admin role is checked again in the transaction
                that rotates (the operator's CLI passes nothing).

        Raises:
            InsufficientScope: ``by`` no longer holds the admin role (or is disabled).
        """
        now = self.ctx.clock()
        wait = self.ctx.settings.key_publish_delay if delay is None else delay
        async with self.ctx.store.write() as tx:
            await still_admin(tx, by)
            key = await self.ctx.keys.rotate(tx, now, wait)
            await self.ctx.audit(tx, now, "key_rotated", _OPERATOR, kid=key.kid, activates_at=str(key.activates_at))
        return key

    async def sessions(self, username: str | None = None) -> list[SessionRecord]:
        user_id = (await self.user(username)).id if username else None
        bounds = SessionBounds.at(self.ctx.clock(), self.ctx.lifetimes)
        async with self.ctx.store.read() as tx:
            return await tx.live_sessions(user_id, bounds, limit=1000)

    async def revoke_session(self, session_id: str) -> None:
        sid = parse_uuid(session_id)
        if sid is None:
            raise NotFound("No such session.")
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            record = await tx.session(sid)
            if record is None or record.revoked_at is not None:
                raise NotFound("No live session has that id.")
            until = self.ctx.tokens_until(now)
            await tx.revoke_sessions(record.user_id, now, "admin_revoked", only=sid, tokens_until=until)
            await self.ctx.audit(tx, now, "session_revoked", _OPERATOR, user_id=record.user_id, session_id=sid)

    async def audit(
        self,
        username: str | None = None,
        events: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[AuditRecord]:
        """Read the audit log, newest first.

        Args:
            username: Only this user's events (failed logins for unknown names belong to no user).
            events: Only these event names (``login``, ``refresh``, ...); empty means all.
            since: Only events at or after this aware time.
            until: Only events before this aware time.
            limit: At most this many events, from 1 to ``MAX_AUDIT_LIMIT``.

        Returns:
            The matching audit records, newest first.

        Raises:
            NotFound: no user has that name.
            ValueError: a naive ``since``/``until``, or a limit out of range.
        """
        if any(t is not None and t.utcoffset() is None for t in (since, until)):
            raise ValueError("since and until must be aware datetimes")
        if not 1 <= limit <= MAX_AUDIT_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_AUDIT_LIMIT}")
        user_id = (await self.user(username)).id if username is not None else None
        async with self.ctx.store.read() as tx:
            return await tx.audit_events(user_id=user_id, events=events, since=since, until=until, limit=limit)

    async def inspect(self, token: str) -> TokenReport:
        """Decode a token without trusting it, then verify it against this deployment's keys."""
        header, claims = unverified(token)
        now = self.ctx.clock()
        session = await self._session_state(claims.get("sid"), now)
        try:
            verified = await self.ctx.verify_access(token, now)
        except KeyturnError as exc:
            return TokenReport(header, claims, None, exc, session)
        return TokenReport(header, claims, verified, None, session)

    async def _session_state(self, sid: object, now: datetime) -> str:
        """What ``TokenReport.session`` says of the session named ``sid`` (read, not trusted)."""
        found = None
        if isinstance(sid, str) and (session_id := parse_uuid(sid)) is not None:
            async with self.ctx.store.read() as tx:
                found = await tx.session_and_user(session_id)
        if found is None:
            return "unknown"
        record, user = found
        if record.revoked_at is not None:
            return f"ended: {record.revoke_reason} at {record.revoked_at.isoformat(timespec='seconds')}"
        if user.disabled_at is not None:
            return "ended: user_disabled"
        bounds = SessionBounds.at(now, self.ctx.lifetimes)
        if bounds.is_live(state_of(record, user)):
            return "live"
        return "expired: idle" if record.rotated_at <= bounds.rotated_after else "expired: absolute"


async def still_admin(tx: Tx, by: uuid.UUID | None) -> None:
    """Check, in the transaction of an admin change asked for over HTTP, that the user ``by``
    still holds the admin role and is enabled (locking the row); the operator's CLI passes None.

    Raises:
        InsufficientScope: no longer an admin.
    """
    if by is not None:
        actor = await tx.lock_user(by)
        if actor is None or actor.disabled_at is not None or ADMIN not in parse_roles(actor.roles):
            raise InsufficientScope((ADMIN,))


def _status(key: SigningKey, published: bool, signing: bool) -> KeyStatus:
    return KeyStatus(key.kid, key.alg, key.created_at, key.activates_at, key.retired_at, published, signing)


async def user_named(store: Store, username: str) -> UserRecord:
    """The account named ``username`` (compared by its normalized key).

    Raises:
        InvalidRequest (not a username), NotFound.
    """
    _, key = normalize_username(username)
    async with store.read() as tx:
        user = await tx.user_by_key(key)
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWS, decoded without any check (empty for anything else): what
    to look up before verifying, never what to trust."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}, {}
    return _segment(parts[0]), _segment(parts[1])


def _segment(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # the C decoder recurses per nesting level
        return {}
    return value if isinstance(value, dict) else {}
