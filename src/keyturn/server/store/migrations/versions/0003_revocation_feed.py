"""The revocation feed: ended sessions in commit order, and the database's feed epoch.

Sessions revoked in the day before the upgrade are entered too (kept for a day), so a resource
server following the feed after the upgrade refuses their access tokens as well.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from keyturn.server.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BACKFILL = timedelta(days=1)


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    revocations = op.create_table(
        "revocations",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_revocations"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_revocations_until", "revocations", ["until"])
    feed = op.create_table(
        "revocation_feed",
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("epoch", name="pk_revocation_feed"),
    )
    op.bulk_insert(feed, [{"epoch": uuid.uuid4().hex}])
    since = datetime.now(UTC) - _BACKFILL
    sessions = sa.table(
        "sessions", sa.column("id", sa.Uuid()), sa.column("revoked_at", UTCDateTime()),
        sa.column("revoke_reason", sa.String(32)),
    )  # fmt: skip
    query = (
        sa.select(sessions.c.id, sessions.c.revoked_at, sessions.c.revoke_reason)
        .where(sessions.c.revoked_at > since)
        .order_by(sessions.c.revoked_at)
    )
    rows = [
        {"session_id": sid, "at": at, "until": at + _BACKFILL, "reason": reason or "revoked"}
        for sid, at, reason in op.get_bind().execute(query)
    ]
    if rows:
        op.bulk_insert(revocations, rows)


def downgrade() -> None:
    op.drop_table("revocation_feed")
    op.drop_index("ix_revocations_until", table_name="revocations")
    op.drop_table("revocations")
