"""Following the issuer's revocation feed, so an API refuses the tokens of ended sessions within
seconds, with no call to the issuer on the request path.

A follower (an asyncio task for async apps, a daemon thread otherwise) long-polls the feed the
issuer's metadata names (``keyturn_revocations_endpoint``; the metadata is found as the JWKS
cache finds it, by ``keyturn.verify.discovery``) and keeps the ended sessions in memory
(``keyturn.core.revocations.EndedSessions``); checking a token is one dictionary lookup. An issuer
without metadata, or whose metadata names no feed, is not followed.

When the feed cannot be reached the last state stays in use and the follower retries with
back-off. Once nothing has been heard for ``max_staleness`` (default 60 s) the verifier either
refuses every token with 503 (``fail_open=False``, the default) or lets them through and says
so (``fail_open=True``); ``status()`` and its ``prometheus()`` text tell which, as does the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from ..core.errors import InvalidClaim, KeyturnError, SessionEnded, Unavailable
from ..core.revocations import EndedSessions, FeedPage
from ..core.tokens import AccessClaims
from ._status import FeedStatus
from .discovery import fetch_metadata_async

__all__ = ["FEED_METADATA", "FeedStatus", "RevocationFeed"]

_log = logging.getLogger("keyturn.revocations")
FEED_METADATA = "keyturn_revocations_endpoint"
"""The RFC 8414 metadata member naming the issuer's revocation feed."""
_MAX_PAGE_BYTES = 4 * 1024 * 1024
_MAX_BACKOFF = 15.0
_JITTER = random.Random()  # noqa: S311 - back-off jitter, not a secret; never the app's global random state
_QUICK_EMPTY = 1.0  # an empty answer sooner than this (a server stopping) is not asked again at once


