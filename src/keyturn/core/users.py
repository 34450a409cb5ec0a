"""Usernames: what is shown, and the normalized key used for storage and lookup."""

from __future__ import annotations

import unicodedata

from .errors import InvalidRequest

__all__ = ["MAX_USERNAME_LENGTH", "normalize_username"]

MAX_USERNAME_LENGTH = 64


def normalize_username(username: object) -> tuple[str, str]:
    """Return ``(display, key)``: the NFKC form shown to people and its case-folded key.

    Two names that differ only in case or Unicode compatibility form share a key,
    so ``Alice`` and its full-width form cannot both be registered.

    Raises:
        InvalidRequest: not a string, empty, too long, or containing spaces or control characters.
    """
    if not isinstance(username, str) or len(username) > 4 * MAX_USERNAME_LENGTH:
        raise InvalidRequest("The username must be a string of at most 64 characters.")
    display = unicodedata.normalize("NFKC", username)
    if not 1 <= len(display) <= MAX_USERNAME_LENGTH:
        raise InvalidRequest("The username must be 1 to 64 characters long.")
    if any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in display):
        raise InvalidRequest("The username must not contain spaces or control characters.")
    key = unicodedata.normalize("NFKC", display.casefold())
    return display, key
