"""Where a client keeps its tokens: the ``Tokens`` record and the ``TokenStore`` protocol, with a
memory and a file implementation. Public through ``keyturn.client``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import stat
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

from ..core.errors import ConfigurationError, Unavailable

__all__ = ["FileTokenStore", "MemoryTokenStore", "TokenStore", "Tokens", "held_async"]

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
        return _acquired(self._lock, self._timeout)

    def __repr__(self) -> str:
        return f"MemoryTokenStore({'empty' if self._tokens is None else 'with a session'})"


class FileTokenStore:
    """Tokens in a JSON file only its owner may read (mode 0600), safe to share between processes.

    Writes are atomic (a private temporary file in the same directory, then ``os.replace``), so a
    reader never sees half a file. ``lock()`` holds ``filelock.FileLock(path + ".lock")``, so the
    processes sharing the file refresh one at a time and pick up each other's tokens. A file that
    other users can read or write is refused, the way ssh refuses such a key.

    Args:
        path: The token file; ``~`` is expanded. Missing directories are created with mode 0700.
        timeout: Seconds ``lock()`` waits before raising ``Unavailable``.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self._timeout = timeout
        self._thread_lock = threading.Lock()
        # thread_local=False: an async caller takes the lock in a worker thread and releases it in the event loop.
        self._file_lock = FileLock(f"{self.path}.lock", timeout=timeout, mode=0o600, thread_local=False)

    def load(self) -> Tokens | None:
        """The stored tokens; ``None`` when the file is missing or unreadable (a warning is logged).

        Raises:
            ConfigurationError: other users may read or write the file.
        """
        try:
            with self.path.open("rb") as file:
                self._check_private(os.fstat(file.fileno()).st_mode)
                raw = file.read()
        except FileNotFoundError:
            return None
        try:
            return Tokens.from_json(json.loads(raw))
        except ValueError:
            _log.warning("ignoring the unreadable token file %s", self.path)
            return None

    def save(self, tokens: Tokens) -> None:
        """Write the tokens atomically to a new mode-0600 file that replaces the old one."""
        self._make_directory()
        data = json.dumps(tokens.to_json()).encode()
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                if hasattr(os, "fchmod"):
                    os.fchmod(file.fileno(), 0o600)  # exactly 0600 whatever the umask
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        """Delete the token file (the lock file stays: other processes may be waiting on it)."""
        self.path.unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive access among the threads of this process and every process using the file."""
        with _acquired(self._thread_lock, self._timeout):
            self._make_directory()
            try:
                self._file_lock.acquire()
            except Timeout:
                raise Unavailable(f"The token file {self.path} stayed locked for {self._timeout:g} s.") from None
            try:
                yield
            finally:
                self._file_lock.release()

    def _make_directory(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _check_private(self, mode: int) -> None:
        if os.name != "nt" and stat.S_IMODE(mode) & 0o077:
            raise ConfigurationError(
                "FileTokenStore",
                f"{self.path} is open to other users (mode {stat.S_IMODE(mode):04o}); "
                "its tokens may have leaked: delete it and log in again",
            )

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"


@contextmanager
def _acquired(lock: threading.Lock, timeout: float) -> Iterator[None]:
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
