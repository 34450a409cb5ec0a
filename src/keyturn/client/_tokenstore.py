"""Where a client keeps its tokens: the ``Tokens`` record and the ``TokenStore`` protocol, with the
memory implementation (the file one is ``_filestore.py``). Public through ``keyturn.client``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..core.errors import Unavailable

__all__ = ["MemoryTokenStore", "TokenStore", "Tokens", "acquired", "held_async"]

_log = logging.getLogger("keyturn.client")

_FORMAT = 1  # version marker of the token file, so the format can change later
_MAX_MARGIN = 30.0  # seconds before expiry at which a refresh is due, at most


@dataclass(frozen=True, slots=True)
class Tokens:
    """One session's tokens as a client holds them; ``repr`` shows no token.

    Times are seconds since the epoch on the client's clock, taken when the pair was requested,
    so they err on the early side and can be shared between processes on one machine.

    Attributes:
        access_token: The bearer access token (a JWT).
        refresh_token: The opaque refresh token; every refresh replaces it.
        issued_at: When the pair was requested.
        expires_at: When the access token expires.
        session_id: The server's id of the session.
        scope: Space-separated scopes of the access token.
        refresh_expires_at: When the refresh token expires, if the server said.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    issued_at: float
    expires_at: float
    session_id: str
    scope: str = ""
    refresh_expires_at: float | None = None

    @classmethod
    def from_response(cls, body: object, sent_at: float) -> Tokens:
        """Read an RFC 6749 §5.1 token response (with keyturn's ``refresh_token`` and ``session_id``).

        Args:
            body: The decoded JSON body.
            sent_at: When the request was sent; lifetimes count from here.

        Raises:
            ValueError: the body is not a bearer token response with a refresh token. The message
                names the faulty field, never a value.
        """
        if not isinstance(body, Mapping):
            raise ValueError("the body is not a JSON object")
        if _text(body, "token_type").lower() != "bearer":
            raise ValueError("'token_type' is not Bearer")
        refresh_in = body.get("refresh_token_expires_in")
        return cls(
            access_token=_text(body, "access_token"),
            refresh_token=_text(body, "refresh_token"),
            issued_at=sent_at,
            expires_at=sent_at + _seconds(body, "expires_in"),
            session_id=_text(body, "session_id"),
            scope=body["scope"] if isinstance(body.get("scope"), str) else "",
            refresh_expires_at=None if refresh_in is None else sent_at + _seconds(body, "refresh_token_expires_in"),
        )

    @classmethod
    def from_json(cls, data: object) -> Tokens:
        """Read what ``to_json`` wrote.

        Raises:
            ValueError: not a token record of a known format (the message holds no value).
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError("not a keyturn token record of a known format")
        expiry = data.get("refresh_expires_at")
        return cls(
            access_token=_text(data, "access_token"),
            refresh_token=_text(data, "refresh_token"),
            issued_at=_seconds(data, "issued_at"),
            expires_at=_seconds(data, "expires_at"),
            session_id=_text(data, "session_id"),
            scope=data["scope"] if isinstance(data.get("scope"), str) else "",
            refresh_expires_at=None if expiry is None else _seconds(data, "refresh_expires_at"),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with a format marker."""
        return {"format": _FORMAT, **asdict(self)}

    def needs_refresh(self, now: float) -> bool:
        """Whether less than min(30 s, a third of its lifetime) is left on the access token."""
        margin = min(_MAX_MARGIN, (self.expires_at - self.issued_at) / 3)
        return now >= self.expires_at - margin


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{name}' is missing or not a string")
    return value


def _seconds(body: Mapping[str, Any], name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"'{name}' is missing or not a non-negative number")
    return float(value)


class TokenStore(Protocol):
    """Where ``KeyturnAuth`` keeps a session's tokens.

    Every refresh happens inside ``lock()``: the store is reloaded, refreshed only if nobody else
    did, and saved before the lock is released. A store shared between processes must make
    ``lock()`` exclude them all; a refresh token presented twice ends the session.
    """

    def load(self) -> Tokens | None:
        """The stored tokens, or ``None`` when there is no session."""
        ...

    def save(self, tokens: Tokens) -> None:
        """Replace the stored tokens."""
        ...

    def clear(self) -> None:
        """Forget the tokens (after logout, or when the session is over)."""
        ...

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive access for a load-refresh-save cycle, across every process sharing the store.

        Raises:
            Unavailable: the lock could not be taken in time.
        """
        ...


class MemoryTokenStore:
    """Tokens in this process's memory only: gone when the process ends.

    Args:
        tokens: Tokens to start from.
        timeout: Seconds ``lock()`` waits before raising ``Unavailable``.
    """

    def __init__(self, tokens: Tokens | None = None, *, timeout: float = 30.0) -> None:
        self._tokens = tokens
        self._timeout = timeout
        self._lock = threading.Lock()

    def load(self) -> Tokens | None:
        """The stored tokens, or ``None``."""
        return self._tokens

    def save(self, tokens: Tokens) -> None:
        """Replace the stored tokens."""
        self._tokens = tokens

    def clear(self) -> None:
        """Forget the tokens."""
        self._tokens = None

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive access among the threads of this process."""
        return acquired(self._lock, self._timeout)

    def __repr__(self) -> str:
        return f"MemoryTokenStore({'empty' if self._tokens is None else 'with a session'})"


@contextmanager
def acquired(lock: threading.Lock, timeout: float) -> Iterator[None]:
    if not lock.acquire(timeout=timeout):
        raise Unavailable(f"The token store stayed locked for {timeout:g} s.")
    try:
        yield
    finally:
        lock.release()


@asynccontextmanager
async def held_async(store: TokenStore) -> AsyncIterator[None]:
    """Hold ``store.lock()`` from async code; the wait happens in a worker thread, not the event loop."""
    held = store.lock()
    entering = asyncio.ensure_future(asyncio.to_thread(held.__enter__))
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        entering.add_done_callback(lambda done: _release_late(done, held))
        raise
    try:
        yield
    finally:
        held.__exit__(None, None, None)


def _release_late(entered: asyncio.Future[None], held: AbstractContextManager[None]) -> None:
    """Release a lock whose waiter was cancelled, once the worker thread has taken it."""
    if not entered.cancelled() and entered.exception() is None:
        held.__exit__(None, None, None)
