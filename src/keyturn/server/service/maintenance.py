"""Pruning: dead sessions and old audit rows leave the database in small batches.

A session is pruned once it has been dead (revoked, idle past ``KEYTURN_REFRESH_IDLE_TTL`` or
past ``KEYTURN_SESSION_MAX_TTL``) for ``KEYTURN_SESSION_RETENTION``; an audit row once it is
older than ``KEYTURN_AUDIT_RETENTION``; a revocation-feed entry a minute after every access token
of its session has expired. Each batch is its own short transaction, and on
PostgreSQL it skips rows another pruner holds (``FOR UPDATE SKIP LOCKED``), so any number of
instances may prune at once; on SQLite the write lock takes them in turn.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from ...core.errors import KeyturnError
from ...core.sessions import SessionBounds
from ..store import Tx
from .context import Client, Context

__all__ = ["Maintenance", "PruneResult"]

_log = logging.getLogger("keyturn.prune")
_PRUNER = Client(ip="", user_agent="keyturn-prune")
FEED_MARGIN = timedelta(minutes=1)  # past an entry's `until`, for readers with a larger leeway
MAX_BATCHES = 100_000  # a bound on one run; the next run goes on where this one stopped


@dataclass(frozen=True, slots=True)
class PruneResult:
    sessions: int
    audit_events: int
    revocations: int = 0
    mail: int = 0
    email_links: int = 0


class Maintenance:
    """Pruning, on demand (``keyturn prune``) or every ``KEYTURN_PRUNE_INTERVAL``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def prune(self) -> PruneResult:
        """Delete what has outlived its retention; returns how many rows went."""
        now = self.ctx.clock()
        settings = self.ctx.settings
        size = settings.prune_batch_size
        # Dead for the whole retention: already dead (by the one liveness rule) that long ago.
        dead_at = SessionBounds.at(now - settings.session_retention, self.ctx.lifetimes)

        def sessions(tx: Tx) -> Awaitable[int]:
            return tx.prune_sessions(dead_at, limit=size)

        def audit(tx: Tx) -> Awaitable[int]:
            return tx.prune_audit_events(before=now - settings.audit_retention, limit=size)

        def revocations(tx: Tx) -> Awaitable[int]:
            return tx.prune_revocations(before=now - FEED_MARGIN, limit=size)

        def mail(tx: Tx) -> Awaitable[int]:  # sent or given up: kept as long as ended sessions
            return tx.prune_outbox(before=now - settings.session_retention, limit=size)

        def email_links(tx: Tx) -> Awaitable[int]:
            return tx.prune_email_tokens(before=now, limit=size)

        result = PruneResult(
            *[await self._in_batches(batch) for batch in (sessions, audit, revocations, mail, email_links)]
        )
        if result.sessions or result.audit_events:
            async with self.ctx.store.write() as tx:
                await self.ctx.audit(
                    tx, now, "pruned", _PRUNER, sessions=result.sessions, audit_events=result.audit_events
                )
        return result

    async def _in_batches(self, batch: Callable[[Tx], Awaitable[int]]) -> int:
        total = 0
        for _ in range(MAX_BATCHES):
            async with self.ctx.store.write() as tx:
                deleted = await batch(tx)
            total += deleted
            if deleted < self.ctx.settings.prune_batch_size:
                break
            await asyncio.sleep(0)  # let requests in between batches
        return total

    async def prune_periodically(self) -> None:
        """Prune every ``KEYTURN_PRUNE_INTERVAL`` until cancelled; the first run comes at a random
        point of the first interval, so instances started together spread out."""
        interval = self.ctx.settings.prune_interval.total_seconds()
        delay = secrets.SystemRandom().uniform(0.1, 1.0) * interval
        while True:
            await asyncio.sleep(delay)
            delay = interval
            try:
                result = await self.prune()
            except KeyturnError as exc:  # the database is away: try again next time
                _log.warning("pruning skipped: %s", exc.code)
                continue
            if result.sessions or result.audit_events:
                _log.info("pruned %d sessions and %d audit rows", result.sessions, result.audit_events)
