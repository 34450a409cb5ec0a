"""Plain rows as the store hands them out; no SQLAlchemy objects leave ``store/``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: uuid.UUID
    username: str
    username_key: str
    password_hash: str = field(repr=False)
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None = None
    roles: str = ""
    """Space-separated role names (``keyturn.roles``), granted by the operator."""
    email: str | None = None
    email_key: str | None = None
    """The address's normalized key (``keyturn.core.emails``), unique."""
    email_verified_at: datetime | None = None

    @property
    def standing(self) -> Standing:
        return Standing(self.roles, self.email_verified_at is not None)


class Standing(NamedTuple):
    """What a user's tokens say about the user, read in the transaction that issues them."""

    roles: str
    email_verified: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: uuid.UUID
    user_id: uuid.UUID
    generation: int
    created_at: datetime
    rotated_at: datetime
    last_used_at: datetime
    client_id: str
    scope: str
    user_agent: str
    ip: str
    device_name: str | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = None
    password_attempts: int = 0
    """Password checks charged to this session since its last successful one (``change_password``)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    kid: str
    alg: str
    public_jwk: str
    private_sealed: bytes = field(repr=False)
    created_at: datetime
    activates_at: datetime
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime
    event: str
    outcome: str
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    ip: str | None = None
    user_agent: str | None = None
    detail: dict[str, Any] | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered OAuth client (``keyturn.core.clients``); lists are space-separated."""

    client_id: str
    name: str
    auth_method: str
    secret_mac: str | None = field(repr=False)
    grant_types: str
    scope: str
    audience: str
    grant_id: uuid.UUID
    created_at: datetime
    secret_rotated_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A message in the mail outbox (``keyturn.core.mail``); ``sealed`` is empty once sent."""

    id: uuid.UUID
    sealed: bytes = field(repr=False)
    kind: str
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    lease_until: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class EmailTokenRecord:
    """A single-use link mailed to an address: the MAC of its token, never the token."""

    mac: str
    user_id: uuid.UUID
    purpose: str  # "verify" or "reset"
    email_key: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
