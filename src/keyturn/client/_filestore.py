"""``FileTokenStore``: tokens in a private JSON file that several processes may share."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..core.errors import ConfigurationError, Unavailable
from ._tokenstore import Tokens, acquired

__all__ = ["FileTokenStore"]

_log = logging.getLogger("keyturn.client")


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
        with acquired(self._thread_lock, self._timeout):
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
