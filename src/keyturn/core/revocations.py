"""The revocation feed (pure: ``now`` is passed in): what the server publishes of every ended
session, and what a resource server keeps of it.

Every session that ends (logout, logout everywhere, a device signed out, a password change,
reuse detection, a disabled user, an operator's revoke) is appended to the server's feed in the
transaction that ends it. An entry names the session and ``until``: the latest time any access
token of that session can still verify (its revocation time plus the access-token lifetime and
the server's leeway). A resource server refuses every token of a listed session and forgets the
entry after ``until`` (plus its own leeway), when each token it could refuse has expired, so its
memory is bounded by the sessions ended within one access-token lifetime.

The wire format, one JSON object per page::

    {"cursor": "<epoch>.<position>", "reset": false, "more": false,
     "entries": [{"sid": "<session id>", "at": 1764892800, "until": 1764893705, "reason": "logout"}]}

``cursor`` is opaque to readers: they send it back as ``after``. Its ``epoch`` names the
database the feed comes from, so a reader following another database (a development file
deleted, another deployment), or one ahead of the feed (a database restored from a backup), is
told to start over (``reset``) instead of waiting for positions that will never come. Entries
are never per user: the feed shows random session ids and times, nothing that names an account.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Cursor", "EndedSessions", "FeedPage", "Revocation"]

_MAX_SID = 64
_MAX_REASON = 32
_MAX_CURSOR = 64
_MAX_POSITION_DIGITS = 18  # below 2**63: a BIGINT on PostgreSQL


@dataclass(frozen=True, slots=True)
class Revocation:
    """One ended session: refuse its tokens until ``until`` (seconds since the epoch)."""

    sid: str
    at: int
    until: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"sid": self.sid, "at": self.at, "until": self.until, "reason": self.reason}

    @classmethod
    def from_json(cls, raw: object) -> Revocation:
        """An entry as a feed sent it.

        Raises:
            ValueError: not an entry (the reader refuses the whole page).
        """
        if not isinstance(raw, Mapping):
            raise ValueError("an entry is a JSON object")
        sid, at, until, reason = raw.get("sid"), raw.get("at"), raw.get("until"), raw.get("reason", "")
        if not isinstance(sid, str) or not 0 < len(sid) <= _MAX_SID:
            raise ValueError("an entry's sid is a string of at most 64 characters")
        if not isinstance(at, int) or not isinstance(until, int) or not (_whole(at) and _whole(until)):
            raise ValueError("an entry's at and until are whole seconds")
        if not isinstance(reason, str) or len(reason) > _MAX_REASON:
            raise ValueError("an entry's reason is a short string")
        return cls(sid, at, until, reason)

    @classmethod
    def of(cls, session_id: uuid.UUID, at: datetime, until: datetime, reason: str) -> Revocation:
        """The entry of a session ended at ``at`` whose tokens verify until ``until`` at the latest."""
        return cls(str(session_id), math.floor(at.timestamp()), math.ceil(until.timestamp()), reason)


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one database's feed: every entry after it is news to its reader."""

    epoch: str
    position: int = 0

    def __str__(self) -> str:
        return f"{self.epoch}.{self.position}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor a reader sent back, or None for anything no feed ever sent (linear time)."""
        if len(text) > _MAX_CURSOR:
            return None
        epoch, dot, position = text.partition(".")
        if not dot or not epoch.isalnum() or not epoch.isascii():
            return None
        if not position.isascii() or not position.isdigit() or len(position) > _MAX_POSITION_DIGITS:
            return None
        return cls(epoch, int(position))


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One answer of the feed: entries after the reader's cursor, the cursor to ask from next,
    whether more are waiting (ask again at once), and whether the reader must start over."""

    cursor: Cursor
    entries: tuple[Revocation, ...]
    more: bool = False
    reset: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": str(self.cursor),
            "reset": self.reset,
            "more": self.more,
            "entries": [entry.to_json() for entry in self.entries],
        }

    @classmethod
    def from_json(cls, raw: object) -> FeedPage:
        """A page as a feed sent it.

        Raises:
            ValueError: not a page.
        """
        if not isinstance(raw, Mapping):
            raise ValueError("a page is a JSON object")
        cursor = Cursor.parse(raw["cursor"]) if isinstance(raw.get("cursor"), str) else None
        entries, more, reset = raw.get("entries"), raw.get("more", False), raw.get("reset", False)
        if cursor is None or not isinstance(entries, list) or not isinstance(more, bool) or not isinstance(reset, bool):
            raise ValueError("a page has a cursor, a list of entries and the flags more and reset")
        return cls(cursor, tuple(Revocation.from_json(e) for e in entries), more, reset)


class EndedSessions:
    """What a resource server knows of the issuer's ended sessions: a set of session ids, each
    kept until every token it could refuse has expired (``until`` plus ``leeway`` seconds).

    Membership is a dictionary lookup (every request asks it); adding and forgetting happen
    when a page arrives. Forgetting pops from the front of the arrival order: the feed appends
    entries in revocation order, so the oldest ``until`` is (nearly) always at the front.

    With ``unnamed``, the empty session id is listed too, for good (until ``admit_unnamed``): a
    token that names no session cannot be matched against a feed, so the lookup every request
    makes already sends it to the verifier's slower checks.
    """

    __slots__ = ("_forget_at", "_leeway", "_order")

    def __init__(self, leeway: float = 0.0, *, unnamed: bool = False) -> None:
        self._leeway = leeway
        self._forget_at: dict[str, float] = {"": math.inf} if unnamed else {}
        self._order: deque[tuple[float, str]] = deque()

    def admit_unnamed(self) -> None:
        """Stop listing the empty session id (the issuer has no feed to match tokens against)."""
        self._forget_at.pop("", None)

    def __contains__(self, sid: object) -> bool:
        return sid in self._forget_at

    @property
    def ids(self) -> Mapping[str, float]:
        """The ended sessions' ids (a live view): ``sid in ids`` is the request path's lookup."""
        return self._forget_at

    def __len__(self) -> int:
        return len(self._forget_at) - ("" in self._forget_at)

    def add(self, entries: Iterable[Revocation], now: float) -> None:
        """Remember ``entries`` (those whose tokens can still verify at ``now``), then forget the
        entries that are past their time."""
        for entry in entries:
            forget_at = entry.until + self._leeway
            if forget_at > now and forget_at > self._forget_at.get(entry.sid, -math.inf):
                self._forget_at[entry.sid] = forget_at
                self._order.append((forget_at, entry.sid))
        self.forget(now)

    def forget(self, now: float) -> None:
        """Drop the entries whose every token has expired at ``now``."""
        order, known = self._order, self._forget_at
        while order and order[0][0] <= now:
            forget_at, sid = order.popleft()
            if known.get(sid) == forget_at:
                del known[sid]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**40
