"""Accounts and sign-in: register, create a user, check a password and open a session."""

from __future__ import annotations

import hmac
import unicodedata
import uuid
from datetime import datetime

from ...core.emails import normalize_email
from ...core.errors import EmailNotVerified, InvalidCredentials, InvalidRequest, RegistrationClosed
from ...core.users import normalize_username
from ..store import SessionRecord, Tx, UserRecord
from . import messages
from .context import Client, Context, TokenPair, state_of

__all__ = ["SignIn", "changed_since_check", "device_label"]


class SignIn:
    """Registration and password sign-in, for ``AuthService``."""

    ctx: Context

    async def mail_verification(
        self, tx: Tx, user_id: uuid.UUID, email: str, email_key: str, now: datetime
    ) -> None: ...  # ``Recovery``'s

    async def register(self, username: object, password: object, client: Client, email: object = None) -> UserRecord:
        """Create an account when open registration is enabled (an address is required when
        ``KEYTURN_REQUIRE_VERIFIED_EMAIL`` is on).

        Raises:
            RegistrationClosed, InvalidRequest, PasswordPolicyError, UsernameTaken, Unavailable.
        """
        if not self.ctx.settings.allow_registration:
            raise RegistrationClosed()
        if email is None and self.ctx.settings.require_verified_email:
            raise InvalidRequest("An email address is required to sign up.", reason="email_required")
        return await self.create_user(username, password, client, email)

    async def create_user(self, username: object, password: object, client: Client, email: object = None) -> UserRecord:
        """Create an account (also used by the CLI, whatever the registration setting); with an
        address, a verification link is posted.

        An address another account has gets the same answer (a record of an account that is not
        stored) after the same work, and that account's owner is mailed instead: registration
        never tells whether an address is registered.
        """
        display, key = normalize_username(username)
        address = None if email is None else normalize_email(email)
        normalized = self.ctx.passwords.check_new(password)
        password_hash = await self.ctx.hash_password(normalized)
        now = self.ctx.clock()
        user = UserRecord(uuid.uuid4(), display, key, password_hash, now, now, email=address and address[0],
                          email_key=address and address[1])  # fmt: skip
        async with self.ctx.store.write() as tx:
            if await tx.insert_user(user):
                if address is not None and self.ctx.postman.enabled:
                    await self.mail_verification(tx, user.id, *address, now)
                await self.ctx.audit(tx, now, "register", client, user_id=user.id)
            else:
                await self._address_in_use(tx, address, now, client)
        return user

    async def _address_in_use(self, tx: Tx, address: tuple[str, str] | None, now: datetime, client: Client) -> None:
        """A sign-up with a registered address: tell the address's owner, not the caller."""
        owner = None if address is None else await tx.user_by_email(address[1])
        if owner is not None and owner.email is not None and self.ctx.postman.enabled:
            link = f"{self.ctx.settings.issuer.rstrip('/')}/"
            message = messages.address_in_use(self.ctx.settings.product_name, owner.email, link)
            await self.ctx.postman.post(tx, "address_in_use", message)
        await self.ctx.audit(tx, now, "register", client, outcome="refused", reason="email_taken")

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
        user = await self.ctx.store.user_by_key(key)
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
        in the same write transaction, the user (locked) is still enabled and still has that hash,
        and has a verified address where one is required. A password change, a disable or a new
        address that commits while the hash is being checked wins.

        Raises:
            InvalidCredentials; EmailNotVerified (the password was right: the owner is asking).
        """
        rehash = self.ctx.passwords.needs_rehash(checked.password_hash)
        new_hash = await self.ctx.hash_password(password) if rehash else None
        now = self.ctx.clock()
        record = self._new_session(checked, now, client, device_name)
        async with self.ctx.store.write() as tx:
            user = await tx.lock_user(checked.id)
            stale = changed_since_check(user, checked)
            if stale is None and self.ctx.settings.require_verified_email and user and not user.email_verified_at:
                stale = "email_not_verified"
            if stale is None:
                assert user is not None
                if new_hash is not None:
                    await tx.set_password_hash(user.id, new_hash, None, replacing=checked.password_hash)
                await tx.insert_session(record)
                await self.ctx.audit(tx, now, "login", client, user_id=user.id, session_id=record.id)
            else:
                await self.ctx.audit(tx, now, "login", client, outcome="failed", user_id=checked.id, reason=stale)
        if stale == "email_not_verified":
            raise EmailNotVerified()
        if stale is not None or user is None:
            raise InvalidCredentials()
        return await self.ctx.issue(record, state_of(record), now, user.standing)

    def _new_session(self, user: UserRecord, now: datetime, client: Client, device_name: str | None) -> SessionRecord:
        c = client.clipped()
        return SessionRecord(
            id=uuid.uuid4(),
            user_id=user.id,
            generation=0,
            created_at=now,
            rotated_at=now,
            last_used_at=now,
            client_id=self.ctx.settings.client_id,
            scope=self.ctx.settings.default_scope,
            user_agent=c.user_agent,
            ip=c.ip,
            device_name=device_label(device_name),
        )


def changed_since_check(user: UserRecord | None, checked: UserRecord) -> str | None:
    """Why a password checked against ``checked`` no longer opens ``user`` (its row as locked
    now), or None when it still does."""
    if user is None:
        return "unknown_user"
    if user.disabled_at is not None:
        return "user_disabled"
    if not hmac.compare_digest(user.password_hash.encode(), checked.password_hash.encode()):
        return "password_changed"
    return None


def device_label(name: str | None) -> str | None:
    """A device name fit to store and to show: control characters (NUL among them, which
    PostgreSQL refuses in text) and lone surrogates (no UTF-8 for them) dropped; 128 characters."""
    clean = "".join(ch for ch in name or "" if unicodedata.category(ch) not in ("Cc", "Cs"))[:128]
    return clean or None
