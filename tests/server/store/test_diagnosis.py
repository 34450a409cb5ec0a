"""Unit tests of keyturn.server.store._diagnosis: the one line an operator reads when the database
cannot be used at start-up (``Database.check``), and the guard that makes any database failure
``Unavailable`` once serving. Exceptions built here, and paths in pytest's temporary directory; no
database.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from keyturn.core.errors import SessionEnded, Unavailable
from keyturn.server.store._diagnosis import Guard, cause, sqlite_problem


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (TimeoutError(), "no answer within 2.5s (KEYTURN_DB_TIMEOUT)"),
        (PoolTimeout(), "no answer within 2.5s (KEYTURN_DB_TIMEOUT)"),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            "connection refused (is the server running, and listening on that host and port?)",
        ),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "host not found (Name or service not known)"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
        (
            RuntimeError('password authentication failed for user "keyturn"\nDETAIL: more'),
            'password authentication failed for user "keyturn"',
        ),
        (RuntimeError(""), "RuntimeError"),
    ],
    ids=["timeout", "pool-timeout", "refused", "unknown-host", "os-error", "first-line-only", "no-message"],
)
def test_cause_is_one_line_an_operator_can_act_on(exc: BaseException, line: str) -> None:
    assert cause(exc, 2.5) == line


def test_cause_looks_through_sqlalchemys_wrapping() -> None:
    """What SQLAlchemy raises wraps the driver's error; the driver's reason is the one shown."""
    wrapped = DBAPIError("SELECT 1", None, ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert cause(wrapped, 5).startswith("connection refused")


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    assert sqlite_problem(str(tmp_path / "missing" / "keyturn.db"), None) == (
        f"the directory {tmp_path / 'missing'} does not exist"
    )


def test_a_file_where_the_directory_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert sqlite_problem(str(tmp_path / "file" / "keyturn.db"), None) == f"{tmp_path / 'file'} is not a directory"


def test_a_failure_to_create_the_file_says_why(tmp_path: Path) -> None:
    refused = PermissionError(errno.EACCES, "Permission denied")
    assert (
        sqlite_problem(str(tmp_path / "keyturn.db"), refused)
        == f"cannot create {tmp_path / 'keyturn.db'}: Permission denied"
    )


@pytest.mark.parametrize("database", [None, ""])
def test_no_path_is_no_problem_of_sqlites_file(database: str | None) -> None:
    """An in-memory or URI database has no file to check; connecting says the rest."""
    assert sqlite_problem(database, None) is None


def test_a_usable_directory_is_no_problem(tmp_path: Path) -> None:
    assert sqlite_problem(str(tmp_path / "keyturn.db"), None) is None


@pytest.mark.anyio
async def test_the_guard_turns_a_database_failure_into_unavailable_and_lets_the_rest_pass() -> None:
    """A driver's failure inside ``Guard`` is ``Unavailable`` caused by it; a keyturn error (already
    an answer) and a bug's exception pass unchanged."""
    guard = Guard()
    failure = DBAPIError("SELECT 1", None, sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(Unavailable) as caught:
        async with guard:
            raise failure
    assert caught.value.__cause__ is failure
    for passing in (SessionEnded(), ZeroDivisionError()):
        with pytest.raises(type(passing)) as kept:
            async with guard:
                raise passing
        assert kept.value is passing
    async with guard:
        pass
