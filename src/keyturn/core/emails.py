"""Email addresses: what is shown, and the normalized key that makes one address one account.

An address is checked once, when it is given, in one linear pass (no regular expression that
could backtrack on what a caller sends): one ``@``; a local part of 1 to 64 printable characters
without spaces, quotes or angle brackets; a domain of dot-separated labels (letters, digits,
hyphens; internationalized domains in their IDNA ``xn--`` form or as Unicode, which is encoded);
254 characters at most (RFC 5321 §4.5.3.1). Quoted local parts and IP-literal domains, which no
one signs up with, are refused.

The key compares addresses case-insensitively, local part included: ``Alice@Example.com`` and
``alice@example.com`` are one account. Mail servers may in theory tell them apart; no user does.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidRequest

__all__ = ["MAX_EMAIL_LENGTH", "normalize_email"]

MAX_EMAIL_LENGTH = 254
_LOCAL_FORBIDDEN = frozenset('"(),:;<>@[\\]')
_LABEL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def normalize_email(value: object) -> tuple[str, str]:
    """Return ``(display, key)`` for an email address: the address as given (NFC, domain in
    lower case) and its case-folded key.

    Raises:
        InvalidRequest: not an address this service accepts (the message says why, never echoes it).
    """
    if not isinstance(value, str) or len(value) > 4 * MAX_EMAIL_LENGTH:
        raise InvalidRequest("The email address must be a string of at most 254 characters.", reason="bad_email")
    address = unicodedata.normalize("NFC", value.strip())
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidRequest("The email address must look like name@example.com.", reason="bad_email")
    if len(local) > 64 or any(ch in _LOCAL_FORBIDDEN or not ch.isprintable() or ch.isspace() for ch in local):
        raise InvalidRequest("The part of the email address before @ is not one we accept.", reason="bad_email")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidRequest("The part of the email address before @ is not one we accept.", reason="bad_email")
    domain = _domain(domain)
    display = f"{local}@{domain}"
    if len(display.encode("utf-8")) > MAX_EMAIL_LENGTH:
        raise InvalidRequest("The email address must be at most 254 characters.", reason="bad_email")
    return display, display.casefold()


def _domain(domain: str) -> str:
    """The domain in lower case, internationalized labels IDNA-encoded; refused unless every
    label is 1 to 63 letters, digits or inner hyphens and there are at least two."""
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidRequest("The domain of the email address is not valid.", reason="bad_email") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or any(
        not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-" or not set(label) <= _LABEL for label in labels
    ):
        raise InvalidRequest("The domain of the email address is not valid.", reason="bad_email")
    return ascii_domain
