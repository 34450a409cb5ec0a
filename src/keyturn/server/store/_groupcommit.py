"""Group commit for SQLite: write transactions queued together share one durable commit.

SQLite has one writer at a time, and with ``synchronous=FULL`` every commit waits for an fsync
(about 2 ms on a typical disk, far longer than the statements of a refresh). Committing each
write transaction on its own caps a server at a few hundred writes per second, however fast
the rest of it is, and makes the last of 64 waiting writers wait for 63 fsyncs.

Here the writers of one process queue for their turn as before, but a turn does not end with a
commit when others are waiting: the next writer runs its statements in the same SQLite
transaction, each writer in a savepoint of its own. The writer whose turn ends with nobody
waiting (or the group full) commits the whole group; every writer of the group returns only
once that commit is durable, and if it fails every one of them gets the error. So:

- each caller still sees its own unit of work commit, or fail, as a whole: a writer whose
  statements fail is rolled back to its savepoint and gets the error at once, the others are
  untouched;
- nothing is answered before it is on disk (the same durability as one commit per write);
- while a group commits, the next one gathers: the fsync cost is shared by everyone waiting;
- a writer that leaves the queue (cancelled, or its wait timed out) just as the turn is handed to
  it never strands the group it would have joined: that group is committed without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from ...core.errors import Unavailable
from ._sqlite import InlineConnection, inline

__all__ = ["GroupCommit"]

_SAVEPOINT = "keyturn_writer"
MAX_GROUP = 128
"""Writers in one transaction at most: bounds how long the write lock is held between fsyncs."""

Opener = Callable[[], Coroutine[Any, Any, tuple[AsyncConnection, AsyncTransaction]]]


class _Group:
    """One open SQLite transaction and the writers whose work is in it."""

    def __init__(self, conn: AsyncConnection, transaction: AsyncTransaction, driver: InlineConnection) -> None:
        self.conn = conn
        self.transaction = transaction
        self.driver = driver  # the InlineConnection: savepoints without SQLAlchemy's execution
        self.size = 0
        self.broken = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, opener: Opener) -> _Group:
        conn, transaction = await opener()
        return cls(conn, transaction, inline(conn))

    @asynccontextmanager
    async def member(self) -> AsyncIterator[AsyncConnection]:
        """One writer's savepoint: released when its work is done, rolled back when it raises."""
        self.size += 1
        self.driver.control(f"SAVEPOINT {_SAVEPOINT}")
        try:
            yield self.conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.driver.control(f"ROLLBACK TO {_SAVEPOINT}")
                self.driver.control(f"RELEASE {_SAVEPOINT}")
            # Some errors (disk full, I/O) make SQLite roll the whole transaction back: the
            # group is over, and its commit will tell the writers who had joined it.
            self.broken = not self.driver.in_transaction
            raise
        try:
            self.driver.control(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as exc:  # the savepoint went with a transaction SQLite rolled back
            self.broken = True
            raise Unavailable() from exc

    async def commit(self) -> None:
        """Commit (or, if that fails, roll back) and tell every writer of the group."""
        try:
            if not self.driver.in_transaction:
                # SQLite rolled the whole transaction back (disk full, I/O error): nobody's work
                # is there to commit, so nobody may be told it was.
                raise Unavailable()
            await self.transaction.commit()
        except BaseException as exc:
            self.done.set_exception(exc)
            self.done.add_done_callback(_retrieved)  # no "never retrieved" warning if nobody waits
            with contextlib.suppress(Exception):
                await self.transaction.rollback()
            if not isinstance(exc, Exception):
                raise
        else:
            self.done.set_result(None)
        finally:
            with contextlib.suppress(Exception):
                await self.conn.close()


class GroupCommit:
    """The write queue of one event loop (see the module docstring)."""

    def __init__(self, open_transaction: Opener, timeout: float) -> None:
        self._open = open_transaction
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._queued = 0
        self._group: _Group | None = None
        self._closing: set[asyncio.Task[None]] = set()  # commits of groups their next writer left

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A unit of work in the current group; returns once the group's commit is durable."""
        await self._take_turn()
        group: _Group | None = None
        try:
            if self._group is None:
                self._group = await _Group.open(self._open)
            group = self._group
            async with group.member() as conn:
                yield conn
        finally:
            await self._end_turn(group)
        assert group is not None  # opening it raised otherwise
        await asyncio.shield(group.done)

    async def _take_turn(self) -> None:
        self._queued += 1
        try:
            async with asyncio.timeout(self._timeout):
                await self._lock.acquire()
        except BaseException:
            self._queued -= 1
            if self._group is not None and not self._queued and not self._lock.locked():
                # The last writer of the open group handed the turn on to this one, which leaves
                # (cancelled, or its wait timed out): nobody else will end that group.
                closing = asyncio.ensure_future(self._commit_left_group())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            raise
        self._queued -= 1

    async def _commit_left_group(self) -> None:
        """Take the turn and commit the open group, if no writer has joined and ended it meanwhile."""
        async with self._lock:
            group, self._group = self._group, None
            if group is not None:
                await group.commit()

    async def _end_turn(self, group: _Group | None) -> None:
        """Hand the turn on; the last writer of a group (nobody waiting, or the group full)
        commits it first, holding the turn so that newcomers gather into the next group.
        A writer cancelled meanwhile does not stop the commit: the turn passes on when it ends."""
        if group is None or (self._queued and group.size < MAX_GROUP and not group.broken):
            self._lock.release()
            return
        self._group = None
        committing = asyncio.ensure_future(group.commit())
        committing.add_done_callback(lambda _: self._lock.release())
        await asyncio.shield(committing)


def _retrieved(future: asyncio.Future[None]) -> None:
    future.exception()
