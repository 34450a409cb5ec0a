"""Mail as the outbox keeps it: a message, sealed at rest, and when to try again.

A message waiting in the outbox may hold a single-use link (a verification or a password reset):
it is stored sealed (AES-256-GCM under a key derived from the master secret, its outbox id as
associated data), so a database dump reveals neither the links nor whom they were for. A failed
send is tried again after a growing, jittered delay, and given up after ``GIVE_UP_AFTER``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .masterkey import MasterKey

__all__ = ["GIVE_UP_AFTER", "Message", "MessageSeal", "retry_delay"]

GIVE_UP_AFTER = timedelta(days=2)
_FIRST_RETRY = timedelta(seconds=5)
_LONGEST_RETRY = timedelta(minutes=30)
_SEAL_LABEL = "keyturn/outbox"
_VERSION = b"\x01"
_JITTER = random.Random()  # noqa: S311 - spreading retries, not a secret


@dataclass(frozen=True, slots=True)
class Message:
    """One email: a recipient, a subject, and the same text as plain text and as HTML."""

    to: str
    subject: str
    text: str = field(repr=False)
    html: str = field(repr=False)


class MessageSeal:
    """Seals messages for the outbox and opens them again (see the module's docstring)."""

    __slots__ = ("_aead",)

    def __init__(self, master: MasterKey) -> None:
        self._aead = AESGCM(master.derive(_SEAL_LABEL))

    def __repr__(self) -> str:
        return "MessageSeal(**********)"

    def seal(self, message: Message, ref: str) -> bytes:
        """``message`` sealed for the outbox row named ``ref``."""
        nonce = os.urandom(12)
        plain = json.dumps(asdict(message), separators=(",", ":")).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, ref.encode())

    def open(self, sealed: bytes, ref: str) -> Message:
        """The message sealed for ``ref``.

        Raises:
            ValueError: sealed under another master secret, for another row, or damaged.
        """
        if sealed[:1] != _VERSION or len(sealed) < 29:
            raise ValueError("not a sealed message of a known version")
        try:
            plain = self._aead.decrypt(sealed[1:13], sealed[13:], ref.encode())
        except InvalidTag:
            raise ValueError("the message cannot be opened with this master secret") from None
        return Message(**json.loads(plain))


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after ``attempts`` failed sends: 5 s doubling to 30 minutes, with up to
    a fifth of jitter so that instances recovering together do not retry in step."""
    doublings = min(max(attempts - 1, 0), 16)
    seconds = min(_FIRST_RETRY.total_seconds() * (1 << doublings), _LONGEST_RETRY.total_seconds())
    return timedelta(seconds=seconds * (1 + _JITTER.random() / 5))
