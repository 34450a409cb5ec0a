"""Accounts people can recover: addresses, verification links and password reset by email, and
the operator's own tools (set an address, set a password, enable an account).

A link's token is 256 random bits, mailed in the link's fragment and stored only as a keyed MAC,
with the address it was sent to: it works once (``Tx.use_email_token``: one conditional update),
until it expires, and only while the account still has that address. Asking for a link answers
the same for every address, known or not, after the same work: the request itself goes to the
outbox, and the mail sender decides, later, whether the address gets a link.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from ...core.emails import normalize_email
from ...core.errors import InvalidGrant, InvalidRequest, Unavailable
from ...core.mail import Message
from ..store import EmailTokenRecord, Tx, UserRecord
from . import messages
from .admin import user_named
from .context import Client, Context

__all__ = ["LINK_REFUSED", "Recovery"]

LINK_REFUSED = "This link is invalid or has expired; ask for a new one."
_TOKEN_PREFIX = "kt_et_"  # noqa: S105 - a prefix, so that a leaked link token is recognisable
_OPERATOR = Client(user_agent="keyturn-cli")
_SENDER = Client(user_agent="keyturn-mail")


class Recovery:
    """Verification and password reset by email, for ``AuthService``."""

    ctx: Context

    async def mail_verification(self, tx: Tx, user_id: uuid.UUID, email: str, email_key: str, now: datetime) -> None:
        """Post a verification link for ``email`` (older unused links for it stop working)."""
        token = await self._new_link(tx, user_id, "verify", email_key, now)
        await self.ctx.postman.post(tx, "verify", self._message("verify", email, token))

    async def verify_email(self, token: object, client: Client) -> UserRecord:
        """Use a verification link: the account's address is verified if it is still the one the
        link was sent to.

        Raises:
            InvalidGrant: ``LINK_REFUSED`` (unknown, used, expired, or the address changed).
        """
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            used = await tx.use_email_token(self._mac(token), "verify", now)
            if used is None or not await tx.mark_email_verified(used.user_id, used.email_key, now):
                raise InvalidGrant(LINK_REFUSED, reason="link_refused")
            await self.ctx.audit(tx, now, "email_verified", client, user_id=used.user_id)
            user = await tx.lock_user(used.user_id)
        assert user is not None
        return user

    async def resend_verification(self, email: object, client: Client) -> None:
        """Ask for a new verification link for an address (see ``_ask``).

        Raises:
            Unavailable: no mail is configured (for every address alike).
        """
        await self._ask(email, client, "verification_requested", "verify_request")

    async def forgot_password(self, email: object, client: Client) -> None:
        """Ask for a password-reset link for an address (see ``_ask``).

        Raises:
            Unavailable: no mail is configured (for every address alike).
        """
        await self._ask(email, client, "password_reset_requested", "reset_request")

    async def _ask(self, email: object, client: Client, event: str, request: str) -> None:
        """Post the request itself, whatever the address: one write transaction with one outbox row
        and one audit row, the same statements for every address. Whether the address belongs to
        an account that gets a link is decided when the sender takes the request up
        (``compose_link``), after the answer has gone."""
        self._mail_on()
        display, _ = normalize_email(email)
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await self.ctx.postman.post(tx, request, Message(to=display, subject=request, text="", html=""))
            await self.ctx.audit(tx, now, event, client)

    async def compose_link(self, request: Message, kind: str) -> Message | None:
        """The mail a request asks for (``verify_request``, ``reset_request``), its link made now,
        or None when the address has no enabled account (or, for verification, a verified one)."""
        _, key = normalize_email(request.to)
        purpose = "verify" if kind == "verify_request" else "reset"
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            user = await tx.user_by_email(key)
            if user is None or user.email is None or user.disabled_at is not None:
                return None
            if purpose == "verify" and user.email_verified_at is not None:
                return None
            token = await self._new_link(tx, user.id, purpose, key, now)
            await self.ctx.audit(tx, now, f"{purpose}_link_sent", _SENDER, user_id=user.id)
        return self._message(purpose, user.email, token)

    async def reset_password(self, token: object, new_password: object, client: Client) -> int:
        """Use a reset link: the new password (the registration policy) replaces the old one,
        every session of the user ends, and the address counts as verified (the link proved it).
        Returns how many sessions ended.

        Raises:
            PasswordPolicyError, InvalidGrant (``LINK_REFUSED``), Unavailable.
        """
        normalized = self.ctx.passwords.check_new(new_password)
        new_hash = await self.ctx.hash_password(normalized)
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            used = await tx.use_email_token(self._mac(token), "reset", now)
            user = None if used is None else await tx.lock_user(used.user_id)
            if used is None or user is None or user.disabled_at is not None or user.email_key != used.email_key:
                raise InvalidGrant(LINK_REFUSED, reason="link_refused")
            await tx.mark_email_verified(user.id, used.email_key, now)
            return await self._replace_password(tx, user, new_hash, now, "password_reset", client)

    # the operator's tools

    async def set_email(self, username: str, email: str | None) -> UserRecord:
        """Give an account an address (unverified; a verification link is posted when mail is
        on), or remove it (None). Older links stop working.

        Raises:
            NotFound, InvalidRequest (``email_taken``: another account has it).
        """
        user = await user_named(self.ctx.store, username)
        display, key = normalize_email(email) if email is not None else (None, None)
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            if not await tx.set_email(user.id, display, key):
                raise InvalidRequest("Another account has that email address.", reason="email_taken")
            for purpose in ("verify", "reset"):
                await tx.retire_email_tokens(user.id, purpose, now)
            if display is not None and key is not None and self.ctx.postman.enabled:
                await self.mail_verification(tx, user.id, display, key, now)
            await self.ctx.audit(tx, now, "email_set", _OPERATOR, user_id=user.id)
            changed = await tx.lock_user(user.id)
        assert changed is not None
        return changed

    async def set_password(self, username: str, password: object) -> int:
        """The operator's reset: a new password (the registration policy) and every session of the
        account ended; returns how many."""
        user = await user_named(self.ctx.store, username)
        new_hash = await self.ctx.hash_password(self.ctx.passwords.check_new(password))
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            locked = await tx.lock_user(user.id)
            assert locked is not None
            return await self._replace_password(tx, locked, new_hash, now, "password_set", _OPERATOR)

    async def enable_user(self, username: str) -> bool:
        """Enable a disabled account again (its ended sessions stay ended); False if it was enabled."""
        user = await user_named(self.ctx.store, username)
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            changed = await tx.enable_user(user.id)
            if changed:
                await self.ctx.audit(tx, now, "user_enabled", _OPERATOR, user_id=user.id)
        return changed

    async def _replace_password(
        self, tx: Tx, user: UserRecord, new_hash: str, now: datetime, event: str, client: Client
    ) -> int:
        """A reset's writes (by link or by the operator): the new hash over the locked ``user``'s,
        reset links retired, every session ended, audited; how many sessions ended."""
        await tx.set_password_hash(user.id, new_hash, now, replacing=user.password_hash)
        await tx.retire_email_tokens(user.id, "reset", now)
        ended = await tx.revoke_sessions(user.id, now, "password_reset", tokens_until=self.ctx.tokens_until(now))
        await self.ctx.audit(tx, now, event, client, user_id=user.id, sessions_ended=len(ended))
        return len(ended)

    async def _new_link(self, tx: Tx, user_id: uuid.UUID, purpose: str, email_key: str, now: datetime) -> str:
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        await tx.retire_email_tokens(user_id, purpose, now)
        record = EmailTokenRecord(self._mac(token), user_id, purpose, email_key, now, now + self._ttl(purpose))
        await tx.insert_email_token(record)
        return token

    def _mail_on(self) -> None:
        if not self.ctx.postman.enabled:
            raise Unavailable("Recovery by email is not set up here; ask the operator.", reason="mail_off")

    def _mac(self, token: object) -> str:
        return self.ctx.email_tokens.digest(token if isinstance(token, str) else "")

    def _ttl(self, purpose: str) -> timedelta:
        return self.ctx.settings.email_token_ttl if purpose == "verify" else self.ctx.settings.reset_token_ttl

    def _message(self, purpose: str, email: str, token: str) -> Message:
        """The mail that carries a ``purpose`` link (``verify`` or ``reset``) to ``email``."""
        compose, action = (
            (messages.verify_email, "verify-email")
            if purpose == "verify"
            else (messages.reset_password, "reset-password")
        )
        link = f"{self.ctx.settings.issuer.rstrip('/')}/#{action}={token}"
        return compose(self.ctx.settings.product_name, email, link, self._ttl(purpose))
