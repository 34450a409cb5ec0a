"""What every adapter shares: reading the bearer token from an Authorization header."""

from __future__ import annotations

from ..errors import MalformedToken, MissingToken

__all__ = ["bearer_token"]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1).

    Raises:
        MissingToken: no header, or another scheme.
        MalformedToken: ``Bearer`` with nothing usable after it.
    """
    if not authorization:
        raise MissingToken()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken()
    token = token.strip()
    if not token or " " in token:
        raise MalformedToken()
    return token
