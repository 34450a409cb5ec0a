"""OAuth clients: the rules of the client registry, and how a client proves it is one.

A deployment has one built-in public client, the first-party apps (``KEYTURN_CLIENT_ID``,
``token_endpoint_auth_method=none``), and any number of confidential clients the operator
registers (``keyturn clients add``): machines that get tokens with the ``client_credentials``
grant, and resource servers that introspect. Each confidential client authenticates with a
secret, by the one method it was registered with (RFC 6749 §2.3.1: ``client_secret_basic`` or
``client_secret_post``).

Secrets are 256 random bits, shown once, and stored only as an HMAC-SHA-256 under a key derived
from the master secret: a database dump neither reveals a secret nor lets anyone test guesses
offline, and a check costs microseconds (a slow password hash buys nothing against a secret with
256 bits of entropy). Comparisons are constant-time, and an unknown client costs the same MAC.

A client id is chosen by the operator, never by a caller, and may not look like a user's
subject (a UUID): a ``client_credentials`` token's ``sub`` is its client id (RFC 9068 §2.2,
§5), and an API must never mistake a machine for a user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import InvalidClient, InvalidRequest, InvalidScope

__all__ = [
    "AUTH_METHODS", "CLIENT_CREDENTIALS", "NONE", "SECRET_BASIC", "SECRET_POST", "Presented", "SecretMac",
    "audience_list", "check_client_id", "narrowed", "new_secret", "presented_client", "scope_list",
]  # fmt: skip

NONE = "none"
SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method's name, not a secret
SECRET_POST = "client_secret_post"  # noqa: S105 - a method's name, not a secret
AUTH_METHODS = (SECRET_BASIC, SECRET_POST)
"""How a registered (confidential) client may authenticate."""
CLIENT_CREDENTIALS = "client_credentials"

_CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §3.3 scope-token, bounded
_AUDIENCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,256}")  # a URI or a name: printable, no quote or backslash
_SECRET_PREFIX = "kt_cs_"  # noqa: S105 - a prefix, so that a leaked secret is recognisable to scanners


def check_client_id(value: str) -> str:
    """A client id the operator may register: 3 to 64 of ``a-z 0-9 . _ -``, not a UUID.

    Raises:
        ValueError: with the reason.
    """
    if not _CLIENT_ID.fullmatch(value):
        raise ValueError(
            "a client id is 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        )
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise ValueError("a client id may not be a UUID (users' subjects are UUIDs)")


def scope_list(value: str) -> str:
    """A space-separated list of scope tokens (RFC 6749 §3.3), deduplicated, as stored.

    Raises:
        ValueError: a name that is not a scope token.
    """
    names = value.split()
    for name in names:
        if not _SCOPE.fullmatch(name):
            raise ValueError(f"{name[:64]!r} is not a scope name (RFC 6749 §3.3)")
    return " ".join(dict.fromkeys(names))


def audience_list(value: str) -> str:
    """A space-separated list of audiences (each an API's identifier, usually its URL), as stored.

    Raises:
        ValueError: an entry with a character no identifier has, or over 256 characters.
    """
    names = value.split()
    for name in names:
        if not _AUDIENCE.fullmatch(name):
            raise ValueError(f"{name[:64]!r} is not an audience (printable, at most 256 characters)")
    return " ".join(dict.fromkeys(names))


def narrowed(granted: str, wanted: tuple[str, ...]) -> str:
    """The scope of a token that asks for ``wanted`` out of ``granted`` (RFC 6749 §3.3, §6: never
    beyond what was granted).

    Raises:
        InvalidScope: a wanted scope is not granted.
    """
    have = granted.split()
    missing = [name for name in wanted if name not in have]
    if missing:
        raise InvalidScope(f"Not granted: {' '.join(missing)[:256]}.")
    return " ".join(dict.fromkeys(wanted))


def new_secret() -> str:
    """A fresh client secret: 256 random bits, URL-safe, with a recognisable prefix."""
    return _SECRET_PREFIX + secrets.token_urlsafe(32)


class SecretMac:
    """Stores and checks client secrets as keyed MACs (see the module's docstring)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "SecretMac(**********)"

    def digest(self, secret: str) -> str:
        """The stored form of ``secret``."""
        return hmac.new(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def matches(self, stored: str | None, presented: str) -> bool:
        """Whether ``presented`` is the secret ``stored`` was made from; the same work, in constant
        time, when there is nothing stored (an unknown or public client)."""
        mac = self.digest(presented)
        return hmac.compare_digest(mac, stored if stored is not None else "0" * len(mac)) and stored is not None


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request to the token, revocation or introspection endpoint says about its client."""

    client_id: str | None
    secret: str | None = None
    method: str = NONE

    def __repr__(self) -> str:
        return f"Presented(client_id={self.client_id!r}, method={self.method!r})"


def presented_client(authorization: str | None, form: dict[str, str]) -> Presented:
    """The client credentials of a request (RFC 6749 §2.3.1): HTTP Basic with the form-encoded id
    and secret, or ``client_id`` and ``client_secret`` in the body, or a bare ``client_id`` (a
    public client, as is Basic with an empty password). One method only; ``private_key_jwt`` is
    not offered.

    Raises:
        InvalidClient: an authorization scheme other than Basic, a malformed one, or a client
            assertion. InvalidRequest: more than one method, or a body ``client_id`` that differs
            from the Basic one.
    """
    if "client_assertion" in form or "client_assertion_type" in form:
        raise InvalidClient("Client assertions (private_key_jwt) are not supported.", reason="unsupported_method")
    if authorization is None:
        if "client_secret" in form:
            return Presented(form.get("client_id"), form["client_secret"], SECRET_POST)
        return Presented(form.get("client_id"))
    if "client_secret" in form:
        raise InvalidRequest("Use one client authentication method, not both.", reason="two_methods")
    client_id, secret = _basic(authorization)
    if form.get("client_id", client_id) != client_id:
        raise InvalidRequest("The client_id differs from the one authenticated.", reason="client_id_mismatch")
    # An empty password is no secret, as an empty client_secret parameter is none (§3.2): how
    # libraries that always authenticate (httpx-oauth) name a public client.
    return Presented(client_id, secret, SECRET_BASIC) if secret else Presented(client_id)


def _basic(authorization: str) -> tuple[str, str]:
    """The id and secret of an ``Authorization: Basic`` header, each form-decoded (§2.3.1)."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("Authenticate the client with HTTP Basic or in the body.", reason="unsupported_method")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("The Basic credentials are malformed.", reason="malformed_credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise InvalidClient("The Basic credentials are malformed.", reason="malformed_credentials")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
