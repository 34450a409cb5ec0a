"""Unit tests (no I/O) of keyturn.core.sessions: the refresh state machine, exhaustively and by property.

The rules, in the order decide_refresh applies them (a refusal is an ``Outcome`` of action REFUSE
carrying the error the caller is answered with; the tables below name it by its class):

1. a revoked session refuses everything (SessionRevoked); a disabled user's session too, and is ended;
2. a generation the session never reached is unknown (UnknownSession);
3. at or after the absolute expiry everything is refused (SessionExpired: absolute_expired);
4. the current generation rotates, unless the idle lifetime since the last rotation is over
   (SessionExpired: idle_expired);
5. the generation just before the current one, presented before ``rotated_at + grace``, is a
   replay: the caller gets the current token again;
6. anything else is reuse (RFC 9700 §4.14.2): REVOKE, which ends the session and refuses (RefreshTokenReused).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.core.errors import InvalidGrant, RefreshTokenReused, SessionExpired, SessionRevoked, UnknownSession
from keyturn.core.sessions import Action, Lifetimes, SessionBounds, SessionState, decide_refresh, whole_seconds_left

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LIFETIMES = Lifetimes(idle=timedelta(days=7), absolute=timedelta(days=30), grace=timedelta(seconds=10))
SECOND = timedelta(seconds=1)
FAST = settings(max_examples=300, deadline=None, database=None)

ROTATE, REPLAY, REVOKE = "ROTATE", "REPLAY", "REVOKE"
REVOKED, UNKNOWN = "SessionRevoked", "UnknownSession"
IDLE, ABSOLUTE = "SessionExpired:idle_expired", "SessionExpired:absolute_expired"

# Where `now` is, relative to the session (rotated_at = created_at + current generation days).
TIME_POINTS = {
    "just_after_rotation": lambda s: s.rotated_at + timedelta(milliseconds=1),
    "grace-1s": lambda s: s.rotated_at + LIFETIMES.grace - SECOND,
    "grace": lambda s: s.rotated_at + LIFETIMES.grace,
    "grace+1s": lambda s: s.rotated_at + LIFETIMES.grace + SECOND,
    "idle-1s": lambda s: s.rotated_at + LIFETIMES.idle - SECOND,
    "idle": lambda s: s.rotated_at + LIFETIMES.idle,
    "absolute-1s": lambda s: s.created_at + LIFETIMES.absolute - SECOND,
    "absolute": lambda s: s.created_at + LIFETIMES.absolute,
    "past_absolute": lambda s: s.created_at + LIFETIMES.absolute + timedelta(days=1),
}
RELATIONS = {"current": 0, "current-1": -1, "current-2": -2, "current-5": -5, "current+1": 1}

# Expected outcome of a session that is not revoked (a revoked one is always SessionRevoked).
#                         current    current-1  current-2  current-5  current+1
EXPECTED = {
    "just_after_rotation": (ROTATE, REPLAY, REVOKE, REVOKE, UNKNOWN),
    "grace-1s": (ROTATE, REPLAY, REVOKE, REVOKE, UNKNOWN),
    "grace": (ROTATE, REVOKE, REVOKE, REVOKE, UNKNOWN),
    "grace+1s": (ROTATE, REVOKE, REVOKE, REVOKE, UNKNOWN),
    "idle-1s": (ROTATE, REVOKE, REVOKE, REVOKE, UNKNOWN),
    "idle": (IDLE, REVOKE, REVOKE, REVOKE, UNKNOWN),
    "absolute-1s": (IDLE, REVOKE, REVOKE, REVOKE, UNKNOWN),
    "absolute": (ABSOLUTE, ABSOLUTE, ABSOLUTE, ABSOLUTE, UNKNOWN),
    "past_absolute": (ABSOLUTE, ABSOLUTE, ABSOLUTE, ABSOLUTE, UNKNOWN),
}


def session(generation: int, *, revoked: bool = False) -> SessionState:
    rotated_at = T0 + timedelta(days=generation)
    return SessionState(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        generation=generation,
        created_at=T0,
        rotated_at=rotated_at,
        revoked_at=rotated_at + SECOND if revoked else None,
    )


def decide(state: SessionState, generation: int, now: datetime) -> Action:
    """decide_refresh's action; a REFUSE is raised as the error it carries, so tables and
    properties name refusals by their class."""
    result = decide_refresh(state, generation, now, LIFETIMES)
    if result.action is Action.REFUSE:
        assert result.refusal is not None
        raise result.refusal
    return result.action


def rotated(state: SessionState, now: datetime) -> SessionState:
    """The state after a rotation at ``now`` (what the store's compare-and-swap writes)."""
    return replace(state, generation=state.generation + 1, rotated_at=now)


def outcome(state: SessionState, generation: int, now: datetime) -> str:
    try:
        return decide(state, generation, now).name
    except SessionExpired as exc:
        return f"SessionExpired:{exc.reason}"
    except InvalidGrant as exc:
        return type(exc).__name__


def _cases() -> list[object]:
    cases: list[object] = []
    for revoked, relation, point, current in itertools.product((False, True), RELATIONS, TIME_POINTS, (0, 1, 7)):
        # Generations are unsigned in the token (8 bytes, big-endian), so a negative one never reaches
        # the state machine: those combinations are not states it can see.
        if current + RELATIONS[relation] < 0:
            continue
        expected = REVOKED if revoked else EXPECTED[point][list(RELATIONS).index(relation)]
        cases.append(
            pytest.param(revoked, relation, point, current, expected, id=f"{revoked}-{relation}-{point}-g{current}")
        )
    return cases


@pytest.mark.parametrize(("revoked", "relation", "point", "current", "expected"), _cases())
def test_decide_refresh_follows_the_rule_table(
    revoked: bool, relation: str, point: str, current: int, expected: str
) -> None:
    state = session(current, revoked=revoked)
    assert outcome(state, current + RELATIONS[relation], TIME_POINTS[point](state)) == expected


def test_the_table_has_a_row_per_time_point_and_a_column_per_relation() -> None:
    assert set(EXPECTED) == set(TIME_POINTS)
    assert all(len(row) == len(RELATIONS) for row in EXPECTED.values())


def test_errors_are_the_documented_classes() -> None:
    fresh = session(1)
    with pytest.raises(UnknownSession):
        decide(fresh, 2, T0)
    with pytest.raises(SessionRevoked):
        decide(session(1, revoked=True), 1, T0)
    with pytest.raises(SessionExpired) as excinfo:
        decide(fresh, 1, fresh.rotated_at + LIFETIMES.idle)
    assert excinfo.value.reason == "idle_expired"


def test_a_rotation_story() -> None:
    """Sign-in, rotate twice, a lost response replays, then the oldest token revokes the session."""
    state = session(0)
    assert decide(state, 0, T0 + timedelta(minutes=1)) is Action.ROTATE
    state = rotated(state, T0 + timedelta(minutes=1))
    assert decide(state, 0, T0 + timedelta(minutes=1, seconds=3)) is Action.REPLAY
    assert decide(state, 1, T0 + timedelta(hours=1)) is Action.ROTATE
    state = rotated(state, T0 + timedelta(hours=1))
    assert decide(state, 0, T0 + timedelta(hours=1, seconds=1)) is Action.REVOKE


def test_a_disabled_users_session_is_refused_whatever_the_token() -> None:
    """Rule 1b: a session whose user is disabled refuses every generation (reason user_disabled)."""
    state = replace(session(2), user_enabled=False)
    for generation in (0, 1, 2, 3):
        with pytest.raises(SessionRevoked) as refused:
            decide(state, generation, state.rotated_at + SECOND)
        assert refused.value.reason == "user_disabled"


def test_rekeyed_leaves_no_grace_for_the_token_before_it() -> None:
    """A password change rekeys: the token current before it is two generations old, so it is
    reuse even presented at once, and the new token rotates."""
    state = session(3)
    now = state.rotated_at + timedelta(hours=1)
    after = state.rekeyed(now)
    assert (after.generation, after.rotated_at) == (5, now)
    assert decide(after, 3, now) is Action.REVOKE
    assert decide(after, 5, now) is Action.ROTATE


@FAST
@given(created_micros=st.integers(0, 999_999), before_end_micros=st.integers(1, 3_000_000))
def test_the_absolute_end_is_whole_seconds_so_a_refresh_always_has_one_left(
    created_micros: int, before_end_micros: int
) -> None:
    """A refresh is accepted only while the session's end, floored to the second, is at least a
    second ahead: then at least one whole second of it is left to state as ``expires_in``."""
    state = replace(session(0), created_at=T0 + timedelta(microseconds=created_micros))
    state = replace(state, rotated_at=state.created_at + LIFETIMES.absolute - LIFETIMES.idle)
    end = state.absolute_expiry(LIFETIMES)
    assert end.microsecond == 0
    assert end <= state.created_at + LIFETIMES.absolute
    now = state.created_at + LIFETIMES.absolute - timedelta(microseconds=before_end_micros)
    try:
        decide(state, 0, now)
    except SessionExpired:
        assert now > end - SECOND
        return
    assert whole_seconds_left(end, now) >= 1


def test_reuse_revokes_the_session_and_refuses_with_reuse_detected() -> None:
    """REVOKE carries what the service does: end the session for reuse, then refuse."""
    state = session(3)
    result = decide_refresh(state, 1, state.rotated_at + SECOND, LIFETIMES)
    assert (result.action, result.end_session) == (Action.REVOKE, "reuse_detected")
    assert isinstance(result.refusal, RefreshTokenReused)
    assert result.refusal.reason == "reuse_detected"


def test_only_reuse_and_a_disabled_user_end_the_session() -> None:
    """Other refusals leave the row as it is (revoked, expired or unknown already say enough)."""
    state = session(2)
    now = state.rotated_at + SECOND
    assert decide_refresh(replace(state, user_enabled=False), 2, now, LIFETIMES).end_session == "user_disabled"
    for refused in (
        decide_refresh(session(2, revoked=True), 2, now, LIFETIMES),
        decide_refresh(state, 9, now, LIFETIMES),
    ):
        assert (refused.action, refused.end_session) == (Action.REFUSE, None)
    for ok in (decide_refresh(state, 2, now, LIFETIMES), decide_refresh(state, 1, now, LIFETIMES)):
        assert (ok.refusal, ok.end_session) == (None, None)


# --- expiry --------------------------------------------------------------------------------------------


def test_expires_at_is_idle_since_rotation_early_in_a_session() -> None:
    state = session(1)
    assert state.expires_at(LIFETIMES) == state.rotated_at + LIFETIMES.idle


def test_expires_at_is_the_absolute_expiry_late_in_a_session() -> None:
    state = SessionState(
        id=uuid.uuid4(), user_id=uuid.uuid4(), generation=40, created_at=T0, rotated_at=T0 + timedelta(days=29)
    )
    assert state.expires_at(LIFETIMES) == T0 + LIFETIMES.absolute
    assert state.absolute_expiry(LIFETIMES) == T0 + LIFETIMES.absolute


@FAST
@given(
    rotated=st.integers(min_value=0, max_value=60 * 86400),
    idle=st.integers(min_value=1, max_value=60 * 86400),
    absolute=st.integers(min_value=1, max_value=90 * 86400),
)
def test_expires_at_is_min_of_idle_since_rotation_and_absolute_since_creation(
    rotated: int, idle: int, absolute: int
) -> None:
    lifetimes = Lifetimes(idle=timedelta(seconds=idle), absolute=timedelta(seconds=absolute), grace=SECOND)
    state = SessionState(
        id=uuid.uuid4(), user_id=uuid.uuid4(), generation=1, created_at=T0, rotated_at=T0 + timedelta(seconds=rotated)
    )
    expected = min(T0 + timedelta(seconds=rotated + idle), T0 + timedelta(seconds=absolute))
    assert state.expires_at(lifetimes) == expected


# --- properties ------------------------------------------------------------------------------------------

generations = st.integers(min_value=0, max_value=2**64 - 1)
offsets = st.integers(min_value=-86400, max_value=120 * 86400)


@st.composite
def states(draw: st.DrawFn, *, revoked: bool | None = None) -> SessionState:
    current = draw(generations)
    rotated = draw(st.integers(min_value=0, max_value=29 * 86400)) if current else 0
    is_revoked = draw(st.booleans()) if revoked is None else revoked
    return SessionState(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        generation=current,
        created_at=T0,
        rotated_at=T0 + timedelta(seconds=rotated),
        revoked_at=T0 + timedelta(seconds=rotated) if is_revoked else None,
    )


@FAST
@given(state=states(revoked=True), presented=generations, offset=offsets)
def test_a_revoked_session_never_rotates_or_replays(state: SessionState, presented: int, offset: int) -> None:
    with pytest.raises(SessionRevoked):
        decide(state, presented, state.rotated_at + timedelta(seconds=offset))


@FAST
@given(state=states(revoked=False), data=st.data())
def test_a_token_two_or_more_generations_old_is_always_reuse(state: SessionState, data: st.DataObject) -> None:
    if state.generation < 2:
        state = SessionState(state.id, state.user_id, state.generation + 2, state.created_at, state.rotated_at)
    presented = data.draw(st.integers(min_value=0, max_value=state.generation - 2))
    now = data.draw(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 3, 1)))  # noqa: DTZ001
    now = now.replace(tzinfo=UTC)
    if now >= state.absolute_expiry(LIFETIMES):
        with pytest.raises(SessionExpired):
            decide(state, presented, now)
    else:
        assert decide(state, presented, now) is Action.REVOKE


