"""The outbox's sender: mail is written in the transaction that decides to send it
(``Postman.post``) and sent after the commit by a background task of each server process, so a
request never waits for a mail server and a mail server's outage loses nothing.

The task wakes when this process commits a message, and every ``POLL`` otherwise (messages
posted by another instance or by the CLI, retries that fell due). It claims due messages with a
lease (``store/_outbox.py``), sends them one at a time, and marks each sent (its sealed body, and
any link in it, dropped) or failed: tried again after ``retry_delay``, given up after
``GIVE_UP_AFTER``. Nothing about a message's content is logged, only its kind and id.

Delivery is at least once: a sender stopped between the mail server's acceptance and the commit
that marks the message sent leaves it leased, and the message goes out again after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from ...core.errors import Unavailable
from ...core.mail import GIVE_UP_AFTER, Message, MessageSeal, retry_delay
from ..mailer import Mailer, MailError
from ..store import OutboxRecord, Tx

if TYPE_CHECKING:
    from .context import Context

__all__ = ["POLL", "Composer", "Postman"]

Composer = Callable[[Message, str], Awaitable[Message | None]]
"""Makes the mail a request asks for, when the sender takes it up (``Postman.compose``)."""
POLL = timedelta(seconds=2)
LEASE = timedelta(minutes=2)  # longer than any one send (each network step is bounded by KEYTURN_MAIL_TIMEOUT)
BATCH = 20
_log = logging.getLogger("keyturn.mail")


class Postman:
    """Posts messages to the outbox and delivers them with ``mailer`` (None: mail is off)."""

    def __init__(self, ctx: Context, mailer: Mailer | None, seal: MessageSeal) -> None:
        self.ctx = ctx
        self.mailer = mailer
        self._seal = seal
        self._wake: asyncio.Event | None = None  # the running sender's (one event loop's)
        self._composers: dict[str, Composer] = {}

    def compose(self, kind: str, composer: Composer) -> None:
        """Messages of ``kind`` are requests: ``composer`` makes the mail to send from one when it
        is taken up (None: nothing to send)."""
        self._composers[kind] = composer

    @property
    def enabled(self) -> bool:
        return self.mailer is not None

    async def post(self, tx: Tx, kind: str, message: Message) -> None:
        """Put ``message`` in the outbox with ``tx``; it is sent once ``tx`` has committed."""
        message_id = uuid.uuid4()
        now = self.ctx.clock()
        await tx.enqueue(OutboxRecord(message_id, self._seal.seal(message, str(message_id)), kind, now, now))
        tx.committed.append(self._nudge)

    def _nudge(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def deliver_due(self) -> int:
        """Send every message due now (one batch at a time); returns how many were sent."""
        if self.mailer is None:
            return 0
        sent = 0
        while True:
            now = self.ctx.clock()
            async with self.ctx.store.write() as tx:
                claimed = await tx.claim_due(now, now + LEASE, BATCH)
            for record in claimed:
                sent += await self._deliver(self.mailer, record)
            if len(claimed) < BATCH:
                return sent

    async def _deliver(self, mailer: Mailer, record: OutboxRecord) -> int:
        try:
            message: Message | None = self._seal.open(record.sealed, str(record.id))
            composer = self._composers.get(record.kind)
            if composer is not None and message is not None:
                message = await composer(message, record.kind)
            if message is not None:
                await mailer.send(message)
        except (MailError, ValueError, Unavailable) as exc:
            now = self.ctx.clock()
            retry = (
                not isinstance(exc, ValueError)
                and getattr(exc, "retry", True)
                and now - record.created_at < GIVE_UP_AFTER
            )
            retry_at = now + retry_delay(record.attempts + 1) if retry else None
            async with self.ctx.store.write() as tx:
                await tx.mark_failed(record.id, str(exc), retry_at=retry_at, now=now)
            level = logging.WARNING if retry else logging.ERROR
            _log.log(
                level,
                "mail %s (%s) not sent: %s; %s",
                record.id,
                record.kind,
                exc,
                "will retry" if retry else "given up",
            )
            return 0
        async with self.ctx.store.write() as tx:
            await tx.mark_sent(record.id, self.ctx.clock())
        _log.info("mail %s (%s) %s", record.id, record.kind, "sent" if message is not None else "had nothing to send")
        return 1 if message is not None else 0

    async def run(self) -> None:
        """Deliver until cancelled: at once when woken, and every ``POLL``. A database outage is
        waited out; the messages stay in the outbox."""
        wake = self._wake = asyncio.Event()
        try:
            while True:
                wake.clear()
                try:
                    await self.deliver_due()
                except Unavailable:
                    _log.warning("mail outbox unreachable; trying again shortly")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL.total_seconds())
        finally:
            self._wake = None
