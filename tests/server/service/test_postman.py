"""Integration tests of keyturn.server.service.postman on a real SQLite file and PostgreSQL
database, delivering to a real SMTP server on loopback (tests/smtp.py), with a hand-moved clock:
mail posted with a transaction is sent only once it commits and is sealed until then; failures
are retried after the back-off or given up; two postmen on one database send each message
once; a lease that ran out is taken over; the background task wakes when mail is posted and
stops when cancelled; the log names only a message's kind and id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keyturn.core.mail import GIVE_UP_AFTER, Message
from keyturn.core.passwords import Passwords
from keyturn.server.config import Settings
from keyturn.server.service import Client, Service
from keyturn.server.service.messages import verify_email
from keyturn.server.service.postman import LEASE
from keyturn.server.store import OutboxRecord
from keyturn.server.store.schema import outbox
from tests.conftest import Clock, make_settings
from tests.helpers import PASSWORD, fetch
from tests.servers import free_port
from tests.smtp import SmtpServer, link_token, smtp_server

pytestmark = pytest.mark.anyio

TO = "alice@example.com"
LINK = "https://auth.keyturn.test/#verify-email=kt_et_" + "L" * 43
WHO = Client(ip="198.51.100.9", user_agent="test-agent")
STEP = timedelta(hours=6)  # how far the clock moves between attempts to an unreachable server


def letter(to: str = TO) -> Message:
    return verify_email("keyturn", to, LINK, timedelta(hours=24))


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with smtp_server() as s:
        yield s


@asynccontextmanager
async def started(settings: Settings, clock: Clock, passwords: Passwords) -> AsyncIterator[Service]:
    svc = Service(settings, passwords=passwords, clock=clock)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()


def mail_settings(database_url: str, url: str) -> Settings:
    return make_settings(database_url, mail_url=url, mail_timeout="500ms")


@pytest.fixture
async def svc(database_url: str, server: SmtpServer, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    async with started(mail_settings(database_url, server.url), clock, fast_passwords) as s:
        yield s


async def post(svc: Service, message: Message | None = None, kind: str = "verify") -> None:
    """Post ``message`` in a transaction of its own, committed."""
    async with svc.store.write() as tx:
        await svc.postman.post(tx, kind, message or letter())


async def rows(svc: Service) -> list[OutboxRecord]:
    async with svc.store.read() as tx:
        return [OutboxRecord(**r._asdict()) for r in await tx._conn.execute(select(outbox))]


async def only_row(svc: Service) -> OutboxRecord:
    (row,) = await rows(svc)
    return row


async def outbox_bytes(database_url: str) -> bytes:
    """Everything the outbox table holds, as a dump would show it."""
    return b"".join(
        value if isinstance(value, bytes) else str(value).encode()
        for row in await fetch(database_url, "SELECT * FROM outbox")
        for value in row
    )


def file_bytes(backend: str, db_path: Path) -> bytes:
    """On SQLite, the database file and its write-ahead log as they are on disk (empty on PostgreSQL)."""
    if backend != "sqlite":
        return b""
    return b"".join(p.read_bytes() for p in (db_path, Path(f"{db_path}-wal")) if p.exists())


# --- the outbox and the transaction ----------------------------------------------------------------


async def test_mail_posted_in_a_transaction_that_rolls_back_is_never_sent(svc: Service, server: SmtpServer) -> None:
    """A transaction that posts a message and then fails leaves no message: nothing is sent."""

    async def sign_up_that_fails() -> None:
        async with svc.store.write() as tx:
            await svc.postman.post(tx, "verify", letter())
            raise RuntimeError("the sign-up failed")

    with pytest.raises(RuntimeError, match="the sign-up failed"):
        await sign_up_that_fails()
    assert await svc.postman.deliver_due() == 0
    assert await rows(svc) == []
    assert server.attempts == 0


async def test_committed_mail_is_delivered_and_its_body_dropped(svc: Service, server: SmtpServer, clock: Clock) -> None:
    """A committed message is sent by deliver_due() to the SMTP server; its row then has sent_at
    and an empty body; a second deliver_due() sends nothing more."""
    await post(svc)
    assert (await only_row(svc)).sealed != b""
    clock.advance(1)
    assert await svc.postman.deliver_due() == 1
    arrived = server.wait_for(TO)
    assert arrived["Subject"] == letter().subject
    assert link_token(arrived, "verify-email") == LINK.rpartition("=")[2]
    row = await only_row(svc)
    assert (row.sealed, row.sent_at, row.attempts, row.lease_until) == (b"", clock(), 0, None)
    assert await svc.postman.deliver_due() == 0
    assert len(server.messages) == 1


async def test_a_waiting_message_is_sealed_at_rest(
    database_url: str, backend: str, db_path: Path, server: SmtpServer, clock: Clock, fast_passwords: Passwords
) -> None:
    """Until it is sent, the outbox holds neither the link's token, nor the address, nor the
    subject, and neither does the SQLite file or its WAL hold the token: a real verification mail
    of a sign-up, whose token is read from the mail once delivered."""
    async with started(mail_settings(database_url, server.url), clock, fast_passwords) as svc:
        await svc.auth.register("alice", PASSWORD, WHO, email="Alice.Liddell@Example.com")
        (row,) = await rows(svc)
        before, on_disk = await outbox_bytes(database_url), file_bytes(backend, db_path)
        assert await svc.postman.deliver_due() == 1
    token = link_token(server.wait_for("Alice.Liddell@example.com"), "verify-email").encode()
    assert row.kind == "verify"
    assert len(row.sealed) > 100
    assert token not in before
    assert token not in on_disk
    for clear in (b"Alice.Liddell", b"alice.liddell", b"example.com", b"Verify your email", b"kt_et_"):
        assert clear not in before, clear
    assert token not in await outbox_bytes(database_url)  # nor once sent


async def test_a_message_sealed_under_another_master_secret_is_given_up_unsent(
    database_url: str, server: SmtpServer, clock: Clock, fast_passwords: Passwords
) -> None:
    """A message the postman cannot open (the master secret changed) is never sent: given up, body dropped."""
    async with started(mail_settings(database_url, server.url), clock, fast_passwords) as first:
        await post(first)
    # Not started: its signing keys would not open either; the postman needs only the store.
    second = Service(mail_settings(database_url, server.url), passwords=fast_passwords, clock=clock)
    try:
        assert await second.postman.deliver_due() == 0
        row = await only_row(second)
    finally:
        await second.close()
    assert (row.failed_at, row.sealed) == (clock(), b"")
    assert row.last_error == "the message cannot be opened with this master secret"
    assert server.attempts == 0


async def test_without_a_mailer_nothing_is_delivered(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Production without KEYTURN_MAIL_URL: mail is off, deliver_due() sends nothing."""
    async with started(make_settings(database_url), clock, fast_passwords) as svc:
        assert svc.postman.enabled is False
        assert await svc.postman.deliver_due() == 0