@FAST
@given(state=states(), presented=generations, offset=offsets)
def test_only_the_current_generation_rotates(state: SessionState, presented: int, offset: int) -> None:
    try:
        action = decide(state, presented, state.rotated_at + timedelta(seconds=offset))
    except InvalidGrant:
        return
    if action is Action.ROTATE:
        assert presented == state.generation
    if action is Action.REPLAY:
        assert presented == state.generation - 1


@FAST
@given(state=states(), presented=generations, offset=offsets)
def test_a_future_generation_is_unknown_unless_revoked(state: SessionState, presented: int, offset: int) -> None:
    if presented <= state.generation:
        presented = state.generation + 1 + presented % 1000
    expected = SessionRevoked if state.revoked_at is not None else UnknownSession
    with pytest.raises(expected):
        decide(state, presented, state.rotated_at + timedelta(seconds=offset))


@FAST
@given(
    current=st.integers(min_value=1, max_value=2**64 - 1),
    rotated=st.integers(min_value=60, max_value=20 * 86400),
    skew_ms=st.integers(min_value=1, max_value=5000),
)
def test_previous_token_slightly_before_rotated_at_is_a_replay(current: int, rotated: int, skew_ms: int) -> None:
    """Clock skew between instances can put `now` before `rotated_at`: still a replay, not reuse."""
    state = SessionState(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        generation=current,
        created_at=T0,
        rotated_at=T0 + timedelta(seconds=rotated),
    )
    now = state.rotated_at - timedelta(milliseconds=skew_ms)
    assert decide(state, current - 1, now) is Action.REPLAY


