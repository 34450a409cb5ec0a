"""Unit tests (no I/O) of keyturn.core.errors: one tree, stable snake_case codes and reasons, drawn in the docstring."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime

import pytest

from keyturn.core import errors
from keyturn.core.errors import (
    BadSignature,
    ConfigurationError,
    InvalidClaim,
    KeyturnError,
    SessionExpired,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    UnsupportedHeader,
)

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, KeyturnError) and cls.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)
CODES = sorted({cls.code for cls in CLASSES})


def _tree() -> dict[str, str | None]:
    """Each class named in the docstring's tree, mapped to the class drawn as its parent."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    assert errors.__doc__
    for line in errors.__doc__.splitlines():
        match = re.match(r"^    ((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)\b", line)
        if not match:
            continue
        depth = 0 if match.group(2) == "KeyturnError" else len(match.group(1)) // 4 + 1
        stack = [*stack[:depth], match.group(2)]
        parents[match.group(2)] = stack[-2] if depth else None
    return parents


def test_the_module_defines_the_whole_tree() -> None:
    assert len(CLASSES) >= 20
    assert KeyturnError in CLASSES


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_code_and_reason_are_snake_case(cls: type[KeyturnError]) -> None:
    assert SNAKE_CASE.match(cls.code), cls.code
    assert SNAKE_CASE.match(cls.reason), cls.reason


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_a_description(cls: type[KeyturnError]) -> None:
    assert cls.description.strip()
    assert cls.description.endswith(".")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_is_drawn_in_the_docstring_tree(cls: type[KeyturnError]) -> None:
    assert cls.__name__ in _tree()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_tree_draws_each_class_under_its_real_parent(cls: type[KeyturnError]) -> None:
    parent = cls.__bases__[0]
    assert _tree()[cls.__name__] == (None if cls is KeyturnError else parent.__name__)


def test_the_tree_names_only_real_classes() -> None:
    assert set(_tree()) == {cls.__name__ for cls in CLASSES}


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not KeyturnError], ids=lambda c: c.__name__)
def test_every_class_code_is_written_next_to_it_or_inherited(cls: type[KeyturnError]) -> None:
    assert errors.__doc__
    line = next(line for line in errors.__doc__.splitlines() if re.search(rf"── {cls.__name__}\b", line))
    parent = cls.__bases__[0]
    assert cls.code in line or cls.code == getattr(parent, "code", None)


@pytest.mark.parametrize("code", CODES)
def test_the_http_table_has_a_status_for_every_code(code: str) -> None:
    from keyturn.server.http.errors import STATUS

    assert code in STATUS
    assert 400 <= STATUS[code] <= 599


def test_root_error_is_a_server_error() -> None:
    assert (KeyturnError.code, KeyturnError.reason) == ("server_error", "server_error")


def test_description_and_reason_can_be_given() -> None:
    exc = KeyturnError("something specific", reason="key_seal_mismatch")
    assert (str(exc), exc.description, exc.reason) == ("something specific", "something specific", "key_seal_mismatch")
    assert KeyturnError().reason == "server_error"


def test_reason_given_to_one_instance_does_not_leak_to_the_class() -> None:
    assert SessionExpired(reason="idle_expired").reason == "idle_expired"
    assert SessionExpired.reason == "session_expired"
    assert SessionExpired().reason == "session_expired"


def test_errors_carry_their_evidence() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert UnknownKey("k1").kid == "k1"
    assert BadSignature("k2").kid == "k2"
    assert InvalidClaim("aud").claim == "aud"
    assert "aud" in str(InvalidClaim("aud"))
    assert TokenExpired(at).expired_at == at
    assert TokenNotYetValid("nbf").claim == "nbf"
    assert UnsupportedHeader("jku").header == "jku"
    assert "jku" in str(UnsupportedHeader("jku"))


def test_configuration_error_names_the_setting() -> None:
    exc = ConfigurationError("KEYTURN_SECRET", "is required")
    assert exc.setting == "KEYTURN_SECRET"
    assert str(exc) == "KEYTURN_SECRET: is required"
    assert exc.code == "invalid_configuration"
