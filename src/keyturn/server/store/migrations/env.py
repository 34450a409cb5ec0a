"""Alembic environment: runs on the connection that ``Database.migrate`` hands in."""

from __future__ import annotations

from alembic import context

from keyturn.server.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `keyturn migrate`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
