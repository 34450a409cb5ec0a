"""The deployment's master secret and the keys derived from it (HKDF-SHA-256).

One secret, several independent keys, each bound to a label so that a key for
one purpose is never usable for another: the refresh-token MAC key and the key
that encrypts signing keys at rest.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["MasterKey"]

_SALT = b"keyturn/v1"


class MasterKey:
    """Derives purpose-bound keys from the master secret; its ``repr`` hides it."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str | bytes) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)

    def __repr__(self) -> str:
        return "MasterKey(**********)"

    def derive(self, label: str, length: int = 32) -> bytes:
        """A key of ``length`` bytes for the purpose named by ``label``."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=label.encode())
        return hkdf.derive(self._secret)

    def key_id(self, label: str) -> bytes:
        """A 4-byte public identifier of the key derived for ``label``."""
        return hashlib.sha256(b"keyturn-key-id|" + self.derive(label)).digest()[:4]
