"""The tables: one schema for SQLite and PostgreSQL (Alembic migrations create it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)

__all__ = [
    "UTCDateTime", "audit_events", "clients", "email_tokens", "metadata", "outbox", "revocation_feed", "revocations",
    "sessions", "signing_keys", "users",
]  # fmt: skip


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both dialects (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_BigId = BigInteger().with_variant(Integer, "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("username", String(64), nullable=False),
    Column("username_key", String(256), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("password_changed_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("roles", String(256), nullable=False, server_default=""),
    Column("email", String(254), nullable=True),
    Column("email_key", String(320), nullable=True, unique=True),  # keyturn.core.emails: one address, one account
    Column("email_verified_at", UTCDateTime, nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoke_reason", String(32), nullable=True),
    Column("client_id", String(128), nullable=False),
    Column("scope", String(1024), nullable=False),
    Column("user_agent", String(512), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("device_name", String(128), nullable=True),
    Column("password_attempts", Integer, nullable=False, server_default="0"),
    Index(None, "user_id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("private_sealed", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("activates_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("event", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("user_id", Uuid, nullable=True),
    Column("session_id", Uuid, nullable=True),
    Column("ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("detail", JSON, nullable=True),
    Index(None, "at"),
    Index(None, "user_id", "at"),
)

# The revocation feed (``keyturn.core.revocations``): one row per ended session, appended in the
# transaction that ends it, in commit order (see ``Tx.publish_ended``). AUTOINCREMENT on SQLite:
# a position is never handed out twice, even after pruning deletes the newest rows.
revocations = Table(
    "revocations",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("session_id", Uuid, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("until", UTCDateTime, nullable=False),
    Column("reason", String(32), nullable=False),
    Index(None, "until"),
    sqlite_autoincrement=True,
)

# One row: the feed's epoch, a random name for this database, so that a reader whose cursor came
# from another database (a restored backup, a new development file) starts over.
revocation_feed = Table(
    "revocation_feed",
    metadata,
    Column("epoch", String(32), primary_key=True),
)

# The OAuth client registry (``keyturn.core.clients``): confidential clients the operator
# registered. ``secret_mac`` is the keyed MAC of the secret, never the secret. ``grant_id`` is the
# ``sid`` of every access token the client holds by ``client_credentials``: ending them (disabling
# the client, or revoking one of its tokens) publishes it to the revocation feed and draws a new one.
clients = Table(
    "clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("auth_method", String(32), nullable=False),
    Column("secret_mac", String(128), nullable=True),
    Column("grant_types", String(256), nullable=False),
    Column("scope", String(1024), nullable=False),
    Column("audience", String(1024), nullable=False),
    Column("grant_id", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("secret_rotated_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
)

# The mail outbox (``keyturn.core.mail``): a message is written in the transaction that decides
# to send it, sealed, and sent by any instance after the commit; a claim is a lease
# (``lease_until``), so an instance that dies mid-send leaves it for another after the lease.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Uuid, primary_key=True),  # also the sealed message's associated data
    Column("sealed", LargeBinary, nullable=False),  # emptied once sent
    Column("kind", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("failed_at", UTCDateTime, nullable=True),
    Column("last_error", String(200), nullable=True),
    Index(None, "next_attempt_at"),
)

# Single-use links mailed to an address (``keyturn.core.emails``): only the keyed MAC of the token
# is stored, with the address it was sent to (a link stops working when the address changes).
email_tokens = Table(
    "email_tokens",
    metadata,
    Column("mac", String(64), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("email_key", String(320), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Index(None, "user_id"),
    Index(None, "expires_at"),
)