class RevocationFeed:
    """The issuer's revocation feed, followed in the background. ``Verifier`` makes one by
    default; make your own to change its settings, and pass it as ``Verifier(revocations=...)``.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        max_staleness: timedelta = timedelta(seconds=60),
        fail_open: bool = False,
        wait: timedelta = timedelta(seconds=20),
        timeout: float = 5.0,
    ) -> None:
        """
        Args:
            url: the feed; default: named by the issuer's metadata.
            max_staleness: how long without an answer before the feed counts as stale.
            fail_open: when stale, let tokens through (logged, in ``status()``) instead of 503.
            wait: how long each long poll may be held by the server (at most 25 s).
            timeout: seconds to connect, and to wait for the first answer on the first request.

        Raises:
            ValueError: ``max_staleness`` not longer than ``wait`` plus ``timeout``.
        """
        self.url = url
        self.max_staleness = max_staleness.total_seconds()
        self.fail_open = fail_open
        self.wait = min(wait.total_seconds(), 25.0)
        self.timeout = timeout
        if self.max_staleness <= self.wait + timeout:
            raise ValueError("max_staleness must be longer than wait plus timeout: a healthy poll would look stale")
        self.issuer = ""
        self._ended = EndedSessions()
        self._cursor: str | None = None
        self.fresh_until = -math.inf
        self._heard_at: float | None = None
        self._off = False
        self.refused = 0
        self._failures = 0
        self._last_error: str | None = None
        self._stale_logged = False
        self._first = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread_task: asyncio.Task[Any] | None = None

    def attach(self, issuer: str, leeway: timedelta) -> RevocationFeed:
        """Bind to the verifier's issuer (``Verifier`` calls this); an entry is forgotten
        ``leeway`` after its ``until``, as a token is refused ``leeway`` after its ``exp``."""
        self.issuer = issuer
        self._ended = EndedSessions(leeway.total_seconds(), unnamed=True)
        return self

    # The request path.

    @property
    def ended(self) -> EndedSessions:
        """The ended sessions known so far."""
        return self._ended

    def catch_up(self, claims: AccessClaims, now: datetime | None) -> None:
        """What ``Verifier`` calls when a token's session is listed, or the feed is not fresh:
        refuse the token; or start following if nobody does, wait (bounded) for a first
        answer, and decide.

        Raises:
            SessionEnded; InvalidClaim: the token names no session, and the issuer has a feed;
            Unavailable: the feed is stale and the verifier fails closed.
        """
        if self._settled(claims, now):
            return
        if not self._following():
            self._start_thread()
        self._first.wait(self.timeout)
        self._decide(claims, now)

    async def catch_up_async(self, claims: AccessClaims, now: datetime | None) -> None:
        """``catch_up`` for async apps: the follower is a task on the running loop."""
        if self._settled(claims, now):
            return
        if not self._following():
            follow = self._follow(self._stop)
            self._task = asyncio.get_running_loop().create_task(follow, name="keyturn-revocations")
        deadline = time.monotonic() + self.timeout
        # A threading.Event: the follower may be a thread (started by a sync caller), set it from there.
        while not self._first.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self._decide(claims, now)

    def _settled(self, claims: AccessClaims, now: datetime | None) -> bool:
        """Decided without waiting for the feed: refused (raises), or admitted (True)."""
        if self._off:
            return True
        if claims.sid:
            self._refuse_ended(claims)
            return self._fresh(now)
        return False  # a token naming no session: is there a feed? (first answer, or discovery)

    def _refuse_ended(self, claims: AccessClaims) -> None:
        if not claims.sid and not self._off:
            raise InvalidClaim("sid", "The access token names no session, and its issuer publishes a revocation feed.")
        if claims.sid in self._ended:
            self.refused += 1
            raise SessionEnded()

    def _fresh(self, now: datetime | None) -> bool:
        return (time.time() if now is None else now.timestamp()) < self.fresh_until

    def _decide(self, claims: AccessClaims, now: datetime | None) -> None:
        if self._off:
            return
        self._refuse_ended(claims)
        if self._fresh(now):
            return
        if not self._stale_logged:
            self._stale_logged = True
            silence = "no answer yet" if self._heard_at is None else f"no answer for over {self.max_staleness:g}s"
            _log.warning(
                "revocation feed of %s: %s (%s); %s", self.issuer, silence, self._last_error or "no error",
                "letting tokens through" if self.fail_open else "refusing tokens",
            )  # fmt: skip
        if not self.fail_open:
            raise Unavailable("The issuer's revocation feed cannot be reached; try again shortly.")

    # Health.

    def status(self, now: float | None = None) -> FeedStatus:
        """The follower's health at ``now`` (seconds since the epoch; default: the clock)."""
        at = time.time() if now is None else now
        if self._off:
            state = "off"
        elif at < self.fresh_until:
            state = "following"
        elif self._heard_at is None and not self._first.is_set():
            state = "starting"
        else:
            state = "stale"
        return FeedStatus(
            state=state,
            fail_open=self.fail_open,
            staleness=None if self._heard_at is None else max(0.0, at - self._heard_at),
            ended_sessions=len(self._ended),
            refused=self.refused,
            failures=self._failures,
            last_error=self._last_error,
        )

    def close(self) -> None:
        """Stop following, at once (a later request starts again)."""
        self._stop.set()
        for task in (self._task, self._thread_task):
            if task is not None:
                with contextlib.suppress(RuntimeError):  # its loop has already closed
                    task.get_loop().call_soon_threadsafe(task.cancel)
        self._thread = self._task = self._thread_task = None
        self._stop = threading.Event()

    # The follower: one loop, run as a task of the app's event loop, or in a thread's own loop
    # (so a sync app's follower, too, stops at once when cancelled, even inside a long poll).

    def _following(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def _start_thread(self) -> None:
        follow = self._follow_in_thread(self._stop)
        self._thread = threading.Thread(target=asyncio.run, args=(follow,), name="keyturn-revocations", daemon=True)
        self._thread.start()

    async def _follow_in_thread(self, stop: threading.Event) -> None:
        self._thread_task = asyncio.current_task()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follow(stop)

    async def _follow(self, stop: threading.Event) -> None:
        async with httpx.AsyncClient(timeout=self._timeouts(), follow_redirects=False) as http:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    if self.url is None:
                        self._discovered(await fetch_metadata_async(http, self.issuer))
                        continue
                    delay = self._answered(await http.get(self.url, params=self._params()), started)
                except (httpx.HTTPError, ValueError, KeyturnError) as exc:
                    delay = self._failed(exc)
                if delay:
                    await asyncio.sleep(delay)

    def _timeouts(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self.wait + self.timeout)

    def _params(self) -> dict[str, str]:
        return {} if self._cursor is None else {"after": self._cursor, "wait": f"{self.wait:g}"}

    def _discovered(self, metadata: Mapping[str, Any] | None) -> None:
        """Take the feed's URL from the issuer's metadata; an issuer without metadata, or whose
        metadata names no feed, has none to follow."""
        url = None if metadata is None else metadata.get(FEED_METADATA)
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            self.url = url
            return
        _log.info("%s publishes no revocation feed: tokens are refused only when they expire", self.issuer)
        self._off = True
        self._ended.admit_unnamed()
        self.fresh_until = math.inf
        self._first.set()
        self._stop.set()

    def _answered(self, response: httpx.Response, started: float) -> float:
        """Apply a page; returns how long to wait before the next request."""
        if response.status_code != 200:
            raise ValueError(f"the feed answered {response.status_code}")
        if len(response.content) > _MAX_PAGE_BYTES:
            raise ValueError("the feed's page is too large")
        page = FeedPage.from_json(response.json())
        now = time.time()
        self._ended.add(page.entries, now)
        self._cursor = str(page.cursor)
        if page.more:
            return 0.0
        if self._failures or self._stale_logged:
            _log.info("revocation feed of %s: following again", self.issuer)
        self._failures, self._last_error, self._stale_logged = 0, None, False
        self._heard_at = now
        self.fresh_until = now + self.max_staleness
        self._first.set()
        quick_and_empty = not page.entries and time.monotonic() - started < _QUICK_EMPTY
        return 0.2 if quick_and_empty and self._params().get("wait") else 0.0

    def _failed(self, exc: Exception) -> float:
        self._failures += 1
        self._last_error = _describe(exc)
        if self._failures == 1:
            _log.warning("revocation feed of %s: %s; retrying", self.issuer, self._last_error)
        if self._heard_at is None and self._failures >= 2:
            self._first.set()  # no first answer soon: requests stop waiting for one
        backoff = min(_MAX_BACKOFF, 0.25 * float(2 ** min(self._failures, 10)))
        return backoff * _JITTER.uniform(0.5, 1.0)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyturnError):  # discovery's: a refused metadata document says why
        return exc.description
    return str(exc) if isinstance(exc, ValueError) else type(exc).__name__
