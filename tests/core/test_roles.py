"""Unit tests (no I/O) of keyturn.core.roles: stored roles and the scopes a token gets from them."""

from __future__ import annotations

import pytest

from keyturn.core.roles import format_roles, parse_roles, token_scope


def test_role_scopes_come_only_from_roles() -> None:
    """A session's stored scope never carries a role scope into a token; the user's roles do."""
    assert token_scope("profile", set()) == "profile"
    assert token_scope("profile", {"admin"}) == "profile admin"
    assert token_scope("profile admin", set()) == "profile"  # frozen into a session by an older release
    assert token_scope("profile admin", {"admin"}) == "profile admin"
    assert token_scope("", {"admin"}) == "admin"


def test_stored_roles_are_known_names_sorted() -> None:
    """Roles are stored sorted and space-separated; unknown names are refused on the way in and
    ignored on the way out."""
    assert format_roles(["admin", "admin"]) == "admin"
    assert format_roles([]) == ""
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        format_roles(["owner"])
    assert parse_roles("admin owner") == {"admin"}
    assert parse_roles("") == frozenset()
