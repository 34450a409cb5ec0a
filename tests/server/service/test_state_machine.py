"""Property-based integration test: a hypothesis state machine drives the session lifecycle.

Every example builds a fresh ``Service`` on its own SQLite file (cheap argon2, a hand-moved
clock) and runs a random sequence of logins, refreshes, replays, logouts, password changes (right
and wrong), disables and clock jumps against it. A plain-Python model predicts every answer, and
the invariants compare the database with the model after each step.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from keyturn.core.errors import (
    InvalidCredentials,
    InvalidGrant,
    InvalidToken,
    RefreshTokenReused,
    SessionExpired,
    SessionRevoked,
)
from keyturn.core.passwords import Passwords
from keyturn.core.sessions import SessionBounds
from keyturn.server.service import Caller, Client, Service, TokenPair
from tests.conftest import PG_TEMPLATE, Clock, make_settings
from tests.postgres import PostgresServer

T = TypeVar("T")

WHO = Client(ip="198.51.100.4", user_agent="state-machine")
USERS = ("alice", "bob")
FIRST_PASSWORD = "correct horse battery staple"
IDLE = timedelta(hours=6)
ABSOLUTE = timedelta(days=2)
GRACE = timedelta(seconds=10)
ACCESS_TTL = timedelta(minutes=15)
LEEWAY = timedelta(seconds=5)
PASSWORD_FAILURES = 3  # wrong current passwords a session may send before it ends

# A few seconds (around the 10 s grace window), or hours and days (access-token, idle and
# absolute expiry). Rules also jump exactly onto a lifetime's end, or one second before it.
SHORT_STEPS = st.integers(0, 20) | st.sampled_from([9, 10, 11])
EDGE = st.sampled_from([0, -1])  # exactly at a lifetime's end, or one second before it
LONG_STEPS = st.sampled_from([15 * 60, 15 * 60 + 5, 6 * 3600 - 1, 6 * 3600, 86400, 2 * 86400])


@dataclass
class Issued:
    """One refresh token the service handed out, and when a rotation superseded it."""

    generation: int
    token: str
    superseded_at: datetime | None = None


@dataclass
class ModelSession:
    """What the model believes about one session."""

    sid: str
    user: str
    created_at: datetime
    rotated_at: datetime
    tokens: list[Issued]
    access: list[tuple[str, datetime]] = field(default_factory=list)
    revoked: bool = False
    password_failures: int = 0

    @property
    def generation(self) -> int:
        return self.tokens[-1].generation

    def issued(self, generation: int) -> Issued | None:
        return next((t for t in self.tokens if t.generation == generation), None)

    def expired(self, now: datetime) -> bool:
        return now >= self.created_at + ABSOLUTE or now >= self.rotated_at + IDLE

    def dead(self, now: datetime) -> bool:
        return self.revoked or self.expired(now)

    def access_ok(self, now: datetime) -> bool:
        """Whether the latest access token authenticates: live session, unexpired token."""
        _, exp = self.access[-1]
        return not self.revoked and now < self.created_at + ABSOLUTE and now < exp + LEEWAY

    def expect_refresh(self, generation: int, now: datetime) -> str:
        """The model's answer to a refresh with the token of ``generation`` (RFC 9700 §4.14)."""
        if self.revoked:
            return "revoked"
        if now >= self.created_at + ABSOLUTE:
            return "expired"
        if generation == self.generation:
            return "expired" if now >= self.rotated_at + IDLE else "rotate"
        issued = self.issued(generation)
        assert issued is not None
        assert issued.superseded_at is not None
        if generation == self.generation - 1 and now < issued.superseded_at + GRACE:
            return "replay"
        return "reuse"  # a password change skips a generation: its previous token is current - 2


ERRORS: dict[str, type[InvalidGrant]] = {
    "revoked": SessionRevoked,
    "expired": SessionExpired,
    "reuse": RefreshTokenReused,
}


