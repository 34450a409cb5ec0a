"""CSRF tokens for cookie mode: a value bound to the session, derived, never stored.

The server sets it in a cookie the page can read and expects it back in the
``X-CSRF-Token`` header (double submit). Because it is a MAC of the session id, a
token planted by an attacker for their own session is useless against the victim's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

from .errors import CsrfTokenInvalid
from .masterkey import MasterKey

__all__ = ["CsrfTokens"]

CSRF_LABEL = "keyturn/v1/csrf-token"
_DOMAIN = b"kt_csrf|"


class CsrfTokens:
    """Makes and checks the CSRF token of a session."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_master(cls, master: MasterKey) -> CsrfTokens:
        return cls(master.derive(CSRF_LABEL))

    def token(self, session_id: uuid.UUID) -> str:
        """The CSRF token of ``session_id`` (the same for the whole session)."""
        tag = hmac.new(self._key, _DOMAIN + session_id.bytes, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(tag).rstrip(b"=").decode()

    def check(self, session_id: uuid.UUID, presented: object) -> None:
        """Raise unless ``presented`` is this session's token (constant-time comparison).

        Raises:
            CsrfTokenInvalid: missing, or not this session's token.
        """
        if not isinstance(presented, str) or not hmac.compare_digest(
            self.token(session_id).encode(), presented.encode("utf-8", "replace")
        ):
            raise CsrfTokenInvalid()
