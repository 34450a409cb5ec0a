"""Why a database cannot be used, in words an operator can act on (``Database.check``).

Once serving, every database failure is ``Unavailable`` with a generic description (``Guard``):
clients learn nothing about the database. At start-up the operator is the reader, so the driver's
own reason is shown instead, never the password.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ...core.errors import KeyturnError, Unavailable

__all__ = ["OUTAGE", "Guard", "cause", "sqlite_problem"]

OUTAGE = (DBAPIError, InterfaceError, PoolTimeout, OSError, asyncio.TimeoutError)
_log = logging.getLogger("keyturn.store")


class Guard:
    """``Database.guard``: a database failure inside (one of ``OUTAGE``, not already a keyturn
    error) becomes ``Unavailable``, logged by its type only. A class rather than a generator
    function, as it runs around every point read and every write."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, _kind: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, OUTAGE) and not isinstance(exc, KeyturnError):
            _log.warning("database unavailable: %s", type(exc).__name__)
            raise Unavailable() from exc


def cause(exc: BaseException, timeout: float) -> str:
    """One line for a failure to connect: the driver's message without SQLAlchemy's wrapping."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, TimeoutError | PoolTimeout):
        return f"no answer within {timeout:g}s (KEYTURN_DB_TIMEOUT)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and listening on that host and port?)"
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def sqlite_problem(database: str | None, create_error: OSError | None) -> str | None:
    """Why SQLite could not keep its file at ``database`` (a path), or ``None``; ``create_error``
    is what creating the file (as the store does, private to its owner) raised."""
    if not database:
        return None
    path = Path(database)
    folder = path.parent
    if not folder.exists():
        return f"the directory {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if create_error is not None:
        return f"cannot create {path}: {create_error.strerror}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the directory {folder} is not writable (SQLite keeps its -wal and -shm files next to the database)"
    return None