@FAST
@given(state=states(revoked=False), offset=st.integers(min_value=0, max_value=9999))
def test_previous_token_within_grace_replays_and_after_grace_revokes(state: SessionState, offset: int) -> None:
    if state.generation == 0:
        state = SessionState(state.id, state.user_id, 1, state.created_at, state.rotated_at)
    now = state.rotated_at + timedelta(milliseconds=offset)
    assert decide(state, state.generation - 1, now) is Action.REPLAY
    late = state.rotated_at + LIFETIMES.grace + timedelta(milliseconds=offset)
    if late < state.absolute_expiry(LIFETIMES):
        assert decide(state, state.generation - 1, late) is Action.REVOKE


def rotates_by_bounds(state: SessionState, presented: int, now: datetime) -> bool:
    """What the store's one-statement rotation does with ``SessionBounds`` (``store/sql.py``'s
    ``_ROTATE_CURRENT``: rotated_at strictly after, created_at at or after, user enabled)."""
    bounds = SessionBounds.at(now, LIFETIMES)
    return (
        state.revoked_at is None
        and state.user_enabled
        and presented == state.generation
        and state.rotated_at > bounds.rotated_after
        and state.created_at >= bounds.refresh_created_from
    )


@pytest.mark.parametrize(("revoked", "relation", "point", "current", "expected"), _cases())
def test_session_bounds_rotate_exactly_where_the_rule_table_says_rotate(
    revoked: bool, relation: str, point: str, current: int, expected: str
) -> None:
    """The store's fast path and decide_refresh agree at every boundary of the table."""
    state = session(current, revoked=revoked)
    presented, now = current + RELATIONS[relation], TIME_POINTS[point](state)
    assert rotates_by_bounds(state, presented, now) == (expected == ROTATE)


