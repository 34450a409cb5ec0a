"""Unit tests of keyturn.client's ``FileTokenStore`` (``_filestore``) on files in a temporary directory.

What it promises: a file only its owner can read (one others can read is refused, not used),
written atomically, a damaged file read as no session, and a lock shared with other processes
that gives up with ``Unavailable`` instead of hanging.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from keyturn.client import FileTokenStore, Tokens
from keyturn.core.errors import ConfigurationError, Unavailable

PAIR = Tokens("a", "r", issued_at=0, expires_at=900, session_id="s")


def test_file_store_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    """A token file with group or other permission bits is refused, not used."""
    store = FileTokenStore(tmp_path / "tokens.json")
    store.save(Tokens("a", "r", issued_at=0, expires_at=900, session_id="s"))
    assert store.load() == Tokens("a", "r", issued_at=0, expires_at=900, session_id="s")
    store.path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="0644"):
        store.load()


def test_file_store_ignores_a_damaged_file(tmp_path: Path) -> None:
    """A token file that is not a token record reads as no session."""
    store = FileTokenStore(tmp_path / "tokens.json")
    store.save(Tokens("a", "r", issued_at=0, expires_at=900, session_id="s"))
    store.path.write_text('{"format": 99}')
    assert store.load() is None


def test_a_store_locked_too_long_raises_unavailable(tmp_path: Path) -> None:
    """A second FileTokenStore on the same file waits for the lock, then gives up with Unavailable."""
    holder = FileTokenStore(tmp_path / "tokens.json")
    waiter = FileTokenStore(tmp_path / "tokens.json", timeout=0.2)
    with holder.lock(), pytest.raises(Unavailable, match="locked"), waiter.lock():
        pass
    with waiter.lock():
        pass


def test_file_store_writes_a_private_file_and_forgets_it_on_clear(tmp_path: Path) -> None:
    """Missing directories are made owner-only; the file is 0600; clear deletes it."""
    store = FileTokenStore(tmp_path / "new" / "tokens.json")
    assert store.load() is None
    store.save(PAIR)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert [p.name for p in store.path.parent.iterdir()] == ["tokens.json"]  # no temporary file left
    store.clear()
    assert store.load() is None
    store.clear()  # nothing left to forget: not an error
