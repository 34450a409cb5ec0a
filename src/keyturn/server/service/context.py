"""What every use case shares: settings, store, keys, codecs, clock, audit and token minting."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...core.clients import SecretMac
from ...core.mail import MessageSeal
from ...core.masterkey import MasterKey
from ...core.passwords import Passwords
from ...core.refresh import RefreshToken, RefreshTokenCodec
from ...core.roles import parse_roles, token_scope
from ...core.sessions import Lifetimes, SessionState, whole_seconds_left
from ...core.tokens import AccessClaims, issue_access_token
from ...verify import Verifier
from ..config import Settings
from ..mailer import mailer_for
from ..store import AuditRecord, SessionRecord, Standing, Store, Tx, UserRecord
from .keyring import KeyManager
from .postman import Postman

__all__ = [
    "AuditObserver", "Caller", "Client", "Context", "TokenPair", "parse_uuid", "state_of", "utcnow",
]  # fmt: skip

Clock = Callable[[], datetime]
AuditObserver = Callable[[AuditRecord], None]
"""Told of every audit row a use case writes (metrics count them); must be quick and not raise."""

_log = logging.getLogger("keyturn.service")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Client:
    """Who is on the other end of a request, as far as the audit log and device list care."""

    ip: str = ""
    user_agent: str = ""

    def clipped(self) -> Client:
        return Client(ip=self.ip[:64], user_agent=self.user_agent[:512])


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified access token whose session and user are live."""

    claims: AccessClaims
    user: UserRecord
    session: SessionRecord


