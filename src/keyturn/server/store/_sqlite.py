"""SQLite for the event loop: statements run on the loop's thread; only waits go to a thread.

SQLAlchemy's ``sqlite+aiosqlite`` dialect drives an aiosqlite connection, which sends every
``cursor()``, ``execute()``, fetch and commit to a worker thread and waits for the answer: about
twenty thread round trips for one refresh, each handing the GIL back and forth, for statements
that take microseconds (an indexed read or write on a WAL database, pages in the cache).

``connect`` gives the dialect an object with the same interface whose statements run inline,
on the event loop's thread. What can wait does not: ``BEGIN IMMEDIATE`` when the write lock is
taken (it waits for another connection's write, up to the busy timeout; a free lock is taken at
once, on the loop) and ``COMMIT`` (it waits for the fsync that makes the transaction durable,
and for a WAL checkpoint now and then) run in a worker thread, so the loop serves other
requests meanwhile, and so do reads that may scan many rows
(``Database.read(scan=True)``: the active-sessions count). A connection is only ever used by
one task at a time (the pool hands it out), so it never runs in two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["InlineConnection", "Readers", "connect"]

_WAITS = ("BEGIN", "COMMIT")  # as keyturn and SQLAlchemy spell them: no prefix, upper case
_BEGIN = "BEGIN"


def inline(conn: AsyncConnection) -> InlineConnection:
    """The ``InlineConnection`` under an open SQLAlchemy connection of a SQLite engine (checked
    out, so reaching it is attribute lookups, no I/O)."""
    driver = conn.sync_connection.connection.driver_connection if conn.sync_connection else None
    assert isinstance(driver, InlineConnection), "not an open connection of a SQLite engine"
    return driver


async def connect(*args: Any, **kwargs: Any) -> InlineConnection:
    """``sqlite3.connect(*args, **kwargs)``, for use from the loop (and, for waits, a thread)."""
    kwargs.update(check_same_thread=False, isolation_level=None)
    conn = await asyncio.to_thread(sqlite3.connect, *args, **kwargs)
    return InlineConnection(conn, busy_timeout=kwargs.get("timeout", 5.0))


class Readers:
    """Connections for the point reads run on the driver (``_direct``), one per event loop: in
    autocommit mode, so each statement reads its own snapshot (as ``Database.read`` gives on
    SQLite), and ``query_only``, so nothing can write through them."""

    def __init__(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        self._args, self._kwargs = args, kwargs
        self._open: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InlineConnection] = weakref.WeakKeyDictionary()

    async def get(self) -> sqlite3.Connection:
        """This event loop's reader, opened on first use."""
        loop = asyncio.get_running_loop()
        found = self._open.get(loop)
        if found is None:
            opened = await self._connect()
            found = self._open.setdefault(loop, opened)
            if found is not opened:  # another task of this loop opened one meanwhile
                opened.stop()
        return found.sqlite

    async def _connect(self) -> InlineConnection:
        try:
            opened = await connect(*self._args, **self._kwargs)
        except sqlite3.Error as exc:
            # as SQLAlchemy raises a failed connect: the store answers it as an outage
            raise DBAPIError.instance("connect", None, exc, sqlite3.Error, hide_parameters=True) from exc
        opened.control("PRAGMA query_only=1")
        return opened

    def close(self) -> None:
        for conn in list(self._open.values()):
            conn.stop()
        self._open.clear()


class InlineConnection:
    """The part of ``aiosqlite.Connection`` that SQLAlchemy's aiosqlite dialect uses."""

    def __init__(self, conn: sqlite3.Connection, *, busy_timeout: float = 5.0) -> None:
        self._conn = conn
        self._busy_ms = int(busy_timeout * 1000)
        self.offload = False  # run every statement in a worker thread (see ``offloaded``)
        self._connection: sqlite3.Connection | None = conn  # the dialect checks it before commit/rollback
        self._tx = _Inline()  # the dialect's isolation-level setter queues a function here

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection itself, for statements run on the loop's thread (``_direct``)."""
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def control(self, sql: str) -> None:
        """Run a transaction-control statement (``SAVEPOINT``, ``RELEASE``, ``ROLLBACK TO``) at
        once: a couple of microseconds, against about a hundred through SQLAlchemy's execution."""
        self._conn.execute(sql)

    def begin_at_once(self, cursor: sqlite3.Cursor, sql: str, parameters: Any) -> bool:
        """Run a ``BEGIN`` on the loop if the write lock is free (no busy wait); False, and no
        transaction begun, if another connection holds it: the caller waits for it in a thread."""
        self._conn.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        return True

    @contextlib.contextmanager
    def offloaded(self) -> Iterator[None]:
        """Statements that may read many rows run in a worker thread while this is open."""
        self.offload = True
        try:
            yield
        finally:
            self.offload = False

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self)

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await asyncio.to_thread(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()  # discards the WAL frames not yet committed: no fsync to wait for

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


class InlineCursor:
    """An ``aiosqlite.Cursor`` look-alike over a ``sqlite3.Cursor``."""

    def __init__(self, cursor: sqlite3.Cursor, owner: InlineConnection) -> None:
        self._cursor = cursor
        self._owner = owner

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        if (
            sql.startswith(_BEGIN)
            and not self._owner.offload
            and self._owner.begin_at_once(self._cursor, sql, parameters)
        ):
            return self  # the write lock was free
        if self._owner.offload or sql.startswith(_WAITS):
            await asyncio.to_thread(self._cursor.execute, sql, parameters)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Inline:
    """Stands in for aiosqlite's request queue: runs the function at once and answers its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the waiting caller, as aiosqlite would
            future.set_exception(exc)
