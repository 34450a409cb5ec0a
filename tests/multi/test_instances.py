"""Integration tests of three real keyturn processes on loopback sharing one real PostgreSQL
database, as behind a load balancer: one refresh state machine, instant logout and one key ring
across instances, and one first signing key however many instances start at once.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest

from keyturn.core.errors import RefreshTokenReused, SessionRevoked
from keyturn.server.service.keyring import RELOAD_EVERY
from keyturn.verify import Verifier
from tests.helpers import SESSION_ENDED, assert_refused, bearer
from tests.multi.fleet import ISSUER, assert_no_token_logged, at_once, fleet_settings, sign_in
from tests.postgres import PostgresServer
from tests.servers import KEYTURN, Server, keyturn_servers

pytestmark = pytest.mark.server

INSTANCES = 3
GRACE = 5.0  # seconds: 30 parallel refreshes start inside it even on a busy 2-core machine
RACES = 3  # fleets started at once on an empty database (the module's own fleet is the first)
_databases = itertools.count(1)


@dataclass
class Fleet:
    """Instances of one deployment, and what they had made of their empty database once all were up."""

    servers: list[Server]
    database: str
    settings: dict[str, str]
    started_keys: int
    started_kids: list[list[str]]
    started_migrations: list[tuple[Any, ...]]


@contextmanager
def fleet(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, **overrides: str) -> Iterator[Fleet]:
    """Three instances started at the same moment on a new, empty database: they race each other
    to migrate it and to make the first signing key."""
    name = f"multi_{next(_databases)}"
    url = postgres.create_database(name)
    cwds = [tmp_path_factory.mktemp(f"{name}_instance") for _ in range(INSTANCES)]
    settings = fleet_settings(url, **overrides)
    try:
        with keyturn_servers(cwds, **settings) as servers:
            yield Fleet(
                servers=servers,
                database=name,
                settings=settings,
                started_keys=postgres.execute("SELECT count(*) FROM signing_keys", name)[0][0],
                started_kids=[jwks_kids(s.url) for s in servers],
                started_migrations=postgres.execute("SELECT version_num FROM alembic_version", name),
            )
        assert_no_token_logged(servers)
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def cluster(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three instances on one database, with a short reuse grace window."""
    with fleet(postgres, tmp_path_factory, reuse_grace=f"{GRACE}s") as running:
        yield running