# --- failures --------------------------------------------------------------------------------------


async def test_451_is_retried_after_the_delay_and_delivered_once(
    svc: Service, server: SmtpServer, clock: Clock
) -> None:
    """A 451 leaves the message waiting for retry_delay (5-6 s after one failure); not before, at
    once after; the server then takes it: one message in all."""
    server.mode = "refuse"
    await post(svc)
    assert await svc.postman.deliver_due() == 0
    row = await only_row(svc)
    assert (row.attempts, row.failed_at, row.lease_until, row.last_error) == (1, None, None, "the server answered 451")
    assert timedelta(seconds=5) <= row.next_attempt_at - clock() <= timedelta(seconds=6)
    server.mode = "accept"
    clock.advance(4.9)
    assert await svc.postman.deliver_due() == 0
    assert server.attempts == 1
    clock.advance(1.2)
    assert await svc.postman.deliver_due() == 1
    server.wait_for(TO)
    assert (server.attempts, len(server.messages)) == (2, 1)
    assert (await only_row(svc)).sent_at == clock()


async def test_the_delay_grows_with_each_failure(svc: Service, server: SmtpServer, clock: Clock) -> None:
    """Each further 451 doubles the wait (about 5, 10, 20, 40 s)."""
    server.mode = "refuse"
    await post(svc)
    for attempt in range(1, 5):
        assert await svc.postman.deliver_due() == 0
        row = await only_row(svc)
        base = 5 * 2 ** (attempt - 1)
        assert row.attempts == attempt
        assert timedelta(seconds=base) <= row.next_attempt_at - clock() <= timedelta(seconds=base * 1.2)
        clock.now = row.next_attempt_at
    assert server.attempts == 4