@FAST
@given(
    state=states(),
    presented=generations,
    offset=offsets,
    micros=st.integers(0, 999_999),
    created_micros=st.integers(0, 999_999),
    enabled=st.booleans(),
)
def test_session_bounds_rotate_exactly_when_decide_refresh_rotates(
    state: SessionState, presented: int, offset: int, micros: int, created_micros: int, enabled: bool
) -> None:
    """Anywhere in time, to the microsecond, the bounds rotate exactly when decide_refresh answers
    ROTATE (a session created and refreshed at fractional seconds, a disabled user)."""
    shift = timedelta(microseconds=created_micros)
    state = replace(state, created_at=state.created_at + shift, rotated_at=state.rotated_at + shift)
    state = replace(state, user_enabled=enabled)
    now = state.rotated_at + timedelta(seconds=offset, microseconds=micros)
    try:
        rotates = decide(state, presented, now) is Action.ROTATE
    except InvalidGrant:
        rotates = False
    assert rotates_by_bounds(state, presented, now) == rotates


@FAST
@given(
    state=states(),
    offset=offsets,
    micros=st.integers(0, 999_999),
    created_micros=st.integers(0, 999_999),
    enabled=st.booleans(),
)
def test_is_live_is_unrevoked_enabled_and_before_expires_at(
    state: SessionState, offset: int, micros: int, created_micros: int, enabled: bool
) -> None:
    """The one liveness rule, to the microsecond: what listing, counting, pruning and every
    authenticated request use (the store applies the same bounds as SQL)."""
    shift = timedelta(microseconds=created_micros)
    state = replace(state, created_at=state.created_at + shift, rotated_at=state.rotated_at + shift)
    state = replace(state, user_enabled=enabled)
    now = state.rotated_at + timedelta(seconds=offset, microseconds=micros)
    expected = state.revoked_at is None and enabled and now < state.expires_at(LIFETIMES)
    assert SessionBounds.at(now, LIFETIMES).is_live(state) == expected


@pytest.mark.parametrize("point", list(TIME_POINTS))
def test_a_session_that_can_rotate_is_live(point: str) -> None:
    """Every time point where the current token rotates is one where the session is live."""
    state = session(1)
    now = TIME_POINTS[point](state)
    if outcome(state, 1, now) == ROTATE:
        assert SessionBounds.at(now, LIFETIMES).is_live(state)