def operator(fleet: Fleet, *args: str) -> str:
    """Run `keyturn <args>` against the fleet's database, as its operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update({f"KEYTURN_{k.upper()}": v for k, v in fleet.settings.items()})
    done = subprocess.run([str(KEYTURN), *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def jwks_kids(url: str) -> list[str]:
    response = httpx.get(f"{url}/.well-known/jwks.json", timeout=10)
    assert response.status_code == 200, response.text
    return [k["kid"] for k in response.json()["keys"]]


def kid_of(access_token: str) -> str:
    """The ``kid`` of a JWT's header (read, not verified)."""
    header = access_token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def refresh(server: Server, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/auth/refresh", json={"refresh_token": refresh_token}, timeout=30)


def me(server: Server, tokens: dict[str, Any]) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/auth/me", headers=bearer(tokens), timeout=30)


def session_row(postgres: PostgresServer, database: str, session_id: str) -> tuple[Any, ...]:
    rows = postgres.execute("SELECT id, generation, revoked_at, revoke_reason FROM sessions", database)
    return next(tuple(r[1:]) for r in rows if str(r[0]) == session_id)


def test_parallel_refreshes_across_instances_get_one_new_token(cluster: Fleet, postgres: PostgresServer) -> None:
    """30 refreshes of one token at once, round-robin over three instances: all 200, one new token, one rotation."""
    tokens = sign_in(cluster.servers[0].url, "parallel")
    old = tokens["refresh_token"]
    targets = [cluster.servers[i % INSTANCES] for i in range(30)]
    responses = at_once([partial(refresh, s, old) for s in targets])
    assert [r.status_code for r in responses] == [200] * 30
    assert len({r.json()["refresh_token"] for r in responses}) == 1
    generation, revoked_at, _ = session_row(postgres, cluster.database, tokens["session_id"])
    assert (generation, revoked_at) == (1, None)
    audit = postgres.execute("SELECT session_id, event FROM audit_events WHERE event LIKE 'refresh%'", cluster.database)
    events = [event for sid, event in audit if str(sid) == tokens["session_id"]]
    assert sorted(events) == ["refresh"] + ["refresh_replay"] * 29
    new = responses[0].json()
    assert [me(s, new).status_code for s in cluster.servers] == [200] * INSTANCES
    assert refresh(cluster.servers[2], new["refresh_token"]).status_code == 200


def test_replay_after_grace_on_another_instance_revokes_the_session(cluster: Fleet, postgres: PostgresServer) -> None:
    """A token rotated on A and replayed on B after the grace window revokes the session on every instance."""
    a, b, _ = cluster.servers
    tokens = sign_in(a.url, "replayer")
    rotated = refresh(a, tokens["refresh_token"])
    assert rotated.status_code == 200
    time.sleep(GRACE + 0.3)  # A rotated before it answered: this is past its window, with a margin
    assert_refused(refresh(b, tokens["refresh_token"]), 401, "invalid_grant", RefreshTokenReused.description)
    _, revoked_at, reason = session_row(postgres, cluster.database, tokens["session_id"])
    assert revoked_at is not None
    assert reason == "reuse_detected"
    audit = postgres.execute("SELECT session_id, event, outcome FROM audit_events", cluster.database)
    assert [(e, o) for sid, e, o in audit if str(sid) == tokens["session_id"] and e == "reuse_detected"] == [
        ("reuse_detected", "revoked")
    ]
    current = rotated.json()
    for server in cluster.servers:
        assert_refused(refresh(server, current["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
        assert_refused(me(server, current), 401, "invalid_token", SESSION_ENDED)


def test_logout_on_one_instance_is_refused_at_once_on_the_others(cluster: Fleet) -> None:
    """Right after a logout on A, B and C refuse both its refresh token and its access token."""
    a, *others = cluster.servers
    tokens = sign_in(a.url, "leaver")
    assert [me(s, tokens).status_code for s in others] == [200] * len(others)
    logout = httpx.post(f"{a.url}/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, timeout=30)
    assert logout.status_code == 204
    for server in others:
        assert_refused(refresh(server, tokens["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
        assert_refused(me(server, tokens), 401, "invalid_token", SESSION_ENDED)


def test_key_rotated_on_one_instance_is_published_and_trusted_by_all(cluster: Fleet) -> None:
    """A key rotated through A is in every instance's JWKS before it signs; its tokens verify on every instance."""
    a = cluster.servers[0]
    reload_s = RELOAD_EVERY.total_seconds()
    delay = reload_s + 3  # every instance reloads its ring within RELOAD_EVERY: published before it signs
    sign_in(a.url, "root")
    assert "granted admin to root" in operator(cluster, "users", "grant", "root", "admin")
    admin = sign_in(a.url, "root", register=False)
    earlier = sign_in(cluster.servers[1].url, "rotation-watcher")
    rotated_at = time.monotonic()
    response = httpx.post(f"{a.url}/v1/admin/keys/rotate", json={"delay": f"{delay}s"}, headers=bearer(admin))
    assert response.status_code == 201, response.text
    kid = response.json()["kid"]
    activates_at = datetime.fromisoformat(response.json()["activates_at"])
    assert kid != kid_of(earlier["access_token"])
    for server in cluster.servers:
        while kid not in jwks_kids(server.url):
            assert time.monotonic() < rotated_at + reload_s + 2, f"{server.url} did not publish {kid}"
            time.sleep(0.2)
    assert time.monotonic() < rotated_at + delay, "published only after it started signing"

    time.sleep(max(0.0, (activates_at - datetime.now(UTC)).total_seconds()) + 0.2)
    signed = [sign_in(s.url, "rotation-watcher", register=False) for s in cluster.servers]
    assert [kid_of(t["access_token"]) for t in signed] == [kid] * INSTANCES
    for server in cluster.servers:
        verifier = Verifier(ISSUER, ISSUER, jwks=httpx.get(f"{server.url}/.well-known/jwks.json").json())
        for tokens in [*signed, earlier]:  # the old key stays published for the tokens it signed
            assert me(server, tokens).status_code == 200
            assert verifier.verify(tokens["access_token"]).sid == tokens["session_id"]


def test_instances_started_together_on_an_empty_database_make_one_signing_key(
    cluster: Fleet, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Three instances started at once on an empty database (racing the migration too): one key, in every JWKS."""
    fleets = [cluster]
    for _ in range(RACES - 1):
        with fleet(postgres, tmp_path_factory) as again:
            fleets.append(again)
    for started in fleets:
        assert started.started_keys == 1
        assert len(started.started_kids[0]) == 1
        assert started.started_kids == [started.started_kids[0]] * INSTANCES
        assert len(started.started_migrations) == 1
