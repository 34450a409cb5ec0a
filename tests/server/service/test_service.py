"""Integration tests of keyturn.server.service's ``Service`` and ``run_with``: the one object the
HTTP edge and the CLI talk to, started on a real database (SQLite file and PostgreSQL).

Start-up (migrations when enabled, a signing key, one clear error for an unusable database),
readiness, and one-shot use that always closes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.core.errors import Unavailable
from keyturn.core.passwords import Passwords
from keyturn.server.service import Client, Service, run_with
from keyturn.server.store import AuditRecord
from tests.conftest import T0, Clock, make_settings

pytestmark = pytest.mark.anyio


async def test_a_started_service_is_ready_and_publishes_a_signing_key(service: Service) -> None:
    assert await service.ready()
    jwks = await service.jwks()
    assert len(jwks["keys"]) == 1
    assert "d" not in jwks["keys"][0]  # public parts only


@pytest.mark.sqlite_only  # the PostgreSQL test databases are copies of a migrated template
async def test_without_auto_migrate_it_is_not_ready_until_migrated(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """A deployment that migrates as a separate step (``keyturn migrate``) serves 503 until then."""
    svc = Service(make_settings(database_url, auto_migrate=False), passwords=fast_passwords, clock=clock)
    try:
        assert not await svc.ready()
        await svc.migrate()
        assert await svc.ready()
        await svc.migrate()  # again: nothing to do, not an error
        assert await svc.ready()
    finally:
        await svc.close()


async def test_an_unusable_database_stops_start_up_with_one_clear_error(tmp_path: Path, clock: Clock) -> None:
    settings = make_settings(tmp_path / "missing" / "keyturn.db")
    svc = Service(settings, clock=clock)
    try:
        with pytest.raises(Unavailable, match=r"cannot use the database .*missing does not exist") as refused:
            await svc.start()
        assert refused.value.code == "temporarily_unavailable"
    finally:
        await svc.close()


async def test_observers_are_told_of_audit_rows_at_the_services_time(service: Service) -> None:
    seen: list[AuditRecord] = []
    service.observe_audit(seen.append)
    async with service.ctx.store.write() as tx:
        await service.ctx.audit(tx, service.now(), "login", Client())
    assert [(r.event, r.at) for r in seen] == [("login", T0)]


async def test_run_with_closes_the_service_even_when_the_work_fails(database_url: str) -> None:
    started: list[Service] = []

    async def work(svc: Service) -> None:
        started.append(svc)
        await svc.ctx.hash_password("correct horse battery staple")  # starts the password threads
        raise LookupError("the work failed")

    with pytest.raises(LookupError, match="the work failed"):
        await run_with(make_settings(database_url), work)
    (svc,) = started
    assert svc.ctx._hashing is None  # closed: no password threads left behind


async def test_run_with_returns_what_the_work_returns(database_url: str) -> None:
    async def work(svc: Service) -> int:
        return len((await svc.jwks())["keys"])

    assert await run_with(make_settings(database_url), work) == 1
