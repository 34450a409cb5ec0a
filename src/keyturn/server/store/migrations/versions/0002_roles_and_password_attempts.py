"""Roles on users; password attempts charged to a session.

``users.roles`` replaces ``KEYTURN_ADMINS`` (authority granted by name); ``sessions.password_attempts``
counts the password checks a session has been charged for since its last successful one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("roles", sa.String(256), nullable=False, server_default=""))
    op.add_column("sessions", sa.Column("password_attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("password_attempts")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("roles")
