"""PostgreSQL's pooled connections: checked in one round trip before each use.

SQLAlchemy's ``pool_pre_ping`` checks a pooled asyncpg connection with ``;`` wrapped in ``BEGIN``
and ``ROLLBACK`` (for PgBouncer's transaction mode, which keyturn does not support: see
docs/deployment.md): three round trips before every transaction, as many as a refresh's own
statements. ``ping_on_checkout`` sends the ``;`` alone, with the connection in autocommit for that
moment, and treats a failure as pre-ping does: the connection and every one pooled before it are
dropped and a new one is opened, so a restarted database is picked up without an error.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import InvalidatePoolError

__all__ = ["ping_on_checkout"]


def ping_on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The pool's ``checkout`` event (``dbapi_connection``: SQLAlchemy's asyncpg adapter)."""
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.ping()
    except Exception as exc:
        raise InvalidatePoolError(f"pre-ping failed: {type(exc).__name__}") from exc
    finally:
        dbapi_connection.autocommit = False
