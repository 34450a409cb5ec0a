"""The session lifecycle (pure: ``now`` is passed in): when a session is live, and what a refresh does.

A session row holds a ``generation``; only the token of that generation rotates it. RFC 9700
§4.14 asks to detect refresh-token reuse: a token of an older generation means two parties hold
the same session, so the session is revoked. The one exception is the token just before the
current one, presented within the grace window after the rotation (a lost response, two tabs
refreshing at once): it gets the same current refresh token back, so both callers stay signed in.
A password change moves the session two generations on (``rekeyed``): no token from before it is
ever replayed.

Liveness has one home, ``SessionBounds``: a session is live at ``now`` when it is not revoked,
its user is enabled, it was rotated less than the idle lifetime ago and its absolute end is still
ahead. The refresh decision, authenticated requests, the device list, the live-session count and
pruning all ask it; the store builds its SQL from the same bounds.

Times on the wire are whole seconds (``exp``, ``expires_in``), so the session's absolute end is
too: it is floored to the second, no token outlives it, and a session issues nothing in its last
second, so every token response states at least one whole second, and never more than is left.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .errors import InvalidGrant, RefreshTokenReused, SessionExpired, SessionRevoked, UnknownSession

__all__ = [
    "Action", "Lifetimes", "Outcome", "SessionBounds", "SessionState", "decide_refresh", "whole_seconds_left",
]  # fmt: skip

SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long a session lives: idle since its last rotation, absolute since sign-in; and how
    long the previous refresh token is answered after a rotation (``grace``)."""

    idle: timedelta
    absolute: timedelta
    grace: timedelta


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the lifecycle needs of a session row (and of its user's)."""

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

    def rekeyed(self, now: datetime) -> SessionState:
        """The state after a rotation that leaves no grace (a password change): two generations
        on, so the token that was current before is ``current - 2``, which is always reuse."""
        return replace(self, generation=self.generation + 2, rotated_at=now)


@dataclass(frozen=True, slots=True)
class SessionBounds:
    """Which sessions are live at ``now``, as bounds on a session row's times.

    Live: not revoked, user enabled, ``rotated_at > rotated_after`` (the idle lifetime) and
    ``created_at >= created_from`` (the absolute end, floored to the second, is after ``now``).
    A refresh needs one whole second more (``created_at >= refresh_created_from``). Each bound is
    the lifetime rule solved for the row's column, so a store can apply it in an index-friendly
    ``WHERE`` and agree with ``is_live`` to the microsecond.
    """

    now: datetime
    rotated_after: datetime
    created_from: datetime
    refresh_created_from: datetime

    @classmethod
    def at(cls, now: datetime, lifetimes: Lifetimes) -> SessionBounds:
        """The bounds at ``now``. ``floor(created + absolute) > now`` holds exactly when
        ``created + absolute >= floor(now) + 1 s``; ``floor(created + absolute) - 1 s >= now``
        exactly when ``created + absolute >= ceil(now) + 1 s``."""
        return cls(
            now=now,
            rotated_after=now - lifetimes.idle,
            created_from=now.replace(microsecond=0) + SECOND - lifetimes.absolute,
            refresh_created_from=_ceil_second(now) + SECOND - lifetimes.absolute,
        )

    def is_live(self, state: SessionState) -> bool:
        """Whether the session can still be used at ``now`` (its access tokens, its device entry)."""
        return (
            state.revoked_at is None
            and state.user_enabled
            and state.rotated_at > self.rotated_after
            and state.created_at >= self.created_from
        )


class Action(enum.Enum):
    """What a refresh does with a presented refresh token."""

    ROTATE = "rotate"
    """Current token: move the session one generation on and answer the new token."""
    REPLAY = "replay"
    """Previous token inside the grace window: answer the current token again."""
    REVOKE = "revoke"
    """Reuse: revoke the whole session, record it, then refuse."""
    REFUSE = "refuse"
    """The session cannot be refreshed (ended, expired, unknown generation): refuse."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision on one refresh: the action, the refusal to answer (``REVOKE``, ``REFUSE``),
    and the reason to end the session with before refusing (reuse, or a user disabled while a
    sign-in raced it), if it must end."""

    action: Action
    refusal: InvalidGrant | None = None
    end_session: str | None = None


_ROTATE = Outcome(Action.ROTATE)
_REPLAY = Outcome(Action.REPLAY)


def decide_refresh(state: SessionState, generation: int, now: datetime, lifetimes: Lifetimes) -> Outcome:
    """Decide what a refresh with a token of ``generation`` does at ``now``: one outcome, which
    the service carries out in one place (``service/refresh.py``)."""
    bounds = SessionBounds.at(now, lifetimes)
    if state.revoked_at is not None:
        return Outcome(Action.REFUSE, SessionRevoked())
    if not state.user_enabled:
        disabled = SessionRevoked("The account is disabled.", reason="user_disabled")
        return Outcome(Action.REFUSE, disabled, end_session="user_disabled")
    if not 0 <= generation <= state.generation:
        return Outcome(Action.REFUSE, UnknownSession())
    if state.created_at < bounds.refresh_created_from:  # its last second: no token could live 1 s
        return Outcome(Action.REFUSE, SessionExpired(reason="absolute_expired"))
    if generation == state.generation:
        if state.rotated_at <= bounds.rotated_after:
            return Outcome(Action.REFUSE, SessionExpired(reason="idle_expired"))
        return _ROTATE
    # Clock skew between instances may put `now` slightly before `rotated_at`: still a replay.
    if generation == state.generation - 1 and now < state.rotated_at + lifetimes.grace:
        return _REPLAY
    return Outcome(Action.REVOKE, RefreshTokenReused(), end_session="reuse_detected")


def whole_seconds_left(at: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``at``, rounded down (RFC 6749 §5.1 ``expires_in``): a client
    that counts on them never holds a token past its end."""
    return (at - now) // SECOND


def _ceil_second(at: datetime) -> datetime:
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + SECOND
