"""What the client tests share about the keyturn server they run against: its users, a clock the
test moves, and what the server recorded (its audit rows, read from its SQLite file)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
import uuid

import httpx

from tests.servers import Server


@dataclasses.dataclass
class User:
    name: str
    id: str


class Clock:
    """The real time plus an offset the test moves, to make tokens look due without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def audit(server: Server, user: User, event: str) -> int:
    """How many successful ``event`` rows the server wrote for ``user``."""
    with sqlite3.connect(f"file:{server.cwd / 'keyturn.db'}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT count(*) FROM audit_events WHERE event = ? AND user_id = ? AND outcome != 'refused'",
            (event, uuid.UUID(user.id).hex),
        ).fetchone()
    count: int = row[0]
    return count


def me(server: Server, access_token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})
