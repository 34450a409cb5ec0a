"""Roles: authority that belongs to a user row, granted and revoked by the operator.

A role is never derived from a name anyone can register. The scopes a role brings are added to
a token's scope each time a token is issued (sign-in, refresh, password change) from the user's
roles *as they are then*, so a revoked role is gone from the next token; a role scope stored in a
session by an older release is dropped the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ADMIN", "ROLES", "ROLE_SCOPES", "format_roles", "parse_roles", "token_scope"]

ADMIN = "admin"
ROLE_SCOPES: dict[str, tuple[str, ...]] = {ADMIN: (ADMIN,)}
"""The scopes each role adds to a token (the admin API needs the ``admin`` scope and the role)."""
ROLES = frozenset(ROLE_SCOPES)
_GRANTED_BY_ROLES = frozenset(s for scopes in ROLE_SCOPES.values() for s in scopes)


def parse_roles(stored: str) -> frozenset[str]:
    """The roles in a stored ``roles`` value (space-separated); unknown names are ignored."""
    return frozenset(r for r in stored.split() if r in ROLES)


def format_roles(roles: Iterable[str]) -> str:
    """The stored form of ``roles``: known names, sorted, space-separated.

    Raises:
        ValueError: a name that is not a role keyturn knows.
    """
    names = set(roles)
    unknown = names - ROLES
    if unknown:
        raise ValueError(f"unknown role {sorted(unknown)[0]!r}; roles: {', '.join(sorted(ROLES))}")
    return " ".join(sorted(names))


def token_scope(session_scope: str, roles: Iterable[str]) -> str:
    """The scope of a token issued now: the session's own scopes without any role scope, plus the
    scopes of the user's current ``roles`` (RFC 6749 §3.3 order-free, space-separated)."""
    own = [s for s in session_scope.split() if s not in _GRANTED_BY_ROLES]
    granted = [s for r in sorted(set(roles) & ROLES) for s in ROLE_SCOPES[r] if s not in own]
    return " ".join([*own, *granted])
