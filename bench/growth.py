"""Refresh throughput and storage as the session table grows, and one session's storage over time.

The stored sessions are written straight into the database in one statement (a million logins
would take hours of argon2); they belong to a user of their own and are live, like the
sessions of users who are not refreshing at the moment. The refresh chains measured are opened
by real logins, as in ``bench/overhttp.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.helpers import fetch

from bench.overhttp import Keyturn, refresh_run, sign_in

_SQLITE_SEED = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO sessions (id, user_id, generation, created_at, rotated_at, last_used_at, client_id, scope, user_agent, ip)
SELECT lower(hex(randomblob(16))), :user_id, 0, :now, :now, :now, 'bench', 'profile', 'seed', '127.0.0.1' FROM n
"""
_PG_SEED = """
INSERT INTO sessions (id, user_id, generation, created_at, rotated_at, last_used_at, client_id, scope, user_agent, ip)
SELECT gen_random_uuid(), CAST(:user_id AS uuid), 0, now(), now(), now(), 'bench', 'profile', 'seed', '127.0.0.1'
FROM generate_series(1, :count)
"""


def _sqlite(url: str) -> bool:
    return url.startswith("sqlite")


async def _seed(url: str, count: int) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            user = await conn.execute(text("SELECT id FROM users WHERE username = 'bench-seed'"))
            found = user.scalar()
            user_id = found if found is not None else uuid.uuid4().hex
            if found is None:
                await conn.execute(
                    text(
                        "INSERT INTO users (id, username, username_key, password_hash, created_at, password_changed_at)"
                        " VALUES (:id, 'bench-seed', 'bench-seed', '!', :now, :now)"
                    ),
                    {"id": user_id if _sqlite(url) else uuid.UUID(str(user_id)), "now": _now(url)},
                )
            sql = _SQLITE_SEED if _sqlite(url) else _PG_SEED
            await conn.execute(text(sql), {"count": count, "user_id": str(user_id), "now": _now(url)})
    finally:
        await engine.dispose()


def _now(url: str) -> Any:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return now.replace(tzinfo=None).isoformat(sep=" ") if _sqlite(url) else now


def seed_sessions(url: str, count: int) -> None:
    """Store ``count`` more live sessions (of the user ``bench-seed``)."""
    if count > 0:
        asyncio.run(_seed(url, count))


def storage(url: str) -> dict[str, int]:
    """Rows and bytes on disk: the sessions table with its indexes, the audit table with its
    indexes, and the whole database."""
    if _sqlite(url):
        sizes = "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
        total = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    else:
        sizes = (
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class"
            " WHERE relname IN ('sessions', 'audit_events') AND relkind = 'r'"
        )
        total = "SELECT pg_database_size(current_database())"
    by_name = dict(asyncio.run(fetch(url, sizes)))

    def table(name: str) -> int:  # SQLite lists a table's indexes under their own names
        return sum(
            int(v)
            for k, v in by_name.items()
            if k == name or k.startswith(f"ix_{name}_") or k.startswith(f"sqlite_autoindex_{name}")
        )

    counts = asyncio.run(fetch(url, "SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM audit_events)"))[0]
    return {
        "sessions": int(counts[0]), "session_bytes": table("sessions"),
        "audit_rows": int(counts[1]), "audit_bytes": table("audit_events"),
        "db_bytes": int(asyncio.run(fetch(url, total))[0][0]),
    }  # fmt: skip


def growth(backend: str, kt: Keyturn, sizes: list[int], seconds: float, chains: int, tmp: Path) -> list[dict[str, Any]]:
    """Refresh throughput with ``sizes`` sessions stored (grown in place, smallest first)."""
    rows = []
    for size in sizes:
        seed_sessions(kt.database_url, size - storage(kt.database_url)["sessions"] - chains)
        fresh = sign_in(kt.url, chains)
        report = refresh_run(kt, fresh, seconds, tmp)
        stored = storage(kt.database_url)
        rows.append({
            "backend": backend, "sessions": stored["sessions"], "req_s": round(report["req_s"], 1),
            "p50_ms": round(report["p50_ms"], 2), "p99_ms": round(report["p99_ms"], 2),
            "non_2xx": report["non_2xx"] + report["socket_errors"], "verified": report["verified"],
            "session_bytes_per_session": round(stored["session_bytes"] / stored["sessions"], 1),
            "db_bytes": stored["db_bytes"],
        })  # fmt: skip
    return rows


def one_session(backend: str, kt: Keyturn, refreshes: int = 1000) -> dict[str, Any]:
    """Storage before and after ``refreshes`` rotations of one session, one after another."""
    chain = sign_in(kt.url, 1, username="bench-one")[0]
    before = storage(kt.database_url)
    token = chain.refresh_token
    with httpx.Client(base_url=kt.url, timeout=30) as client:
        for _ in range(refreshes):
            r = client.post("/v1/auth/refresh", json={"refresh_token": token})
            r.raise_for_status()
            token = r.json()["refresh_token"]
    after = storage(kt.database_url)
    _, generation = kt.generation(token)
    added = after["audit_rows"] - before["audit_rows"]
    return {
        "backend": backend, "refreshes": refreshes, "generation": generation,
        "session_bytes_before": before["session_bytes"], "session_bytes_after": after["session_bytes"],
        "sessions_before": before["sessions"], "sessions_after": after["sessions"],
        "audit_rows_added": added,
        "audit_bytes_per_event": round((after["audit_bytes"] - before["audit_bytes"]) / max(added, 1), 1),
    }  # fmt: skip