async def test_550_is_given_up_at_once(svc: Service, server: SmtpServer, clock: Clock) -> None:
    """A 550 gives the message up at the first attempt: failed_at set, body dropped, never tried again."""
    server.mode = "reject"
    await post(svc)
    assert await svc.postman.deliver_due() == 0
    row = await only_row(svc)
    assert (row.failed_at, row.sealed, row.attempts, row.last_error) == (clock(), b"", 1, "the server answered 550")
    server.mode = "accept"
    clock.advance(3600)
    assert await svc.postman.deliver_due() == 0
    assert (server.attempts, server.messages) == (1, [])


async def test_a_server_down_for_longer_than_give_up_after_is_given_up(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Nothing listening on the mail port: retried (the body kept) up to GIVE_UP_AFTER after the
    message was posted (tried every STEP); the first attempt after that gives it up and drops the body."""
    settings = mail_settings(database_url, f"smtp://127.0.0.1:{free_port()}?starttls=off")
    async with started(settings, clock, fast_passwords) as svc:
        await post(svc)
        posted = clock()
        while clock() - posted < GIVE_UP_AFTER:
            assert await svc.postman.deliver_due() == 0
            row = await only_row(svc)
            assert row.failed_at is None, clock() - posted
            assert row.sealed != b""
            assert row.last_error is not None
            assert row.last_error.startswith("ConnectionRefusedError")
            clock.advance(STEP.total_seconds())
        assert await svc.postman.deliver_due() == 0
        row = await only_row(svc)
    assert (row.failed_at, row.sealed, row.attempts) == (clock(), b"", GIVE_UP_AFTER // STEP + 1)


async def test_a_stalled_server_is_retried(svc: Service, server: SmtpServer, clock: Clock) -> None:
    """A server that does not answer the data within KEYTURN_MAIL_TIMEOUT: the attempt ends after
    about the timeout, the message waits for a retry, and is delivered once the server answers."""
    server.mode = "stall"
    await post(svc)
    started_at = time.monotonic()
    assert await svc.postman.deliver_due() == 0
    assert time.monotonic() - started_at < 3
    row = await only_row(svc)
    assert (row.attempts, row.failed_at) == (1, None)
    assert row.last_error is not None
    assert "talking to 127.0.0.1" in row.last_error
    server.mode = "accept"
    clock.now = row.next_attempt_at
    assert await svc.postman.deliver_due() == 1
    assert server.wait_for(TO)["To"] == TO


# --- several senders -------------------------------------------------------------------------------


async def test_two_postmen_on_one_database_send_each_message_once(
    database_url: str, server: SmtpServer, clock: Clock, fast_passwords: Passwords
) -> None:
    """Two services (two instances) on one database delivering at the same time: every message
    is sent exactly once (the claims are leases that only one instance wins)."""
    settings = mail_settings(database_url, server.url)  # one master secret: either may open them
    recipients = [f"user{n}@example.com" for n in range(20)]
    async with started(settings, clock, fast_passwords) as one, started(settings, clock, fast_passwords) as two:
        for to in recipients:
            await post(one, letter(to))
        sent = 0
        for _ in range(10):
            counts = await asyncio.gather(*(p.postman.deliver_due() for p in (one, two, one, two)))
            sent += sum(counts)
            if not any(counts):
                break
    assert sent == len(recipients)
    assert sorted(str(m["To"]) for m in server.messages) == sorted(recipients)


async def test_a_lease_that_ran_out_lets_another_postman_send(svc: Service, server: SmtpServer, clock: Clock) -> None:
    """A message claimed by an instance that died mid-send is not sent by another while the lease
    lasts, and is sent (once) after it ran out."""
    await post(svc)
    async with svc.store.write() as tx:
        (claimed,) = await tx.claim_due(clock(), clock() + LEASE, 20)  # then that instance died
    assert await svc.postman.deliver_due() == 0
    clock.advance(LEASE.total_seconds())
    assert await svc.postman.deliver_due() == 0
    clock.advance(1)
    assert await svc.postman.deliver_due() == 1
    assert server.wait_for(TO)["To"] == TO
    assert len(server.messages) == 1
    assert (await only_row(svc)).id == claimed.id


# --- the background task ---------------------------------------------------------------------------


async def test_run_delivers_what_is_posted_after_it_started_within_a_second_and_stops_when_cancelled(
    svc: Service, server: SmtpServer
) -> None:
    """The running postman is woken by the commit (not its 2 s poll): a message arrives within a
    second; cancelled, it stops, and later mail waits in the outbox."""
    task = asyncio.create_task(svc.postman.run())
    await asyncio.sleep(0.1)  # started, and past its first (empty) round
    committed = time.monotonic()
    await post(svc)
    await asyncio.to_thread(server.wait_for, TO, timeout=1.0)
    assert time.monotonic() - committed < 1.0
    await until_nothing_waits(svc)  # marked sent (cancelled between the send and that, it would go again)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    await post(svc, letter("bob@example.com"))
    await asyncio.sleep(0.3)
    assert len(server.messages) == 1
    async with svc.store.read() as tx:
        assert await tx.outbox_waiting() == 1


async def until_nothing_waits(svc: Service) -> None:
    """Wait (at most 2 s) until no message waits in the outbox."""
    deadline = time.monotonic() + 2
    while True:
        async with svc.store.read() as tx:
            if await tx.outbox_waiting() == 0:
                return
        assert time.monotonic() < deadline, "a message is still waiting"
        await asyncio.sleep(0.02)


async def test_run_keeps_going_after_a_failed_send(svc: Service, server: SmtpServer) -> None:
    """A refused message does not stop the task: the next one posted is delivered at once."""
    server.mode = "reject"
    task = asyncio.create_task(svc.postman.run())
    try:
        await asyncio.sleep(0.1)
        await post(svc, letter("bounce@example.com"))
        deadline = time.monotonic() + 2
        while server.attempts < 1:
            assert time.monotonic() < deadline, "the refused message was never tried"
            await asyncio.sleep(0.02)
        server.mode = "accept"
        await post(svc)
        await asyncio.to_thread(server.wait_for, TO, timeout=1.0)
        await until_nothing_waits(svc)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- the log ---------------------------------------------------------------------------------------


async def test_the_log_names_only_the_kind_and_id(
    svc: Service, server: SmtpServer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent, retried and given up: each mail log line names the message's id and kind, never its
    address, subject or link."""
    with caplog.at_level(logging.DEBUG):
        await post(svc, kind="reset")
        server.mode = "refuse"
        await svc.postman.deliver_due()
        server.mode = "accept"
        clock.advance(10)
        await svc.postman.deliver_due()
        server.mode = "reject"
        await post(svc, letter("carol@example.com"), kind="address_in_use")
        await svc.postman.deliver_due()
    ids = {str(row.id): row.kind for row in await rows(svc)}
    lines = [r for r in caplog.records if r.name == "keyturn.mail"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO, logging.ERROR]
    for record in lines:
        text = record.getMessage()
        assert any(f"mail {i} ({kind})" in text for i, kind in ids.items()), text
        for secret in (TO, "carol@example.com", "kt_et_", "Verify your email", "example.com"):
            assert secret not in text, text
    assert lines[0].getMessage().endswith("the server answered 451; will retry")
    assert lines[2].getMessage().endswith("the server answered 550; given up")
    leaking = [r.getMessage() for r in caplog.records if r.name.startswith("keyturn") and "kt_et_" in r.getMessage()]
    assert leaking == []
