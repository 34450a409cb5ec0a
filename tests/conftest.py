"""Shared fixtures: a controllable clock, settings on a real SQLite file, a started service, an app.

Nothing here mocks the database: every store, service and HTTP test runs on a
SQLite file in pytest's temporary directory.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.config import Settings
from keyturn.http import create_app
from keyturn.passwords import Passwords
from keyturn.service import Service

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ISSUER = "https://auth.keyturn.test"


class Clock:
    """A clock the test moves by hand: ``clock()`` is now, ``clock.advance(seconds)`` moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "keyturn.db"


def make_settings(db_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{db_path}",
        "secret": secrets.token_urlsafe(48),
        "issuer": ISSUER,
        "env": "production",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(db_path: Path) -> Settings:
    return make_settings(db_path)


@pytest.fixture(scope="session")
def fast_passwords() -> Passwords:
    """Cheap argon2id parameters: the hashing rules are the same, only the cost is lower."""
    return Passwords(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
async def service(settings: Settings, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    yield svc
    await svc.close()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the real ASGI app in-process (the service is already started)."""
    app = create_app(service.settings, service=service)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51234))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER, headers={"user-agent": "pytest"}) as c:
        yield c


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every KEYTURN_* variable so settings tests see only what they set."""
    for name in list(os.environ):
        if name.startswith("KEYTURN_"):
            monkeypatch.delenv(name)
