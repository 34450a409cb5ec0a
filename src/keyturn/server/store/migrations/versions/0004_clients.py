"""The OAuth client registry: confidential clients, their secrets' MACs, grants, scopes and audiences.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.server.store.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("secret_mac", sa.String(128), nullable=True),
        sa.Column("grant_types", sa.String(256), nullable=False),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("audience", sa.String(1024), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("secret_rotated_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("client_id", name="pk_clients"),
    )


def downgrade() -> None:
    op.drop_table("clients")