@dataclass(frozen=True, slots=True)
class TokenPair:
    """The one shape of a token response: the RFC 6749 §5.1 names, plus the refresh token's
    lifetime, the session and the scope. The HTTP edge renders these fields (without
    ``refresh_token`` in cookie mode) and documents its schema from them."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_token_expires_in: int
    session_id: str
    scope: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


class Context:
    """The shared parts of the service layer."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        passwords: Passwords | None = None,
        clock: Clock = utcnow,
    ) -> None:
        master = MasterKey(settings.secret.get_secret_value())
        self.settings = settings
        self.store = store
        self.clock = clock
        self.keys = KeyManager(store, master, settings)
        # Verified tokens are remembered until their `exp`, as every resource server does: a
        # repeat costs a lookup, not a signature check. The session is still read on every request.
        self.verifier = Verifier(settings.issuer, settings.token_audience, keys=self.keys, leeway=settings.leeway)
        self.codec = RefreshTokenCodec.from_master(master)
        self.client_secrets = SecretMac(master.derive("keyturn/client-secret"))
        self.email_tokens = SecretMac(master.derive("keyturn/email-token"))
        self.postman = Postman(self, mailer_for(settings), MessageSeal(master))
        self.passwords = passwords or Passwords(
            min_length=settings.password_min_length, max_length=settings.password_max_length
        )
        self.lifetimes = Lifetimes(
            idle=settings.refresh_idle_ttl, absolute=settings.session_max_ttl, grace=settings.reuse_grace
        )
        self._verifiers: dict[str, Verifier] = {}
        self.audit_observers: list[AuditObserver] = []  # the HTTP layer's metrics add one
        self._hashing: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Apply migrations (if enabled) and make sure a key can sign."""
        if self.settings.auto_migrate:
            await self.store.db.migrate()
        await self.keys.ensure_signing_key(self.clock())

    async def verify_access(self, token: object, now: datetime) -> AccessClaims:
        """Verify an access token as every resource server does (``keyturn.verify.Verifier``), over
        the store's keys: an unknown ``kid`` (a key another instance just made) reloads them once.

        Raises:
            InvalidToken: one of its subclasses.
        """
        return await self.verifier.verify_async(token, now=now)

    def verifier_for(self, audience: str) -> Verifier:
        """A verifier of this deployment's tokens meant for ``audience`` (space-separated: a
        registered client's, whose tokens name its APIs rather than ``KEYTURN_AUDIENCE``)."""
        if audience == self.settings.token_audience:
            return self.verifier
        found = self._verifiers.get(audience)  # one per registered audience: the operator's, so few
        if found is None:
            found = self._verifiers[audience] = Verifier(
                self.settings.issuer, audience.split(), keys=self.keys, leeway=self.settings.leeway
            )
        return found

    def tokens_until(self, now: datetime) -> datetime:
        """The latest expiry of any access token issued up to ``now``, on any instance whose clock
        is within the leeway of ours: how long a session ended at ``now`` stays in the feed."""
        return now + self.settings.access_token_ttl + self.settings.leeway

    def presented(self, token: RefreshToken | object) -> RefreshToken:
        """A refresh token as the edge read it, or read now (format and MAC checked).

        Raises:
            MalformedRefreshToken, ForgedRefreshToken.
        """
        return token if isinstance(token, RefreshToken) else self.codec.decode(token)

    async def hash_password(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._hashers(), self.passwords.hash, password)

    async def verify_password(self, stored: str | None, password: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self._hashers(), self.passwords.verify, stored, password)

    def _hashers(self) -> ThreadPoolExecutor:
        """argon2id is CPU- and memory-bound: one thread per core this process may run on. More
        threads only time-slice the same cores and hold more 19 MiB buffers (a login flood)."""
        if self._hashing is None:
            self._hashing = ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="keyturn-argon2")
        return self._hashing

    def close(self) -> None:
        """Stop the hashing threads (a later hash starts new ones: an app may be started again)."""
        if self._hashing is not None:
            self._hashing.shutdown(wait=False)
            self._hashing = None

    async def issue(
        self, record: SessionRecord, state: SessionState, now: datetime, user: Standing, *, scope: str | None = None
    ) -> TokenPair:
        """Mint the token pair for a session state that is already committed, for a ``user`` as
        read in that same transaction; the scope is the session's with the scopes of the user's
        roles, or ``scope`` (a part of it the client asked for)."""
        ring = await self.keys.ring(now)
        scope = token_scope(record.scope, parse_roles(user.roles)) if scope is None else scope
        access, exp = issue_access_token(
            ring.signer(now),
            issuer=self.settings.issuer,
            audience=self.settings.token_audience,
            subject=str(record.user_id),
            session_id=str(record.id),
            client_id=record.client_id,
            scope=scope,
            now=now,
            ttl=self.settings.access_token_ttl,
            not_after=state.absolute_expiry(self.lifetimes),
            auth_time=record.created_at,
            email_verified=user.email_verified,
        )
        return TokenPair(
            access_token=access,
            # Both are at least 1: `exp` is at least `now + ttl` (ttl >= 1 s) unless the session's
            # end caps it, and a session issues nothing in its last second (sessions.py).
            expires_in=whole_seconds_left(datetime.fromtimestamp(exp, UTC), now),
            refresh_token=self.codec.encode(record.id, state.generation),
            refresh_token_expires_in=whole_seconds_left(state.expires_at(self.lifetimes), now),
            session_id=str(record.id),
            scope=scope,
        )

    async def audit(self, tx: Tx, now: datetime, event: str, client: Client, **fields: Any) -> None:
        """Record a security event (``fields``: as ``audit_record`` takes them) in the same
        transaction as the change it describes; the audit observers are told once that transaction
        has committed (a refusal that rolls it back, after a rotation in the same transaction, is
        never counted as the rotation)."""
        record = self.audit_record(now, event, client, **fields)
        await tx.audit(record)
        if self.audit_observers:
            tx.committed.append(lambda: self.observe(record))

    def audit_record(
        self,
        now: datetime,
        event: str,
        client: Client,
        *,
        outcome: str = "ok",
        user_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        **detail: Any,
    ) -> AuditRecord:
        """The audit row of a security event (``audit`` writes it; a statement that writes its
        own, ``Store.rotate_alone``, takes it)."""
        clipped = client.clipped()
        return AuditRecord(
            at=now,
            event=event,
            outcome=outcome,
            user_id=user_id,
            session_id=session_id,
            ip=clipped.ip or None,
            user_agent=clipped.user_agent or None,
            detail=detail or None,
        )

    def observe(self, record: AuditRecord) -> None:
        """Tell the audit observers of a committed event."""
        for observe in self.audit_observers:
            try:
                observe(record)
            except Exception:  # a broken observer must not fail a committed sign-in
                _log.exception("audit observer failed on %s", record.event)

    async def audit_session(
        self, tx: Tx, now: datetime, event: str, client: Client, record: SessionRecord, *,
        outcome: str = "ok", **detail: Any,
    ) -> None:  # fmt: skip
        """``audit`` for an event of one session (and so of its user)."""
        await self.audit(
            tx, now, event, client, outcome=outcome, user_id=record.user_id, session_id=record.id, **detail
        )


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def state_of(record: SessionRecord, user: UserRecord | None = None) -> SessionState:
    """The state-machine view of a session row (and of its user's row, when it was read)."""
    return SessionState(
        id=record.id,
        user_id=record.user_id,
        generation=record.generation,
        created_at=record.created_at,
        rotated_at=record.rotated_at,
        revoked_at=record.revoked_at,
        user_enabled=user is None or user.disabled_at is None,
    )


def parse_uuid(value: str) -> uuid.UUID | None:
    """The UUID a client or operator named (a session id, a token's ``sid``), or None for anything
    that is not one."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
