"""Unit tests (no I/O) of keyturn.core.mail: messages sealed for one outbox row under the master
secret (refused under another secret, for another row, damaged or of another version), a seal
whose repr hides its key, and the retry delay (5 s doubling to 30 minutes, at most a fifth of jitter)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from keyturn.core.mail import GIVE_UP_AFTER, Message, MessageSeal, retry_delay
from keyturn.core.masterkey import MasterKey

SECRET = "Q2v8rX1pLw9zT4mN7bK3cY6hJ0dF5gS2aE8uI1oPzR4tW"
OTHER_SECRET = "Zq8Kd2Lp0Xv7Tn4Rb1Ws9Yc6Hj3Mf5Ga0Et8Uo2Ik7QlW"
LINK = "https://auth.example/#verify=kt_et_" + "A" * 43
MESSAGE = Message(
    to="Alice <alice@example.com>",
    subject="Verify your email address for keyturn",
    text=f"Open this link:\n\n{LINK}\n",
    html=f'<p><a href="{LINK}">{LINK}</a></p>',
)


@pytest.fixture
def seal() -> MessageSeal:
    return MessageSeal(MasterKey(SECRET))


@pytest.fixture
def ref() -> str:
    return str(uuid.uuid4())


def test_a_sealed_message_opens_to_the_same_message(seal: MessageSeal, ref: str) -> None:
    """seal then open (with a new seal of the same secret, as after a restart) gives the message back."""
    sealed = seal.seal(MESSAGE, ref)
    assert MessageSeal(MasterKey(SECRET)).open(sealed, ref) == MESSAGE


def test_a_sealed_message_shows_neither_its_text_nor_its_recipient(seal: MessageSeal, ref: str) -> None:
    """The sealed bytes hold no part of the link, the address or the subject; two seals differ (a fresh nonce)."""
    sealed = seal.seal(MESSAGE, ref)
    for part in ("kt_et_", "alice@example.com", "Verify your email", "AAAAAAAAAA"):
        assert part.encode() not in sealed
    assert seal.seal(MESSAGE, ref) != sealed


def test_another_master_secret_cannot_open_it(seal: MessageSeal, ref: str) -> None:
    """A message sealed under one master secret is refused under another."""
    sealed = seal.seal(MESSAGE, ref)
    with pytest.raises(ValueError, match="cannot be opened with this master secret"):
        MessageSeal(MasterKey(OTHER_SECRET)).open(sealed, ref)


def test_a_message_sealed_for_one_row_is_refused_for_another(seal: MessageSeal, ref: str) -> None:
    """The outbox id is the associated data: a body copied into another row does not open there."""
    sealed = seal.seal(MESSAGE, ref)
    with pytest.raises(ValueError, match="cannot be opened with this master secret"):
        seal.open(sealed, str(uuid.uuid4()))


@pytest.mark.parametrize("where", [1, 12, 13, 20, -1])
def test_a_flipped_byte_is_refused(seal: MessageSeal, ref: str, where: int) -> None:
    """A byte flipped in the nonce, the ciphertext or the tag is refused."""
    sealed = bytearray(seal.seal(MESSAGE, ref))
    sealed[where] ^= 0x01
    with pytest.raises(ValueError, match="cannot be opened with this master secret"):
        seal.open(bytes(sealed), ref)


@pytest.mark.parametrize("version", [b"\x00", b"\x02", b"{"])
def test_another_version_is_refused(seal: MessageSeal, ref: str, version: bytes) -> None:
    """Only the known version marker opens (a plain JSON body, '{', is not a sealed message)."""
    sealed = seal.seal(MESSAGE, ref)
    with pytest.raises(ValueError, match="not a sealed message of a known version"):
        seal.open(version + sealed[1:], ref)


@pytest.mark.parametrize("sealed", [b"", b"\x01", b"\x01" + b"\x00" * 27])
def test_an_empty_or_truncated_body_is_refused(seal: MessageSeal, ref: str, sealed: bytes) -> None:
    """A body emptied after sending (or shorter than a nonce and a tag) is refused, not opened."""
    with pytest.raises(ValueError, match="not a sealed message of a known version"):
        seal.open(sealed, ref)


def test_the_seal_and_the_message_repr_hide_the_key_and_the_text(seal: MessageSeal) -> None:
    """repr(MessageSeal) shows no key material; repr(Message) shows no text or HTML (the link)."""
    assert repr(seal) == "MessageSeal(**********)"
    assert SECRET not in repr(seal)
    assert "kt_et_" not in repr(MESSAGE)
    assert MESSAGE.to in repr(MESSAGE)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(0, 5), (1, 5), (2, 10), (3, 20), (4, 40), (8, 640), (9, 1280), (10, 1800), (11, 1800), (17, 1800), (10**6, 1800)],
)
def test_retry_delay_doubles_from_5_seconds_to_30_minutes_with_at_most_a_fifth_of_jitter(
    attempts: int, seconds: int
) -> None:
    """After ``attempts`` failures the wait is 5 s * 2^(attempts-1), at most 30 minutes, plus 0 to 20 %."""
    delays = [retry_delay(attempts) for _ in range(200)]
    base = timedelta(seconds=seconds)
    assert all(base <= d <= base * 1.2 for d in delays), (min(delays), max(delays))
    assert len(set(delays)) > 1  # jittered: instances recovering together do not retry in step


@pytest.mark.parametrize("attempts", [-(10**6), -1, 0])
def test_retry_delay_is_never_negative_or_zero(attempts: int) -> None:
    """A nonsense attempt count still waits the first delay: never a negative time, never a busy loop."""
    assert timedelta(seconds=5) <= retry_delay(attempts) <= timedelta(seconds=6)


def test_the_jitter_spreads_over_the_whole_fifth() -> None:
    """The jitter is not stuck at one end: over many draws it covers both halves of the 0-20 % range."""
    fractions = [retry_delay(1) / timedelta(seconds=5) - 1 for _ in range(500)]
    assert min(fractions) < 0.1 < max(fractions)


def test_messages_are_given_up_after_two_days() -> None:
    """A failing message is retried for two days (GIVE_UP_AFTER), then given up."""
    assert timedelta(days=2) == GIVE_UP_AFTER
