"""Unit tests (no I/O) of keyturn.core.masterkey: HKDF-derived, purpose-bound keys from one secret."""

from __future__ import annotations

import pytest

from keyturn.core.masterkey import MasterKey

SECRET = "master-key-test-secret-3c7e1a9d5b0f2468"


def test_same_secret_and_label_give_the_same_key() -> None:
    assert MasterKey(SECRET).derive("purpose") == MasterKey(SECRET).derive("purpose")


def test_str_and_bytes_secrets_are_the_same_secret() -> None:
    assert MasterKey(SECRET).derive("purpose") == MasterKey(SECRET.encode()).derive("purpose")
    buffer = bytearray(SECRET.encode())  # typed str | bytes; any buffer works (bytes(secret))
    assert MasterKey(buffer).derive("purpose") == MasterKey(SECRET).derive("purpose")  # type: ignore[arg-type]


def test_labels_give_independent_keys() -> None:
    master = MasterKey(SECRET)
    keys = {master.derive(label) for label in ("a", "b", "keyturn/v1/refresh-token-mac", "keyturn/v1/x", "")}
    assert len(keys) == 5


def test_secrets_give_independent_keys() -> None:
    assert MasterKey(SECRET).derive("purpose") != MasterKey(SECRET + "x").derive("purpose")


@pytest.mark.parametrize("length", [16, 32, 64])
def test_derive_gives_the_length_asked(length: int) -> None:
    assert len(MasterKey(SECRET).derive("purpose", length)) == length


def test_default_length_is_32_bytes() -> None:
    assert len(MasterKey(SECRET).derive("purpose")) == 32


def test_derived_key_is_not_the_secret() -> None:
    assert SECRET.encode()[:32] != MasterKey(SECRET).derive("purpose")


def test_key_id_is_4_bytes_deterministic_and_per_label() -> None:
    master = MasterKey(SECRET)
    assert len(master.key_id("a")) == 4
    assert master.key_id("a") == MasterKey(SECRET).key_id("a")
    assert master.key_id("a") != master.key_id("b")
    assert master.key_id("a") != MasterKey(SECRET + "x").key_id("a")


def test_key_id_does_not_reveal_the_key() -> None:
    master = MasterKey(SECRET)
    assert master.key_id("a") != master.derive("a")[:4]


def test_repr_and_str_hide_the_secret() -> None:
    master = MasterKey(SECRET)
    for text in (repr(master), str(master), f"{master!r}", repr([master])):
        assert SECRET not in text
        assert "***" in text


def test_secret_is_not_an_attribute_dict() -> None:
    assert not hasattr(MasterKey(SECRET), "__dict__")
