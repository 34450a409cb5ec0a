"""Integration tests of SQLite group commit and the inline SQLite driver, on a real SQLite file:
writers queued together share one durable commit, each still commits or fails as a whole."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event, text

from keyturn.core.errors import Unavailable
from keyturn.server.store import Store
from keyturn.server.store._groupcommit import MAX_GROUP
from tests.server.store.rows import session, user

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    s = Store.open(f"sqlite+aiosqlite:///{db_path}")
    await s.db.migrate()
    yield s
    await s.close()


def count_commits(store: Store) -> list[int]:
    commits = [0]
    event.listen(store.db.engine.sync_engine, "commit", lambda _conn: commits.__setitem__(0, commits[0] + 1))
    return commits


def committed_users(db_path: Path) -> set[str]:
    """What another process would see: read with a separate plain sqlite3 connection."""
    with sqlite3.connect(db_path) as conn:
        return {row[0] for row in conn.execute("SELECT username FROM users")}


async def add_user(store: Store, name: str) -> None:
    async with store.write() as tx:
        await tx.insert_user(user(name))


async def add_user_first(store: Store, name: str) -> None:
    """``add_user``, handing the loop on once inside its turn, so that the writers started with it
    queue for the same group (a turn whose lock is free runs without a wait of its own)."""
    async with store.write() as tx:
        await tx.insert_user(user(name))
        await asyncio.sleep(0)


async def test_writers_queued_together_share_commits_and_all_land(store: Store, db_path: Path) -> None:
    """50 concurrent writers: every row is on disk afterwards, with fewer commits than writers."""
    commits = count_commits(store)
    names = [f"user{i}" for i in range(50)]
    await asyncio.gather(*(add_user(store, n) for n in names))
    assert committed_users(db_path) == set(names)
    assert 1 <= commits[0] < len(names)


async def test_a_lone_writer_commits_at_once(store: Store, db_path: Path) -> None:
    """One writer alone: its commit is done, and durable, when its write() block returns."""
    commits = count_commits(store)
    await add_user(store, "alone")
    assert commits[0] == 1
    assert committed_users(db_path) == {"alone"}


async def test_a_writer_returns_only_after_its_group_is_committed(store: Store, db_path: Path) -> None:
    """Each writer, as it returns, already finds its row committed, though it ran in a group."""
    seen: dict[str, bool] = {}

    async def write_then_look(name: str) -> None:
        await add_user(store, name)
        seen[name] = name in committed_users(db_path)

    await asyncio.gather(*(write_then_look(f"u{i}") for i in range(20)))
    assert seen == {f"u{i}": True for i in range(20)}


async def test_a_failing_writer_is_rolled_back_alone(store: Store, db_path: Path) -> None:
    """In a group, the writer that raises loses its own work only; the others commit."""

    async def failing() -> None:
        async with store.write() as tx:
            await tx.insert_user(user("doomed"))
            raise RuntimeError("the use case changed its mind")

    results = await asyncio.gather(
        add_user(store, "before"), failing(), add_user(store, "after"), return_exceptions=True
    )
    assert isinstance(results[1], RuntimeError)
    assert committed_users(db_path) == {"before", "after"}


async def test_a_failed_group_commit_fails_every_writer_of_the_group(store: Store, db_path: Path) -> None:
    """A commit that SQLite refuses (a deferred foreign key broken by one writer) is 503 for every
    writer of that group, and nothing of theirs is on disk."""

    async def breaks_at_commit() -> None:
        async with store.write() as tx:
            await tx._conn.execute(text("PRAGMA defer_foreign_keys = ON"))
            await tx.insert_session(session(uuid.uuid4()))  # no such user: refused at COMMIT

    results = await asyncio.gather(
        add_user_first(store, "a"), breaks_at_commit(), add_user(store, "b"), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results), results
    assert committed_users(db_path) == set()
    await add_user(store, "next")  # the queue works on afterwards
    assert committed_users(db_path) == {"next"}


async def test_a_transaction_sqlite_rolled_back_fails_every_writer_of_the_group(store: Store, db_path: Path) -> None:
    """When SQLite itself rolls the group's transaction back (as it does on a full disk), no writer
    of the group is told its work was committed, whether or not the one that hit it raised."""

    async def loses_the_transaction() -> None:
        async with store.write() as tx:
            raw = await tx._conn.get_raw_connection()
            raw.driver_connection._conn.execute("ROLLBACK")  # type: ignore[union-attr]

    results = await asyncio.gather(
        add_user_first(store, "a"), loses_the_transaction(), add_user(store, "b"), return_exceptions=True
    )
    assert isinstance(results[0], Unavailable)  # its row went with the transaction
    assert isinstance(results[1], Unavailable)
    assert results[2] is None  # the group ended there: "b" ran in the next one
    assert committed_users(db_path) == {"b"}


async def test_a_cancelled_committer_does_not_stop_the_commit(store: Store, db_path: Path) -> None:
    """The writer that commits a group is cancelled mid-commit: the group still lands, and the
    next writer gets its turn."""
    writers = [asyncio.create_task(add_user(store, f"c{i}")) for i in range(5)]
    await asyncio.sleep(0)
    for _ in range(200):  # until the last writer of the group is committing
        if all(w.done() for w in writers[:-1]) or writers[-1].done():
            break
        await asyncio.sleep(0)
    writers[-1].cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    await add_user(store, "then")
    assert {f"c{i}" for i in range(4)} | {"then"} <= committed_users(db_path)


async def test_a_writer_that_leaves_the_queue_does_not_strand_the_group(store: Store, db_path: Path) -> None:
    """A writer ends its turn without committing because another is queued; that one gives up its
    place (cancelled, or its wait timed out) before it runs. The group it would have joined is
    committed all the same, and its writer returns."""
    entered, proceed = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.write() as tx:
            await tx.insert_user(user("first"))
            entered.set()
            await proceed.wait()

    writing = asyncio.create_task(first())
    await entered.wait()
    queued = asyncio.create_task(add_user(store, "second"))
    await asyncio.sleep(0)  # "second" now waits for the turn "first" holds
    turn = store.db._group_commit()._lock
    hand_on = turn.release

    def hand_on_then_give_up() -> None:  # "second" leaves the queue as "first" hands the turn to it
        hand_on()
        queued.cancel()

    turn.release = hand_on_then_give_up  # type: ignore[method-assign]
    proceed.set()
    await asyncio.wait_for(writing, timeout=10)
    assert queued.cancelled()
    assert committed_users(db_path) == {"first"}
    turn.release = hand_on  # type: ignore[method-assign]
    await add_user(store, "next")  # the queue works on afterwards
    assert committed_users(db_path) == {"first", "next"}


async def test_groups_are_bounded(store: Store) -> None:
    """More writers than fit one group: they are split into several commits."""
    commits = count_commits(store)
    await asyncio.gather(*(add_user(store, f"g{i}") for i in range(MAX_GROUP + 10)))
    assert commits[0] >= 2


async def test_statements_run_on_the_loop_thread_and_the_commit_does_not(store: Store) -> None:
    """The inline driver: statements on the event loop's thread, COMMIT in a worker thread."""
    threads: dict[str, set[int]] = {"statement": set(), "commit": set()}

    def on_statement(*_args: object) -> None:
        threads["statement"].add(threading.get_ident())

    raw = store.db.engine.sync_engine
    event.listen(raw, "before_cursor_execute", on_statement)
    async with store.write() as tx:
        await tx.insert_user(user("threads"))
        conn = await tx._conn.get_raw_connection()
        sqlite_conn = conn.driver_connection._conn  # type: ignore[union-attr]
        sqlite_conn.set_trace_callback(
            lambda sql: threads["commit"].add(threading.get_ident()) if sql == "COMMIT" else None
        )
    loop_thread = threading.get_ident()
    assert threads["statement"] == {loop_thread}
    assert threads["commit"]
    assert loop_thread not in threads["commit"]


async def statement_threads(store: Store, *, scan: bool) -> set[int]:
    """The threads the statements of one read ran on (a trace callback on its own connection)."""
    threads: set[int] = set()
    async with store.read(scan=scan) as tx:
        raw = await tx._conn.get_raw_connection()
        raw.driver_connection._conn.set_trace_callback(lambda _sql: threads.add(threading.get_ident()))  # type: ignore[union-attr]
        try:
            await tx.list_users()
        finally:
            raw.driver_connection._conn.set_trace_callback(None)  # type: ignore[union-attr]
    return threads


async def test_a_scan_read_runs_in_a_worker_thread_and_others_on_the_loop(store: Store) -> None:
    """read(scan=True) (the active-sessions count) leaves the loop free; a plain read runs inline."""
    loop_thread = threading.get_ident()
    scanned = await statement_threads(store, scan=True)
    assert scanned
    assert loop_thread not in scanned
    assert await statement_threads(store, scan=False) == {loop_thread}