class SessionLifecycle(RuleBasedStateMachine):
    """Drives the real AuthService and checks it against ``ModelSession``s."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="keyturn-sm-"))
        self.clock = Clock()
        self.pg_name = None
        database: Path | str = self.tmp / "keyturn.db"
        if POSTGRES is not None:  # one database per example, copied from the migrated template
            self.pg_name = f"sm_{uuid.uuid4().hex}"
            database = POSTGRES.create_database(self.pg_name, template=PG_TEMPLATE)
        cfg = make_settings(
            database,
            refresh_idle_ttl=IDLE,
            session_max_ttl=ABSOLUTE,
            reuse_grace=GRACE,
            access_token_ttl=ACCESS_TTL,
            leeway=LEEWAY,
            password_change_failures=PASSWORD_FAILURES,
        )
        self.svc = Service(cfg, passwords=Passwords(time_cost=1, memory_cost=1024), clock=self.clock)
        self.run(self.svc.start())
        self.passwords = dict.fromkeys(USERS, FIRST_PASSWORD)
        self.disabled: set[str] = set()
        self.changes = 0
        self.steps = 0
        for name in USERS:
            self.run(self.svc.auth.create_user(name, FIRST_PASSWORD, WHO))
        self.sessions: list[ModelSession] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        event(f"steps: {self.steps // 5 * 5}+")
        try:
            self.run(self.svc.close())
            self.run(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            if POSTGRES is not None and self.pg_name:
                POSTGRES.drop_database(self.pg_name)

    # helpers

    def now(self) -> datetime:
        return self.clock()

    def pick(self, data: st.DataObject, *, min_tokens: int = 1) -> ModelSession:
        """A session, usually a live one: dead ones are only checked to stay dead."""
        candidates = [s for s in self.sessions if len(s.tokens) >= min_tokens]
        live = [s for s in candidates if not s.dead(self.now())]
        if live and data.draw(st.integers(0, 3), label="live only") > 0:
            candidates = live
        return data.draw(st.sampled_from(candidates), label="session")

    def record_pair(self, s: ModelSession, pair: TokenPair) -> None:
        now = self.now()
        exp = min(now + ACCESS_TTL, s.created_at + ABSOLUTE)
        s.access.append((pair.access_token, exp))
        assert pair.session_id == s.sid

    def rotated(self, s: ModelSession, pair: TokenPair, step: int = 1) -> None:
        """Apply a successful rotation to the model and check the new token names the generation
        ``step`` on (2 after a password change: no grace for the token before it)."""
        now = self.now()
        decoded = self.svc.ctx.codec.decode(pair.refresh_token)
        assert (str(decoded.session_id), decoded.generation) == (s.sid, s.generation + step)
        assert pair.refresh_token not in {t.token for t in s.tokens}
        s.tokens[-1].superseded_at = now
        s.tokens.append(Issued(s.generation + step, pair.refresh_token))
        s.rotated_at = now
        self.record_pair(s, pair)

    def caller(self, s: ModelSession) -> Caller | None:
        """Authenticate with the session's latest access token; None when the model says it must fail."""
        token, _ = s.access[-1]
        if not s.access_ok(self.now()):
            with pytest.raises(InvalidToken):
                self.run(self.svc.auth.authenticate(token))
            return None
        return self.run(self.svc.auth.authenticate(token))

    def present(self, s: ModelSession, generation: int) -> None:
        """Refresh with the token of ``generation`` and check the outcome against the model."""
        now = self.now()
        expected = s.expect_refresh(generation, now)
        issued = s.issued(generation)
        assert issued is not None
        token = issued.token
        event(f"refresh: {expected}")
        if expected in ERRORS:
            with pytest.raises(ERRORS[expected]):
                self.run(self.svc.auth.refresh(token, WHO))
            if expected == "reuse":
                s.revoked = True
            return
        pair = self.run(self.svc.auth.refresh(token, WHO))
        if expected == "rotate":
            self.rotated(s, pair)
        else:  # replay: exactly the token the rotation answered, and no new generation
            assert pair.refresh_token == s.tokens[-1].token
            self.record_pair(s, pair)

    # rules

    @initialize()
    def first_login(self) -> None:
        self.login(USERS[0], None)

    @rule(user=st.sampled_from(USERS), device=st.none() | st.text(max_size=5), old_password=st.booleans())
    def login(self, user: str, device: str | None, old_password: bool = False) -> None:
        if user in self.disabled or (old_password and self.passwords[user] != FIRST_PASSWORD):
            with pytest.raises(InvalidCredentials):
                self.run(self.svc.auth.login(user, FIRST_PASSWORD, WHO))
            return
        pair = self.run(self.svc.auth.login(user, self.passwords[user], WHO, device))
        now = self.now()
        decoded = self.svc.ctx.codec.decode(pair.refresh_token)
        assert (str(decoded.session_id), decoded.generation) == (pair.session_id, 0)
        assert pair.session_id not in {s.sid for s in self.sessions}
        s = ModelSession(pair.session_id, user, now, now, [Issued(0, pair.refresh_token)])
        self.record_pair(s, pair)
        self.sessions.append(s)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), edge=st.sampled_from([None] * 6 + ["idle", "absolute"]), offset=EDGE)
    def refresh_current(self, data: st.DataObject, edge: str | None, offset: int) -> None:
        s = self.pick(data)
        if edge is not None:
            self.edge(s.rotated_at + IDLE if edge == "idle" else s.created_at + ABSOLUTE, offset)
        self.present(s, s.generation)

    @precondition(lambda self: any(len(s.tokens) >= 2 for s in self.sessions))
    @rule(data=st.data(), offset=st.none() | EDGE)
    def replay_previous(self, data: st.DataObject, offset: int | None) -> None:
        """The token issued just before the current one (a lost response, or one from before a
        password change)."""
        s = self.pick(data, min_tokens=2)
        if offset is not None:
            self.edge(s.rotated_at + GRACE, offset)
        self.present(s, s.tokens[-2].generation)

    @precondition(lambda self: any(len(s.tokens) >= 3 for s in self.sessions))
    @rule(data=st.data())
    def replay_older(self, data: st.DataObject) -> None:
        s = self.pick(data, min_tokens=3)
        self.present(s, data.draw(st.sampled_from(s.tokens[:-2]), label="issued").generation)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), by_refresh_token=st.booleans())
    def logout(self, data: st.DataObject, by_refresh_token: bool) -> None:
        s = self.pick(data)
        if by_refresh_token:  # any generation of the session's tokens names it
            issued = data.draw(st.sampled_from(s.tokens), label="issued")
            self.run(self.svc.auth.logout(None, issued.token, WHO))
            s.revoked = True
        elif (caller := self.caller(s)) is not None:
            self.run(self.svc.auth.logout(caller, None, WHO))
            s.revoked = True

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def logout_all(self, data: st.DataObject) -> None:
        s = self.pick(data)
        caller = self.caller(s)
        if caller is not None:
            self.run(self.svc.auth.logout_all(caller, WHO))
            for other in self.sessions:
                if other.user == s.user:
                    other.revoked = True

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), wrong=st.booleans())
    def change_password(self, data: st.DataObject, wrong: bool) -> None:
        s = self.pick(data)
        caller = self.caller(s)
        if caller is None:
            return
        new = f"{FIRST_PASSWORD} {self.changes + 1}"
        if wrong:
            with pytest.raises(InvalidCredentials):
                self.run(self.svc.auth.change_password(caller, "not the password at all", new, WHO))
            s.password_failures += 1
            s.revoked = s.password_failures >= PASSWORD_FAILURES  # the budget is spent: it ends
            return
        pair = self.run(self.svc.auth.change_password(caller, self.passwords[s.user], new, WHO))
        self.changes += 1
        self.passwords[s.user] = new
        s.password_failures = 0
        for other in self.sessions:
            if other.user == s.user and other is not s:
                other.revoked = True
        self.rotated(s, pair, step=2)

    @precondition(lambda self: self.sessions)
    @rule(user=st.sampled_from(USERS))
    def disable(self, user: str) -> None:
        """An operator disables the account: every session ends, no sign-in or refresh works."""
        self.run(self.svc.admin.disable_user(user))
        self.disabled.add(user)
        for s in self.sessions:
            if s.user == user:
                s.revoked = True

    def edge(self, end: datetime, offset: int) -> None:
        """Move the clock to ``end + offset`` seconds unless that is already past."""
        target = end + timedelta(seconds=offset)
        if target > self.now():
            self.clock.now = target

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), offset=st.none() | EDGE)
    def authenticate(self, data: st.DataObject, offset: int | None) -> None:
        s = self.pick(data)
        if offset is not None:
            self.edge(s.access[-1][1] + LEEWAY, offset)
        self.caller(s)

    @rule(seconds=SHORT_STEPS | LONG_STEPS)
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # invariants

    @invariant()
    def database_matches_the_model(self) -> None:
        """One generation per row, equal to the number of rotations; revocation as predicted."""
        self.steps += 1
        for s in self.sessions:
            with_tx = self.run(self._row(s.sid))
            assert with_tx is not None
            generation, revoked = with_tx
            assert generation == s.generation, (s.sid, generation, s.generation)
            assert revoked == s.revoked, (s.sid, revoked, s.revoked)

    async def _row(self, sid: str) -> tuple[int, bool] | None:
        async with self.svc.store.read() as tx:
            record = await tx.session(uuid.UUID(sid))
        return None if record is None else (record.generation, record.revoked_at is not None)

    @invariant()
    def dead_sessions_stay_dead(self) -> None:
        """No token of a revoked or expired session is accepted, access or refresh."""
        now = self.now()
        for s in self.sessions:
            token, _ = s.access[-1]
            if not s.access_ok(now):
                with pytest.raises(InvalidToken):
                    self.run(self.svc.auth.authenticate(token))
            if s.dead(now):
                # The current token only: an older one would revoke an expired session (a real change).
                with pytest.raises(SessionRevoked if s.revoked else SessionExpired):
                    self.run(self.svc.auth.refresh(s.tokens[-1].token, WHO))

    @invariant()
    def live_sessions_listed(self) -> None:
        """The user's session list holds exactly the model's live sessions."""
        now = self.now()
        for user in USERS:
            live = {s.sid for s in self.sessions if s.user == user and not s.dead(now)}
            assert self.run(self._listed(user)) == live

    async def _listed(self, user: str) -> set[str]:
        async with self.svc.store.read() as tx:
            record = await tx.user_by_key(user)
            assert record is not None
            rows = await tx.live_sessions(record.id, SessionBounds.at(self.now(), self.svc.ctx.lifetimes))
        return {str(r.id) for r in rows}


POSTGRES: PostgresServer | None = None  # set while the PostgreSQL run goes


def test_session_lifecycle(backend: str, request: pytest.FixtureRequest) -> None:
    """Random lifecycles of sessions: the service always agrees with the model (on each backend)."""
    global POSTGRES
    POSTGRES = request.getfixturevalue("postgres") if backend == "postgresql" else None
    try:
        run_state_machine_as_test(
            SessionLifecycle,
            settings=settings(max_examples=25, stateful_step_count=20, deadline=None, database=None),
        )
    finally:
        POSTGRES = None
