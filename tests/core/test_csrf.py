"""Unit tests (no I/O) of keyturn.core.csrf: the double-submit token is a MAC of the session id.

What makes it safe: the same session always gets the same token (so it needs no storage), another
session or another deployment's key gets a different one (so a token an attacker got for their
own session is useless against the victim's), and the check refuses anything else, comparing in
constant time.
"""

from __future__ import annotations

import hmac
import re
import uuid

import pytest

from keyturn.core.csrf import CSRF_LABEL, CsrfTokens
from keyturn.core.errors import CsrfTokenInvalid
from keyturn.core.masterkey import MasterKey
from keyturn.core.refresh import MAC_LABEL

MASTER = MasterKey("csrf-test-secret-7c1e5a9d3b0f2468")
SESSION = uuid.UUID("0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b")
OTHER_SESSION = uuid.UUID("0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6c")


@pytest.fixture
def tokens() -> CsrfTokens:
    return CsrfTokens.from_master(MASTER)


def test_a_session_always_gets_the_same_token(tokens: CsrfTokens) -> None:
    """Derived, never stored: a second instance with the same secret computes the same value."""
    assert tokens.token(SESSION) == tokens.token(SESSION) == CsrfTokens.from_master(MASTER).token(SESSION)


def test_the_token_is_128_bits_in_unpadded_base64url(tokens: CsrfTokens) -> None:
    """Safe in a cookie and a header as it is: 22 characters of the URL-safe alphabet, no padding."""
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", tokens.token(SESSION))


def test_sessions_get_different_tokens(tokens: CsrfTokens) -> None:
    assert tokens.token(SESSION) != tokens.token(OTHER_SESSION)


def test_other_keys_give_other_tokens() -> None:
    """Another deployment's secret, or this secret's key for another purpose, makes other tokens."""
    mine = CsrfTokens.from_master(MASTER).token(SESSION)
    assert CsrfTokens.from_master(MasterKey("another-deployment-secret-0a9b8c7d")).token(SESSION) != mine
    assert CsrfTokens(MASTER.derive(MAC_LABEL)).token(SESSION) != mine
    assert CsrfTokens(MASTER.derive(CSRF_LABEL)).token(SESSION) == mine


def test_check_accepts_the_sessions_token(tokens: CsrfTokens) -> None:
    tokens.check(SESSION, tokens.token(SESSION))


@pytest.mark.parametrize(
    "presented",
    [None, "", b"", 12345, ["x"], "not-the-token", "\udcff" * 22, "é" * 22],
    ids=["missing", "empty", "bytes", "int", "list", "wrong", "lone-surrogates", "non-ascii"],
)
def test_check_refuses_what_is_not_a_token(tokens: CsrfTokens, presented: object) -> None:
    """Missing, not a string, or not the token: ``csrf_token_invalid``, never a crash."""
    with pytest.raises(CsrfTokenInvalid) as refused:
        tokens.check(SESSION, presented)
    assert refused.value.code == "csrf_token_invalid"


def test_check_refuses_another_sessions_token(tokens: CsrfTokens) -> None:
    """Double submit alone would accept a token the attacker planted for their own session."""
    with pytest.raises(CsrfTokenInvalid):
        tokens.check(SESSION, tokens.token(OTHER_SESSION))


def test_check_refuses_the_token_of_another_key() -> None:
    other = CsrfTokens.from_master(MasterKey("another-deployment-secret-0a9b8c7d"))
    with pytest.raises(CsrfTokenInvalid):
        CsrfTokens.from_master(MASTER).check(SESSION, other.token(SESSION))


def test_check_refuses_a_case_changed_token(tokens: CsrfTokens) -> None:
    """base64url is case-sensitive: a header value with its case changed is another value."""
    token = tokens.token(SESSION)
    with pytest.raises(CsrfTokenInvalid):
        tokens.check(SESSION, token.swapcase())


def test_check_compares_in_constant_time(tokens: CsrfTokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison goes through ``hmac.compare_digest`` (a timing oracle would leak the token
    byte by byte): the real function, watched."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def watched(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", watched)  # the module csrf calls it through
    tokens.check(SESSION, tokens.token(SESSION))
    with pytest.raises(CsrfTokenInvalid):
        tokens.check(SESSION, "not-the-token")
    assert [b for _, b in seen] == [tokens.token(SESSION).encode(), b"not-the-token"]
