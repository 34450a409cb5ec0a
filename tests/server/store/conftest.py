"""The store fixture: a migrated store on the suite's database (SQLite file, or PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keyturn.server.store import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store.open(database_url)
    await s.db.migrate()
    yield s
    await s.close()
