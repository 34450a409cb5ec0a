"""The refresh state machine of one session (pure: ``now`` is passed in).

A session row holds a ``generation``; only the token of that generation rotates
it. RFC 9700 §4.14 asks to detect refresh-token reuse: a token of an older
generation means two parties hold the same session, so the session is revoked.
The one exception is the token just before the current one, presented within
the grace window after the rotation (a lost response, two tabs refreshing at
once): it gets the same current token back, so both callers stay signed in. A password change
moves the session two generations on (``rekeyed``): no token from before it is ever replayed.

Times on the wire are whole seconds (``exp``, ``expires_in``), so the session's absolute end is
too: it is floored to the second, no token outlives it, and a session issues nothing in its last
second, so every token response states at least one whole second, and never more than is left.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .errors import SessionExpired, SessionRevoked, UnknownSession

__all__ = ["Action", "Lifetimes", "SessionState", "decide_refresh", "rotation_bounds", "whole_seconds_left"]

SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long a session lives: idle since its last rotation, absolute since sign-in."""

    idle: timedelta
    absolute: timedelta
    grace: timedelta


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the state machine needs of a session row."""

    id: uuid.UUID
    user_id: uuid.UUID
    generation: int
    created_at: datetime
    rotated_at: datetime
    revoked_at: datetime | None = None
    user_enabled: bool = True

    def expires_at(self, lifetimes: Lifetimes) -> datetime:
        """When the current refresh token stops working if it is not used."""
        return min(self.rotated_at + lifetimes.idle, self.absolute_expiry(lifetimes))

    def absolute_expiry(self, lifetimes: Lifetimes) -> datetime:
        """The end of the session: its absolute lifetime after sign-in, floored to the second."""
        return (self.created_at + lifetimes.absolute).replace(microsecond=0)

    def rotated(self, now: datetime) -> SessionState:
        """The state after a rotation at ``now``."""
        return replace(self, generation=self.generation + 1, rotated_at=now)

    def rekeyed(self, now: datetime) -> SessionState:
        """The state after a rotation that leaves no grace (a password change): two generations
        on, so the token that was current before is ``current - 2``, which is always reuse."""
        return replace(self, generation=self.generation + 2, rotated_at=now)


class Action(enum.Enum):
    """What to do with a presented refresh token that the state machine accepts or condemns."""

    ROTATE = "rotate"
    """Current token: move the session one generation on and answer the new token."""
    REPLAY = "replay"
    """Previous token inside the grace window: answer the current token again."""
    REVOKE = "revoke"
    """Reuse: revoke the whole session, record it, then refuse."""


def rotation_bounds(now: datetime, lifetimes: Lifetimes) -> tuple[datetime, datetime]:
    """``decide_refresh``'s ROTATE rule as bounds a store can apply in one statement: the current
    token of an unrevoked session of an enabled user rotates at ``now`` exactly when the session
    was last rotated *after* the first bound and created *at or after* the second.

    The second bound is rule 3 (``now <= absolute_expiry - 1 s``) solved for ``created_at``: the
    floored end is a whole second, so it is at least ``now + 1 s`` exactly when ``created_at +
    absolute`` reaches ``now + 1 s`` rounded up to the second.
    """
    return now - lifetimes.idle, _ceil_second(now) + SECOND - lifetimes.absolute


def whole_seconds_left(at: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``at``, rounded down (RFC 6749 §5.1 ``expires_in``): a client
    that counts on them never holds a token past its end."""
    return (at - now) // SECOND


def _ceil_second(at: datetime) -> datetime:
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + SECOND


def decide_refresh(state: SessionState, generation: int, now: datetime, lifetimes: Lifetimes) -> Action:
    """Decide what a refresh with a token of ``generation`` does at ``now``.

    Raises:
        SessionRevoked: the session has ended, or its user is disabled.
        SessionExpired: the idle or absolute lifetime is over.
        UnknownSession: the token is of a generation the session never reached.
    """
    if state.revoked_at is not None:
        raise SessionRevoked()
    if not state.user_enabled:
        raise SessionRevoked("The account is disabled.", reason="user_disabled")
    if not 0 <= generation <= state.generation:
        raise UnknownSession()
    if now > state.absolute_expiry(lifetimes) - SECOND:  # its last second: no token could live 1 s
        raise SessionExpired(reason="absolute_expired")
    if generation == state.generation:
        if now >= state.rotated_at + lifetimes.idle:
            raise SessionExpired(reason="idle_expired")
        return Action.ROTATE
    # Clock skew between instances may put `now` slightly before `rotated_at`: still a replay.
    if generation == state.generation - 1 and now < state.rotated_at + lifetimes.grace:
        return Action.REPLAY
    return Action.REVOKE
