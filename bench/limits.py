"""``/v1/auth/me`` and refresh with the rate limits at their production defaults (issue 18, point 2:
the second row).

Every other HTTP row keeps rate limiting on, through its real code path, with limits set out of
the load's reach, so those rows measure the server. Here ``keyturn serve`` runs with no
``KEYTURN_RATE_LIMIT_*`` set: the defaults of ``keyturn/server/config.py``, among them the
instance's ceiling (``rate_limit_global``, 2,000 requests a second) and 60 refreshes a minute per
session. Above them keyturn answers 429; the rows count those apart from errors: any other
non-2xx, or a refresh chain that does not check out in the database, is still an error.

The refresh chains: a 429 drops its chain (wrk does not say which request an answer is for), and
the per-session limit must not be what the row measures, so there are many more chains than
connections: enough that the run cannot use them up even if every answer were a 429 (a server
faster than the ceiling refuses thousands a second, and each refusal costs a chain). They are
copies of one real login's session row (a new id each), written straight into the database, with
their first tokens minted from the deployment's secret: thousands of logins would cost minutes of
argon2id and trip the login limits themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from bench import overhttp
from keyturn.core.masterkey import MasterKey
from keyturn.core.refresh import RefreshTokenCodec

__all__ = ["run"]

CONNECTIONS = 64
CHAINS_PER_SECOND = 16_000  # above the answers a second of a server refusing everything with 429


async def _copies(database_url: str, template: str, count: int) -> list[uuid.UUID]:
    """``count`` copies of the session ``template`` (a real login's row), each with an id of its own."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from keyturn.server.store.schema import sessions

    ids = [uuid.uuid4() for _ in range(count)]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            found = await conn.execute(select(sessions).where(sessions.c.id == uuid.UUID(template)))
            row = dict(found.mappings().one())
            await conn.execute(sessions.insert(), [{**row, "id": i} for i in ids])
    finally:
        await engine.dispose()
    return ids


def chains(kt: overhttp.Keyturn, count: int) -> list[overhttp.Chain]:
    """``count`` live refresh chains of one user: one real login, copied."""
    (first,) = overhttp.sign_in(kt.url, 1)
    codec = RefreshTokenCodec.from_master(MasterKey(kt.secret))
    ids = asyncio.run(_copies(kt.database_url, first.session_id, count - 1))
    return [first, *(overhttp.Chain(str(i), codec.encode(i, 0), first.access_token) for i in ids)]


def run(backend: str, database_url: str, secret: str, seconds: float, tmp: Path) -> list[dict[str, Any]]:
    """The ``/me`` and refresh rows at 64 connections, on a server of their own with the default limits."""
    with overhttp.keyturn(tmp / f"{backend}-limits", database_url, secret, real_limits=True) as kt:
        lines = chains(kt, max(4096, round(seconds * CHAINS_PER_SECOND)))
        bearer = f"Authorization: Bearer {lines[0].access_token}"
        me = overhttp.wrk(f"{kt.url}/v1/auth/me", CONNECTIONS, seconds, headers=[bearer], limited=True)
        refresh = overhttp.refresh_run(kt, lines, seconds, tmp, connections=CONNECTIONS, limited=True)
    return [_row(backend, "me", me), _row(backend, "refresh", refresh)]


def _row(backend: str, endpoint: str, report: dict[str, Any]) -> dict[str, Any]:
    return {
        **overhttp.row(backend, endpoint, CONNECTIONS, report),
        "variant": "default limits",
        "limited_s": round(report["limited_s"], 1),
        "answered_s": round(report["req_s"] + report["limited_s"], 1),
    }
