"""The user-facing use cases, one transaction each: register, login, refresh, logout, ..."""

from __future__ import annotations

import hmac
import unicodedata
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from ...core.errors import (
    InsufficientScope,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    NotFound,
    RefreshTokenReused,
    RegistrationClosed,
    Unavailable,
    UnknownSession,
)
from ...core.refresh import RefreshToken
from ...core.roles import ADMIN, parse_roles
from ...core.sessions import Action, decide_refresh, rotation_bounds
from ...core.tokens import AccessClaims
from ...core.users import normalize_username
from ..store import SessionRecord, Tx, UserRecord
from .context import Client, Context, TokenPair, state_of

__all__ = ["AuthService", "Caller"]

_CAS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified access token whose session and user are live."""

    claims: AccessClaims
    user: UserRecord
    session: SessionRecord


class AuthService:
    """Register, sign in, rotate, sign out; every method is one use case."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def register(self, username: object, password: object, client: Client) -> UserRecord:
        """Create an account when open registration is enabled.

        Raises:
            RegistrationClosed, InvalidRequest, PasswordPolicyError, UsernameTaken, Unavailable.
        """
        if not self.ctx.settings.allow_registration:
            raise RegistrationClosed()
        return await self.create_user(username, password, client)

    async def create_user(self, username: object, password: object, client: Client) -> UserRecord:
        """Create an account (also used by the CLI, whatever the registration setting)."""
        display, key = normalize_username(username)
        normalized = self.ctx.passwords.check_new(password)
        password_hash = await self.ctx.hash_password(normalized)
        now = self.ctx.clock()
        user = UserRecord(uuid.uuid4(), display, key, password_hash, now, now)
        async with self.ctx.store.write() as tx:
            await tx.insert_user(user)
            await self.ctx.audit(tx, now, "register", client, user_id=user.id)
        return user

    async def login(
        self, username: object, password: object, client: Client, device_name: str | None = None
    ) -> TokenPair:
        """Check a password and open a session. Unknown user, wrong password and disabled
        account cost the same hashing work and get the same answer.

        Raises:
            InvalidCredentials, InvalidRequest, Unavailable.
        """
        _, key = normalize_username(username)
        normalized = self.ctx.passwords.normalize(password)
        async with self.ctx.store.read() as tx:
            user = await tx.user_by_key(key)
        try:
            await self.ctx.verify_password(user.password_hash if user else None, normalized)
            if user is None or user.disabled_at is not None:
                raise InvalidCredentials()
        except InvalidCredentials:
            await self._login_failed(user, client)
            raise
        return await self._open_session(user, normalized, client, device_name)

    async def _login_failed(self, user: UserRecord | None, client: Client) -> None:
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await self.ctx.audit(tx, now, "login", client, outcome="failed", user_id=user.id if user else None)

    async def _open_session(
        self, checked: UserRecord, password: str, client: Client, device_name: str | None
    ) -> TokenPair:
        """Insert the session of a sign-in whose password was checked against ``checked``: only if,
        in the same write transaction, the user (locked) is still enabled and still has that hash.
        A password change or a disable that commits while the hash is being checked wins."""
        rehash = self.ctx.passwords.needs_rehash(checked.password_hash)
        new_hash = await self.ctx.hash_password(password) if rehash else None
        now = self.ctx.clock()
        c = client.clipped()
        record = SessionRecord(
            id=uuid.uuid4(),
            user_id=checked.id,
            generation=0,
            created_at=now,
            rotated_at=now,
            last_used_at=now,
            client_id=self.ctx.settings.client_id,
            scope=self.ctx.settings.default_scope,
            user_agent=c.user_agent,
            ip=c.ip,
            device_name=_device_label(device_name),
        )
        async with self.ctx.store.write() as tx:
            user = await tx.lock_user(checked.id)
            stale = _changed_since_check(user, checked)
            if stale is None:
                assert user is not None
                if new_hash is not None:
                    await tx.set_password_hash(user.id, new_hash, None, replacing=checked.password_hash)
                await tx.insert_session(record)
                await self.ctx.audit(tx, now, "login", client, user_id=user.id, session_id=record.id)
            else:
                await self.ctx.audit(tx, now, "login", client, outcome="failed", user_id=checked.id, reason=stale)
        if stale is not None or user is None:
            raise InvalidCredentials()
        return await self.ctx.issue(record, state_of(record), now, user.roles)

    async def refresh(self, refresh_token: object, client: Client) -> TokenPair:
        """Rotate a session: the current token moves it one generation on; the previous one,
        inside the grace window, gets the same answer; anything older revokes the session.

        The revocation and its audit event are committed before the refusal is raised.

        Raises:
            InvalidGrant (one of its subclasses), Unavailable.
        """
        presented = self.ctx.codec.decode(refresh_token)
        now = self.ctx.clock()
        for attempt in range(_CAS_ATTEMPTS):
            async with self.ctx.store.write() as tx:
                # Most refreshes present the current token of a live session: one statement.
                found = await self._rotate_current(tx, presented, now, client) if attempt == 0 else None
                error: InvalidGrant | None = None
                if found is None:
                    found, error = await self._decide(tx, presented, now, client)
            if error is not None:
                raise error
            if found is not None:
                record, roles = found
                return await self.ctx.issue(record, state_of(record), now, roles)
        raise Unavailable("The session is being refreshed too often; try again.")

    async def _rotate_current(
        self, tx: Tx, presented: RefreshToken, now: datetime, client: Client
    ) -> tuple[SessionRecord, str] | None:
        """Rotate when ``decide_refresh`` would (the same rule, as bounds on the row and its
        user), or None; with the rotated row, the user's roles as they are now."""
        rotated_after, created_from = rotation_bounds(now, self.ctx.lifetimes)
        found = await tx.rotate_current(
            presented.session_id, presented.generation, now, rotated_after=rotated_after, created_from=created_from
        )
        if found is not None:
            await self._audit_rotation(tx, now, client, found[0])
        return found

    async def _decide(
        self, tx: Tx, presented: RefreshToken, now: datetime, client: Client
    ) -> tuple[tuple[SessionRecord, str] | None, InvalidGrant | None]:
        """Read the session and its user and act on ``decide_refresh``; ``(None, None)`` when
        another caller rotated it first (decide again on the new row)."""
        found = await tx.session_and_user(presented.session_id)
        if found is None:
            raise UnknownSession()
        record, user = found
        try:
            action = decide_refresh(state_of(record, user), presented.generation, now, self.ctx.lifetimes)
        except InvalidGrant as exc:
            if exc.reason == "user_disabled":  # a sign-in that raced the disable: end it now
                await tx.revoke_sessions(record.user_id, now, "user_disabled", only=record.id)
            await self._audit_session(tx, now, "refresh", client, record, outcome="refused", reason=exc.reason)
            return (record, user.roles), exc
        if action is Action.ROTATE and not await tx.rotate_session(record.id, record.generation, now):
            return None, None
        applied, error = await self._apply(tx, action, record, now, client)
        return (applied, user.roles), error

    async def _apply(
        self, tx: Tx, action: Action, record: SessionRecord, now: datetime, client: Client
    ) -> tuple[SessionRecord, InvalidGrant | None]:
        if action is Action.ROTATE:
            record = replace(record, generation=record.generation + 1, rotated_at=now, last_used_at=now)
            await self._audit_rotation(tx, now, client, record)
            return record, None
        if action is Action.REPLAY:
            await self._audit_session(tx, now, "refresh_replay", client, record, generation=record.generation)
            return record, None
        await tx.revoke_sessions(record.user_id, now, "reuse_detected", only=record.id)
        await self._audit_session(tx, now, "reuse_detected", client, record, outcome="revoked")
        return record, RefreshTokenReused()

    async def _audit_rotation(self, tx: Tx, now: datetime, client: Client, record: SessionRecord) -> None:
        """The audit row of a rotation; ``record`` is the session as rotated."""
        await self._audit_session(tx, now, "refresh", client, record, generation=record.generation)

    async def authenticate(self, access_token: object) -> Caller:
        """Verify an access token and check that its session and user are still live.

        Raises:
            InvalidToken (or a subclass), Unavailable.
        """
        now = self.ctx.clock()
        claims = await self.ctx.verify_access(access_token, now)
        sid = _parse_uuid(claims.sid)
        async with self.ctx.store.read() as tx:
            found = await tx.session_and_user(sid) if sid else None
        if found is None or not self._live(found, claims, now):
            raise _session_ended()
        return Caller(claims, found[1], found[0])

    def _live(self, found: tuple[SessionRecord, UserRecord], claims: AccessClaims, now: datetime) -> bool:
        session, user = found
        return (
            str(user.id) == claims.sub
            and session.revoked_at is None
            and user.disabled_at is None
            and now < state_of(session, user).absolute_expiry(self.ctx.lifetimes)
        )

    def require_admin(self, caller: Caller) -> None:
        """The admin API needs both: a token issued with the ``admin`` scope, and the ``admin`` role
        on the user *now* (read with the session on this request), so a revoked role ends admin
        access at once, not at the token's expiry.

        Raises:
            InsufficientScope: either is missing.
        """
        if ADMIN not in caller.claims.scope or ADMIN not in parse_roles(caller.user.roles):
            raise InsufficientScope((ADMIN,))

    async def logout(self, caller: Caller | None, refresh_token: object, client: Client) -> None:
        """End one session, named by the access token, the refresh token, or both (then they must
        name the same session: one party's access token never ends another party's session).

        Raises:
            InvalidGrant: the refresh token is not one of ours.
            InvalidRequest: the access token and the refresh token name different sessions.
        """
        if refresh_token is None and caller is not None:
            user_id, session_id = caller.user.id, caller.session.id
        else:
            presented = self.ctx.codec.decode(refresh_token)
            if caller is not None and presented.session_id != caller.session.id:
                raise InvalidRequest(
                    "The access token and the refresh token belong to different sessions.", reason="session_mismatch"
                )
            async with self.ctx.store.read() as tx:
                record = await tx.session(presented.session_id)
            if record is None:
                raise UnknownSession()
            user_id, session_id = record.user_id, record.id
        await self._revoke(user_id, client, "logout", only=session_id)

    async def logout_all(self, caller: Caller, client: Client) -> None:
        """End every session of the caller's user."""
        await self._revoke(caller.user.id, client, "logout_all")

    async def revoke_session(self, caller: Caller, session_id: str, client: Client) -> None:
        """End one of the caller's own sessions.

        Raises:
            NotFound: no live session of this user has that id.
        """
        sid = _parse_uuid(session_id)
        if sid is None or not await self._revoke(caller.user.id, client, "session_revoked", only=sid):
            raise NotFound("No such session.")

    async def _revoke(self, user_id: uuid.UUID, client: Client, event: str, *, only: uuid.UUID | None = None) -> int:
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            ids = await tx.revoke_sessions(user_id, now, event, only=only)
            await self.ctx.audit(tx, now, event, client, user_id=user_id, session_id=only, count=len(ids))
        return len(ids)

    async def sessions(self, caller: Caller) -> list[SessionRecord]:
        """The user's live sessions, most recently used first."""
        now = self.ctx.clock()
        life = self.ctx.lifetimes
        async with self.ctx.store.read() as tx:
            records = await tx.live_sessions(caller.user.id, now - life.absolute)
        return [r for r in records if now < state_of(r).expires_at(life)]

    async def change_password(self, caller: Caller, current: object, new: object, client: Client) -> TokenPair:
        """Change the password, end every other session and rotate this one with no grace window
        (its refresh token from before the change is reuse from now on).

        A session may send a wrong current password ``KEYTURN_PASSWORD_CHANGE_FAILURES`` times;
        each check is charged to it before the hash is checked, so concurrent guesses cannot
        overrun that budget, and the session ends when it is spent: a stolen access token does
        not become an account takeover at hashing speed. Each failure is audited.

        Raises:
            InvalidCredentials: the current password is wrong (or changed meanwhile).
            PasswordPolicyError: the new password breaks the policy.
            InvalidToken: the session has ended (or just has, after too many wrong passwords).
        """
        current_pw = self.ctx.passwords.normalize(current)
        new_pw = self.ctx.passwords.check_new(new)
        await self._charge_password_check(caller, client)
        try:
            await self.ctx.verify_password(caller.user.password_hash, current_pw)
        except InvalidCredentials:
            await self._password_check_failed(caller, client)
            raise InvalidCredentials("The current password is incorrect.", reason="wrong_current_password") from None
        new_hash = await self.ctx.hash_password(new_pw)
        now = self.ctx.clock()
        for _ in range(_CAS_ATTEMPTS):
            async with self.ctx.store.write() as tx:
                user = await tx.lock_user(caller.user.id)  # first, as a sign-in and a disable lock it
                record = await tx.session(caller.session.id)
                if record is None or record.revoked_at is not None or user is None or user.disabled_at:
                    raise _session_ended()
                if _changed_since_check(user, caller.user) is not None:
                    raise InvalidCredentials("The current password is incorrect.", reason="password_changed")
                rekeyed = state_of(record, user).rekeyed(now)
                if not await tx.rotate_session(record.id, record.generation, now, to=rekeyed.generation):
                    continue
                await tx.set_password_hash(user.id, new_hash, now, replacing=caller.user.password_hash)
                await tx.clear_password_attempts(record.id)
                ended = await tx.revoke_sessions(user.id, now, "password_changed", keep=record.id)
                record = replace(
                    record, generation=rekeyed.generation, rotated_at=now, last_used_at=now, password_attempts=0
                )
                await self._audit_session(tx, now, "password_changed", client, record, ended=len(ended))
            return await self.ctx.issue(record, state_of(record, user), now, user.roles)
        raise Unavailable("The session is being refreshed too often; try again.")

    async def _charge_password_check(self, caller: Caller, client: Client) -> None:
        """Charge one password check to the caller's session, or end a session with none left."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            charged = await tx.charge_password_attempt(caller.session.id, self.ctx.settings.password_change_failures)
            if not charged:
                await self._end_for_guessing(tx, now, caller, client)
        if not charged:
            raise _session_ended()

    async def _password_check_failed(self, caller: Caller, client: Client) -> None:
        """Audit a wrong current password; the last one the session may send ends it."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            record = await tx.session(caller.session.id) or caller.session
            attempts = record.password_attempts
            await self._audit_session(tx, now, "password_changed", client, record, outcome="failed", attempts=attempts)
            if attempts >= self.ctx.settings.password_change_failures:
                await self._end_for_guessing(tx, now, caller, client)

    async def _end_for_guessing(self, tx: Tx, now: datetime, caller: Caller, client: Client) -> None:
        """End the caller's session, out of password checks (audited if this ended it)."""
        if await tx.revoke_sessions(caller.user.id, now, "password_guessing", only=caller.session.id):
            await self._audit_session(tx, now, "password_guessing", client, caller.session, outcome="revoked")

    async def record_rate_limited(self, client: Client, kind: str, limit: str) -> None:
        """Audit a refused request (the caller decides how often: not once per 429)."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await self.ctx.audit(tx, now, "rate_limited", client, outcome="refused", kind=kind, limit=limit)

    async def _audit_session(
        self,
        tx: Tx,
        now: datetime,
        event: str,
        client: Client,
        record: SessionRecord,
        *,
        outcome: str = "ok",
        **detail: object,
    ) -> None:
        await self.ctx.audit(
            tx, now, event, client, outcome=outcome, user_id=record.user_id, session_id=record.id, **detail
        )


def _session_ended() -> InvalidToken:
    return InvalidToken("The session of this access token has ended.", reason="session_revoked")


def _changed_since_check(user: UserRecord | None, checked: UserRecord) -> str | None:
    """Why a password checked against ``checked`` no longer opens ``user`` (its row as locked
    now), or None when it still does."""
    if user is None:
        return "unknown_user"
    if user.disabled_at is not None:
        return "user_disabled"
    if not hmac.compare_digest(user.password_hash.encode(), checked.password_hash.encode()):
        return "password_changed"
    return None


def _device_label(name: str | None) -> str | None:
    """A device name fit to store and to show: control characters (NUL among them, which
    PostgreSQL refuses in text) and lone surrogates (no UTF-8 for them) dropped; 128 characters."""
    clean = "".join(ch for ch in name or "" if unicodedata.category(ch) not in ("Cc", "Cs"))[:128]
    return clean or None


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
