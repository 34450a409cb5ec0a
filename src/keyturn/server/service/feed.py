"""Serving the revocation feed: pages after a reader's cursor, and long polls that answer as soon
as a revocation commits, on this instance or on any other sharing the database.

Waiting readers of one process share one watcher, which reads the feed's newest position every
``KEYTURN_REVOCATION_POLL`` while anyone waits (nothing otherwise): a revocation committed by any
instance, or any worker process on a SQLite file, wakes every waiting reader within that time,
with one small query per interval however many readers wait. A revocation this process commits
nudges its watcher to read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

from ...core.errors import InvalidRequest, KeyturnError
from ...core.revocations import Cursor, FeedPage
from .context import Context

__all__ = ["MAX_PAGE", "MAX_WAIT", "Feed"]

_log = logging.getLogger("keyturn.feed")
MAX_PAGE = 1000
"""Entries in one answer at most; a reader catching up asks again at once (``more``)."""
MAX_WAIT = 25.0
"""Seconds a long poll may wait for news (below common proxy idle timeouts of 30 s or more)."""
MAX_WAITERS = 10_000
"""Long polls waiting at once in one process; beyond it, polls are answered at once."""


class Feed:
    """The feed as this server serves it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = weakref.WeakKeyDictionary()
        self._closed = False
        ctx.store.on_publish = self._nudge

    async def page(self, after: str | None = None, *, limit: int = MAX_PAGE) -> FeedPage:
        """The entries after ``after`` (a cursor this feed sent; none: from the start, which is
        every ended session whose access tokens may still verify). A cursor of another database,
        or ahead of this one, is answered from the start with ``reset``.

        Raises:
            InvalidRequest: ``after`` is not a cursor this feed could have sent.
            Unavailable: the database cannot be reached.
        """
        cursor = _cursor(after)
        now = self.ctx.clock()
        async with self.ctx.store.read() as tx:
            epoch = await tx.feed_epoch()
            # Another database's cursor; or one ahead of this feed (a database restored from a
            # backup keeps its epoch): start over, lest the reader wait for positions already given.
            reset = cursor is not None and (cursor.epoch != epoch or cursor.position > await tx.revocation_head())
            start = cursor.position if cursor is not None and not reset else 0
            entries, position, more = await tx.revocations_after(start, now, max(1, min(limit, MAX_PAGE)))
        return FeedPage(Cursor(epoch, position), tuple(entries), more=more, reset=reset)

    async def follow(self, after: str | None, *, wait: float, limit: int = MAX_PAGE) -> FeedPage:
        """Like ``page``, but with nothing new after ``after`` wait up to ``wait`` seconds (at
        most ``MAX_WAIT``) for news first. A first read (no cursor) is answered at once."""
        page = await self.page(after, limit=limit)
        if after is None or page.entries or page.more or page.reset or str(page.cursor) != after or wait <= 0:
            return page
        if await self._watcher().wait_past(page.cursor.position, min(wait, MAX_WAIT)):
            return await self.page(str(page.cursor), limit=limit)
        return page

    def close(self) -> None:
        """Answer every waiting poll now, and any later one at once (the server is stopping).
        Safe to call from a signal handler's thread: it hands over to each watcher's loop."""
        self._closed = True  # a poll arriving after this (before the server stops accepting) waits for nothing
        for loop, watcher in list(self._watchers.items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(watcher.close)

    def _nudge(self) -> None:
        """A revocation committed here: the watcher of this loop reads the newest position now."""
        with contextlib.suppress(RuntimeError):  # no running loop: nobody waits on one
            watcher = self._watchers.get(asyncio.get_running_loop())
            if watcher is not None:
                watcher.nudge()

    def _watcher(self) -> _Watcher:
        loop = asyncio.get_running_loop()
        found = self._watchers.get(loop)
        if found is None:
            found = self._watchers[loop] = _Watcher(self.ctx)
            if self._closed:
                found.close()
        return found


class _Watcher:
    """The newest position of the feed, read every interval while readers wait."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._head = -1  # unknown: nobody has waited since the last poll stopped
        self._waiting = 0
        self._news = asyncio.Event()
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def wait_past(self, position: int, seconds: float) -> bool:
        """Wait until the feed has entries after ``position`` (True), or ``seconds`` pass, the
        server stops, or too many wait (False)."""
        if self._closed or self._waiting >= MAX_WAITERS:
            return False
        self._waiting += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="keyturn-feed-watch")
        try:
            async with asyncio.timeout(seconds):
                while self._head <= position and not self._closed:
                    await self._news.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
        return not self._closed

    async def _poll(self) -> None:
        interval = self.ctx.settings.revocation_poll.total_seconds()
        try:
            while self._waiting and not self._closed:
                self._nudged.clear()  # a nudge from here on is for the read below, or the next one
                try:
                    async with self.ctx.store.read() as tx:
                        head = await tx.revocation_head()
                except KeyturnError as exc:  # the database is away: the waits time out, re-reads answer 503
                    _log.debug("feed watch: %s", exc.code)
                    head = self._head
                if head != self._head:
                    self._head = head
                    self._wake()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._nudged.wait()
        finally:
            self._head = -1  # the next waiter must not trust a position read before it came

    def nudge(self) -> None:
        self._nudged.set()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._news.set()
        self._news = asyncio.Event()


def _cursor(after: str | None) -> Cursor | None:
    if after is None:
        return None
    cursor = Cursor.parse(after)
    if cursor is None:
        raise InvalidRequest("The cursor 'after' is not one this feed sent.", reason="bad_cursor")
    return cursor
