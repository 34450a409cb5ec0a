"""The refresh-token format: opaque to clients, minted and checked only by the server.

``kt_rt_`` + base64url( version | key_id | session_id | generation | MAC ) where

- ``version`` (1 byte) lets the format change later;
- ``key_id`` (4 bytes) names the MAC key, so the master secret can be rotated;
- ``session_id`` (16 bytes) and ``generation`` (8 bytes, big-endian) say which
  session and which rotation the token belongs to;
- ``MAC`` is HMAC-SHA-256 over everything before it, truncated to 128 bits and
  compared in constant time: a database dump alone cannot forge a token.

Tokens are deterministic per (session, generation), so answering a replay inside
the grace window with the *same* current token needs nothing stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ForgedRefreshToken, MalformedRefreshToken
from .masterkey import MasterKey

__all__ = ["PREFIX", "RefreshToken", "RefreshTokenCodec"]

PREFIX = "kt_rt_"
VERSION = 1
MAC_LABEL = "keyturn/v1/refresh-token-mac"
_BODY = struct.Struct(">B4s16sQ")
_MAC_BYTES = 16
_LENGTH = len(PREFIX) + len(base64.urlsafe_b64encode(bytes(_BODY.size + _MAC_BYTES)).rstrip(b"="))
_DOMAIN = b"kt_rt|"


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """What a verified refresh token says: a session and one of its generations."""

    session_id: uuid.UUID
    generation: int


class RefreshTokenCodec:
    """Mints and checks refresh tokens; the first key mints, every key checks."""

    def __init__(self, keys: Sequence[tuple[bytes, bytes]]) -> None:
        if not keys:
            raise ValueError("at least one MAC key is needed")
        self._keys = dict(keys)
        self._current = keys[0]

    @classmethod
    def from_master(cls, *masters: MasterKey) -> RefreshTokenCodec:
        """A codec whose MAC keys derive from the master secrets, newest first."""
        return cls([(m.key_id(MAC_LABEL), m.derive(MAC_LABEL)) for m in masters])

    def encode(self, session_id: uuid.UUID, generation: int) -> str:
        """The token for ``generation`` of ``session_id``."""
        if not 0 <= generation < 2**64:
            raise ValueError("generation out of range")
        key_id, key = self._current
        body = _BODY.pack(VERSION, key_id, session_id.bytes, generation)
        return PREFIX + base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode()

    def decode(self, token: object) -> RefreshToken:
        """Check a presented token and say what it names.

        Raises:
            MalformedRefreshToken: not a keyturn refresh token of a known version.
            ForgedRefreshToken: the MAC does not match (forged, altered or another deployment's).
        """
        if not isinstance(token, str) or len(token) != _LENGTH or not token.startswith(PREFIX):
            raise MalformedRefreshToken()
        encoded = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise MalformedRefreshToken() from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != encoded:
            raise MalformedRefreshToken()
        body, tag = raw[: _BODY.size], raw[_BODY.size :]
        version, key_id, sid, generation = _BODY.unpack(body)
        if version != VERSION:
            raise MalformedRefreshToken("The refresh token format is not supported.")
        key = self._keys.get(key_id)
        if key is None or not hmac.compare_digest(_mac(key, body), tag):
            raise ForgedRefreshToken()
        return RefreshToken(uuid.UUID(bytes=sid), generation)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + body, hashlib.sha256).digest()[:_MAC_BYTES]
