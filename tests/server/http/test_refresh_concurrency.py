"""Integration tests of concurrent refreshes in-process, on a real SQLite file and PostgreSQL database."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers import bearer, fetch, refresh, signed_in

pytestmark = pytest.mark.anyio


async def test_thirty_parallel_refreshes_get_one_new_token(client: httpx.AsyncClient, database_url: str) -> None:
    """30 refreshes of one token at once: all 200, all the same new token, one generation further."""
    tokens = await signed_in(client)
    responses = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(30)))
    assert [r.status_code for r in responses] == [200] * 30
    assert len({r.json()["refresh_token"] for r in responses}) == 1
    assert await fetch(database_url, "SELECT generation, revoked_at FROM sessions") == [(1, None)]
    rows = await fetch(
        database_url, "SELECT event, count(*) FROM audit_events WHERE event LIKE 'refresh%' GROUP BY event"
    )
    events = dict(rows)
    assert events == {"refresh": 1, "refresh_replay": 29}
    new = responses[0].json()
    assert (await client.get("/v1/auth/me", headers=bearer(new))).status_code == 200
    assert (await refresh(client, new["refresh_token"])).status_code == 200


async def test_parallel_refreshes_of_many_sessions_do_not_interfere(client: httpx.AsyncClient) -> None:
    """Ten users refreshing at once each advance their own session."""
    sessions = [await signed_in(client, f"user{i}") for i in range(10)]
    responses = await asyncio.gather(*(refresh(client, s["refresh_token"]) for s in sessions))
    assert [r.status_code for r in responses] == [200] * 10
    assert {r.json()["session_id"] for r in responses} == {s["session_id"] for s in sessions}
