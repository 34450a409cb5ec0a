"""Integration tests of JWT attacks on the encoding: altered or re-spelled signatures, non-canonical
base64url, duplicate JSON members, tokens too long to parse. The real HTTP API in-process on a real
database; the harness is tests/security/forgery.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from keyturn.core.errors import BadSignature, MalformedToken
from tests.security.forgery import (
    DUPLICATE,
    NOT_CANONICAL,
    NOT_JSON,
    P256_N,
    TOO_LONG,
    Target,
    assert_refused,
    b64url,
    es_sign,
    non_canonical,
    segment,
)

pytestmark = pytest.mark.anyio


# --- signature -----------------------------------------------------------------------------------


async def test_signature_stripped_empty_third_segment(target: Target) -> None:
    head, body, _ = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}."), BadSignature.description)


async def test_signature_stripped_two_segments(target: Target) -> None:
    head, body, _ = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}"), MalformedToken.description)


async def test_signature_swapped_from_another_valid_token(target: Target) -> None:
    other = (await target.login_again())["access_token"]
    assert (await target.me(other)).status_code == 200
    head, body, _ = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}.{other.split('.')[2]}"), BadSignature.description)


async def test_signature_reencoded_with_standard_base64_alphabet(target: Target) -> None:
    """The same signature bytes spelled with ``+/`` instead of ``-_`` are refused."""
    signing_input = f"{segment(target.header())}.{segment(target.payload())}"
    for _ in range(200):  # ECDSA signatures are randomised: find one whose spelling differs
        signature = es_sign(signing_input, target.key)
        if "-" in signature or "_" in signature:
            break
    else:
        pytest.fail("no signature with - or _ in 200 tries")
    assert (await target.me(f"{signing_input}.{signature}")).status_code == 200
    standard = signature.replace("-", "+").replace("_", "/")
    assert_refused(await target.me(f"{signing_input}.{standard}"), NOT_CANONICAL)


async def test_signature_reencoded_with_padding(target: Target) -> None:
    """The same signature bytes with ``=`` padding are refused."""
    head, body, signature = target.access_token.split(".")
    padded = signature + "=" * (-len(signature) % 4)
    assert padded != signature
    assert_refused(await target.me(f"{head}.{body}.{padded}"), NOT_CANONICAL)
    assert_refused(await target.me(f"{head}.{body}.{signature}=="), NOT_CANONICAL)


async def test_signature_non_canonical_trailing_bits(target: Target) -> None:
    head, body, signature = target.access_token.split(".")
    assert_refused(await target.me(f"{head}.{body}.{non_canonical(signature)}"), NOT_CANONICAL)


async def test_signature_high_s_twin(target: Target) -> None:
    """The server's own token with S replaced by n - S (a valid ECDSA signature too) is refused."""
    head, body, signature = target.access_token.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    s = int.from_bytes(raw[32:], "big")
    assert 0 < s <= P256_N // 2  # the server issues the low-S form only
    assert (await target.me(target.access_token)).status_code == 200
    assert_refused(
        await target.me(f"{head}.{body}.{b64url(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"),
        BadSignature.description,
    )


# --- encoding and JSON ---------------------------------------------------------------------------


def _json_with_unused_bits(value: dict[str, Any]) -> str:
    """The JSON of ``value``, padded with spaces until its base64url has unused trailing bits."""
    text = json.dumps(value, separators=(",", ":"))
    while len(text) % 3 == 0:
        text += " "
    return text


async def test_header_non_canonical_base64(target: Target) -> None:
    """Same header bytes, last character with a trailing bit set, validly signed: refused."""
    header = segment(_json_with_unused_bits(target.header()))
    payload = segment(target.payload())
    good = f"{header}.{payload}"
    assert (await target.me(f"{good}.{es_sign(good, target.key)}")).status_code == 200
    bad = f"{non_canonical(header)}.{payload}"
    assert_refused(await target.me(f"{bad}.{es_sign(bad, target.key)}"), NOT_CANONICAL)


async def test_payload_non_canonical_base64(target: Target) -> None:
    """Same payload bytes, last character with a trailing bit set, validly signed: refused."""
    header = segment(target.header())
    payload = segment(_json_with_unused_bits(target.payload()))
    good = f"{header}.{payload}"
    assert (await target.me(f"{good}.{es_sign(good, target.key)}")).status_code == 200
    bad = f"{header}.{non_canonical(payload)}"
    assert_refused(await target.me(f"{bad}.{es_sign(bad, target.key)}"), NOT_CANONICAL)


async def test_duplicate_json_keys_in_header(target: Target) -> None:
    """Two ``typ``: a last-wins parser would read at+jwt, a first-wins one JWT; we refuse."""
    key = target.key
    header = f'{{"alg":"{key.alg}","typ":"JWT","kid":"{key.kid}","typ":"at+jwt"}}'
    assert_refused(await target.me(target.forge(header=header)), DUPLICATE)
    header = f'{{"alg":"none","alg":"{key.alg}","typ":"at+jwt","kid":"{key.kid}"}}'
    assert_refused(await target.me(target.forge(header=header)), DUPLICATE)


async def test_duplicate_json_keys_in_payload(target: Target) -> None:
    """Two ``sub`` (another user's, then ours): a parser differential we refuse outright."""
    claims = json.dumps(target.payload(), separators=(",", ":"))
    payload = '{"sub":"' + str(uuid.uuid4()) + '",' + claims[1:]
    assert_refused(await target.me(target.forge(payload=payload)), DUPLICATE)


async def test_payload_not_a_json_object(target: Target) -> None:
    malformed = MalformedToken.description
    for payload, reason in [
        ("[]", malformed), ('"claims"', malformed), ("null", malformed),
        ("NaN", NOT_JSON), ('{"exp": NaN}', NOT_JSON), ("{", NOT_JSON),
    ]:  # fmt: skip
        assert_refused(await target.me(target.forge(payload=payload)), reason)


async def test_token_over_8_kib_is_refused_unparsed(target: Target) -> None:
    """A token past the 8 KiB cap (in a header block the server still reads) is refused before parsing."""
    head, _, signature = target.access_token.split(".")
    padding = b64url(json.dumps({"pad": "x" * 9_000}).encode())
    token = f"{head}.{padding}.{signature}"
    assert 12_000 <= len(token) < 14_000
    assert_refused(await target.me(token), TOO_LONG)
    assert_refused(await target.me("A" * 12_000), TOO_LONG)


async def test_token_of_100_kb_never_reaches_the_token_parser(target: Target) -> None:
    """A 100 KB token is a header block over the 16 KiB bound: 431 before any route or parser."""
    head, _, signature = target.access_token.split(".")
    token = f"{head}.{b64url(json.dumps({'pad': 'x' * 75_000}).encode())}.{signature}"
    assert len(token) >= 100_000
    for sent in (token, "A" * 100_000):
        response = await target.me(sent)
        assert (response.status_code, response.json()["error"]) == (431, "request_headers_too_large")
