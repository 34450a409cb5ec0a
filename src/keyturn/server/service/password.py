"""Changing a password from a signed-in session, with a budget of wrong current passwords."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ...core.errors import InvalidCredentials, Unavailable
from ..store import Tx
from .context import Caller, Client, Context, TokenPair, state_of
from .refresh import CAS_ATTEMPTS
from .sessions import session_ended
from .signin import changed_since_check

__all__ = ["PasswordChange"]


class PasswordChange:
    """``change_password``, for ``AuthService``."""

    ctx: Context

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
        for _ in range(CAS_ATTEMPTS):
            issued = await self._store_new_password(caller, new_hash, now, client)
            if issued is not None:
                return issued
        raise Unavailable("The session is being refreshed too often; try again.")

    async def _store_new_password(
        self, caller: Caller, new_hash: str, now: datetime, client: Client
    ) -> TokenPair | None:
        """Write the new hash, rekey this session and end the others, in one transaction; None
        when a concurrent refresh rotated the session first (try again on the new row)."""
        async with self.ctx.store.write() as tx:
            user = await tx.lock_user(caller.user.id)  # first, as a sign-in and a disable lock it
            record = await tx.session(caller.session.id)
            if record is None or record.revoked_at is not None or user is None or user.disabled_at:
                raise session_ended()
            if changed_since_check(user, caller.user) is not None:
                raise InvalidCredentials("The current password is incorrect.", reason="password_changed")
            rekeyed = state_of(record, user).rekeyed(now)
            if not await tx.rotate_session(record.id, record.generation, now, to=rekeyed.generation):
                return None
            await tx.set_password_hash(user.id, new_hash, now, replacing=caller.user.password_hash)
            await tx.clear_password_attempts(record.id)
            ended = await tx.revoke_sessions(
                user.id, now, "password_changed", keep=record.id, tokens_until=self.ctx.tokens_until(now)
            )
            record = replace(
                record, generation=rekeyed.generation, rotated_at=now, last_used_at=now, password_attempts=0
            )
            await self.ctx.audit_session(tx, now, "password_changed", client, record, ended=len(ended))
        return await self.ctx.issue(record, state_of(record, user), now, user.standing)

    async def _charge_password_check(self, caller: Caller, client: Client) -> None:
        """Charge one password check to the caller's session, or end a session with none left."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            charged = await tx.charge_password_attempt(caller.session.id, self.ctx.settings.password_change_failures)
            if not charged:
                await self._end_for_guessing(tx, now, caller, client)
        if not charged:
            raise session_ended()

    async def _password_check_failed(self, caller: Caller, client: Client) -> None:
        """Audit a wrong current password; the last one the session may send ends it."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            record = await tx.session(caller.session.id) or caller.session
            attempts = record.password_attempts
            await self.ctx.audit_session(
                tx, now, "password_changed", client, record, outcome="failed", attempts=attempts
            )
            if attempts >= self.ctx.settings.password_change_failures:
                await self._end_for_guessing(tx, now, caller, client)

    async def _end_for_guessing(self, tx: Tx, now: datetime, caller: Caller, client: Client) -> None:
        """End the caller's session, out of password checks (audited if this ended it)."""
        until = self.ctx.tokens_until(now)
        if await tx.revoke_sessions(
            caller.user.id, now, "password_guessing", only=caller.session.id, tokens_until=until
        ):
            await self.ctx.audit_session(tx, now, "password_guessing", client, caller.session, outcome="revoked")
