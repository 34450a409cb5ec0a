"""Unit tests (no I/O) of keyturn.core.refresh: the kt_rt_ refresh-token format, its known answers and its refusals."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from keyturn.core.errors import ForgedRefreshToken, InvalidGrant, MalformedRefreshToken
from keyturn.core.masterkey import MasterKey
from keyturn.core.refresh import MAC_LABEL, PREFIX, RefreshToken, RefreshTokenCodec

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "refresh_tokens.json").read_text(encoding="utf-8"))
MASTER = MasterKey("refresh-codec-test-secret-5d1c9e3a7b2f8046")
OTHER_MASTER = MasterKey("another-deployment-secret-0a9b8c7d6e5f4321")
SESSION = uuid.UUID("0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b")
TOKEN_LENGTH = len(PREFIX) + 60  # 45 bytes of body and MAC, base64url without padding


@pytest.fixture
def codec() -> RefreshTokenCodec:
    return RefreshTokenCodec.from_master(MASTER)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_bytes(token: str) -> bytes:
    body = token[len(PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def refused(codec: RefreshTokenCodec, token: object) -> type[InvalidGrant]:
    """Decode a token that must be refused; return the class of the refusal."""
    with pytest.raises(InvalidGrant) as excinfo:
        codec.decode(token)
    assert type(excinfo.value) in (MalformedRefreshToken, ForgedRefreshToken)
    return type(excinfo.value)


# --- known answers ------------------------------------------------------------------------------------


def test_vectors_file_uses_the_current_mac_label() -> None:
    assert VECTORS["mac_label"] == MAC_LABEL


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"gen{v['generation']}")
def test_codec_reproduces_the_known_answer_token(vector: dict[str, Any]) -> None:
    codec = RefreshTokenCodec.from_master(MasterKey(vector["secret"]))
    assert codec.encode(uuid.UUID(vector["session_id"]), vector["generation"]) == vector["token"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"gen{v['generation']}")
def test_codec_decodes_the_known_answer_token(vector: dict[str, Any]) -> None:
    codec = RefreshTokenCodec.from_master(MasterKey(vector["secret"]))
    assert codec.decode(vector["token"]) == RefreshToken(uuid.UUID(vector["session_id"]), vector["generation"])


def test_token_layout_is_version_key_id_session_generation_mac(codec: RefreshTokenCodec) -> None:
    raw = raw_bytes(codec.encode(SESSION, 0x0102030405060708))
    assert len(raw) == 1 + 4 + 16 + 8 + 16
    version, key_id, session, generation = struct.unpack(">B4s16sQ", raw[:29])
    assert version == 1
    assert key_id == MASTER.key_id(MAC_LABEL)
    assert session == SESSION.bytes
    assert generation == 0x0102030405060708


# --- round trip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("generation", [0, 1, 41, 2**63, 2**64 - 1])
def test_round_trip(generation: int, codec: RefreshTokenCodec) -> None:
    session = uuid.uuid4()
    assert codec.decode(codec.encode(session, generation)) == RefreshToken(session, generation)


def test_token_has_prefix_fixed_length_and_url_safe_characters(codec: RefreshTokenCodec) -> None:
    token = codec.encode(SESSION, 7)
    assert token.startswith("kt_rt_")
    assert len(token) == TOKEN_LENGTH
    assert set(token[len(PREFIX) :]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_same_session_and_generation_give_the_same_token(codec: RefreshTokenCodec) -> None:
    assert codec.encode(SESSION, 3) == codec.encode(SESSION, 3)
    assert RefreshTokenCodec.from_master(MASTER).encode(SESSION, 3) == codec.encode(SESSION, 3)


def test_different_generation_gives_a_different_token(codec: RefreshTokenCodec) -> None:
    assert codec.encode(SESSION, 3) != codec.encode(SESSION, 4)


def test_different_session_gives_a_different_token(codec: RefreshTokenCodec) -> None:
    assert codec.encode(SESSION, 3) != codec.encode(uuid.uuid4(), 3)


def test_a_codec_needs_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="at least one MAC key"):
        RefreshTokenCodec([])


# --- tampering ------------------------------------------------------------------------------------------


def test_no_single_character_change_is_accepted(codec: RefreshTokenCodec) -> None:
    token = codec.encode(SESSION, 5)
    for position, char in enumerate(token):
        for replacement in ("A", "B", "-", "_", "+", "/", "=", " ", "é"):
            if replacement == char:
                continue
            refused(codec, token[:position] + replacement + token[position + 1 :])


def test_changing_the_prefix_is_malformed(codec: RefreshTokenCodec) -> None:
    token = codec.encode(SESSION, 5)
    for position in range(len(PREFIX)):
        assert refused(codec, token[:position] + "x" + token[position + 1 :]) is MalformedRefreshToken


def test_changing_a_mac_character_is_forged(codec: RefreshTokenCodec) -> None:
    token = codec.encode(SESSION, 5)
    altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert refused(codec, altered) is ForgedRefreshToken


def test_changing_the_generation_without_the_key_is_forged(codec: RefreshTokenCodec) -> None:
    raw = bytearray(raw_bytes(codec.encode(SESSION, 5)))
    raw[28] ^= 0x01  # last byte of the generation: now 4
    assert refused(codec, PREFIX + b64url(bytes(raw))) is ForgedRefreshToken


@pytest.mark.parametrize("version", [0, 2, 255])
def test_version_other_than_1_is_malformed(version: int, codec: RefreshTokenCodec) -> None:
    raw = bytearray(raw_bytes(codec.encode(SESSION, 5)))
    raw[0] = version
    assert refused(codec, PREFIX + b64url(bytes(raw))) is MalformedRefreshToken


def test_unknown_key_id_is_forged(codec: RefreshTokenCodec) -> None:
    raw = bytearray(raw_bytes(codec.encode(SESSION, 5)))
    raw[1] ^= 0xFF
    assert refused(codec, PREFIX + b64url(bytes(raw))) is ForgedRefreshToken


@pytest.mark.parametrize("prefix", ["kt_at_", "KT_RT_", "rt_kt_", "kt-rt-", "      "])
def test_wrong_prefix_is_malformed(prefix: str, codec: RefreshTokenCodec) -> None:
    token = codec.encode(SESSION, 5)
    assert refused(codec, prefix + token[len(PREFIX) :]) is MalformedRefreshToken


def test_missing_prefix_is_malformed(codec: RefreshTokenCodec) -> None:
    assert refused(codec, codec.encode(SESSION, 5)[len(PREFIX) :]) is MalformedRefreshToken


@pytest.mark.parametrize("keep", [0, 6, 10, 40, TOKEN_LENGTH - 4, TOKEN_LENGTH - 1])
def test_truncated_token_is_malformed(keep: int, codec: RefreshTokenCodec) -> None:
    assert refused(codec, codec.encode(SESSION, 5)[:keep]) is MalformedRefreshToken


@pytest.mark.parametrize("extra", ["A", "AAAA", "=", "==", "\n", "A" * 100_000])
def test_oversized_token_is_malformed(extra: str, codec: RefreshTokenCodec) -> None:
    assert refused(codec, codec.encode(SESSION, 5) + extra) is MalformedRefreshToken


@pytest.mark.parametrize("token", [None, 123, b"kt_rt_AAAA", ["kt_rt_"], {"token": "kt_rt_"}])
def test_non_string_token_is_malformed(token: object, codec: RefreshTokenCodec) -> None:
    assert refused(codec, token) is MalformedRefreshToken


def test_bytes_of_a_valid_token_are_malformed(codec: RefreshTokenCodec) -> None:
    assert refused(codec, codec.encode(SESSION, 5).encode()) is MalformedRefreshToken


@pytest.mark.parametrize(("ours", "theirs"), [("-", "+"), ("_", "/")])
def test_standard_base64_alphabet_is_malformed(ours: str, theirs: str, codec: RefreshTokenCodec) -> None:
    for generation in range(1000):
        token = codec.encode(SESSION, generation)
        if ours in token[len(PREFIX) :]:
            break
    else:
        pytest.fail(f"no token contains {ours!r}")
    body = token[len(PREFIX) :].replace(ours, theirs)
    assert refused(codec, PREFIX + body) is MalformedRefreshToken


def test_padding_in_place_of_the_last_character_is_malformed(codec: RefreshTokenCodec) -> None:
    assert refused(codec, codec.encode(SESSION, 5)[:-1] + "=") is MalformedRefreshToken


def test_access_token_shaped_string_is_malformed(codec: RefreshTokenCodec) -> None:
    assert refused(codec, "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln") is MalformedRefreshToken


# --- keys ----------------------------------------------------------------------------------------------


def test_token_of_another_master_secret_is_forged(codec: RefreshTokenCodec) -> None:
    foreign = RefreshTokenCodec.from_master(OTHER_MASTER).encode(SESSION, 5)
    assert refused(codec, foreign) is ForgedRefreshToken


def test_rotated_codec_accepts_old_tokens_and_mints_with_the_new_key() -> None:
    new, old = MasterKey("the-new-master-secret-1f2e3d4c5b6a7980"), MasterKey("the-old-master-secret-0897a6b5c4d3e2f1")
    rotated = RefreshTokenCodec.from_master(new, old)
    old_token = RefreshTokenCodec.from_master(old).encode(SESSION, 9)
    assert rotated.decode(old_token) == RefreshToken(SESSION, 9)
    minted = rotated.encode(SESSION, 10)
    assert minted == RefreshTokenCodec.from_master(new).encode(SESSION, 10)
    assert raw_bytes(minted)[1:5] == new.key_id(MAC_LABEL)
    assert refused(RefreshTokenCodec.from_master(old), minted) is ForgedRefreshToken


def test_mac_key_is_bound_to_its_label() -> None:
    wrong_label = RefreshTokenCodec([(MASTER.key_id(MAC_LABEL), MASTER.derive("keyturn/v1/signing-key-encryption"))])
    token = RefreshTokenCodec.from_master(MASTER).encode(SESSION, 1)
    assert refused(wrong_label, token) is ForgedRefreshToken
