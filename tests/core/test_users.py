"""Unit tests (no I/O) of keyturn.core.users: the shown username and its case-folded storage key."""

from __future__ import annotations

import pytest

from keyturn.core.errors import InvalidRequest
from keyturn.core.users import MAX_USERNAME_LENGTH, normalize_username


@pytest.mark.parametrize(
    "username", ["Alice", "ALICE", "alice", "aLiCe", "\uff41\uff4c\uff49\uff43\uff45", "\uff21lice"]
)
def test_case_and_width_variants_share_one_key(username: str) -> None:
    assert normalize_username(username)[1] == "alice"


def test_display_keeps_the_case_given() -> None:
    assert normalize_username("Alice") == ("Alice", "alice")
    assert normalize_username("ALICE") == ("ALICE", "alice")


def test_display_is_the_nfkc_form() -> None:
    assert normalize_username("\uff21\uff4c\uff49\uff43\uff45") == ("Alice", "alice")
    assert normalize_username("Jose\u0301") == ("Jos\u00e9", "jos\u00e9")


def test_key_uses_full_case_folding() -> None:
    assert normalize_username("Stra\u00dfe")[1] == normalize_username("STRASSE")[1] == "strasse"


@pytest.mark.parametrize(
    "username", ["alice_01", "a", "bob.smith", "\u00e9lodie", "\u5f20\u4f1f", "x" * MAX_USERNAME_LENGTH]
)
def test_ordinary_names_accepted(username: str) -> None:
    display, key = normalize_username(username)
    assert display == username
    assert key == username.casefold()


@pytest.mark.parametrize(
    "username",
    [
        "",
        " ",
        "alice smith",
        " alice",
        "alice ",
        "alice\tsmith",
        "alice\nsmith",
        "alice\x00",
        "alice\x7f",
        "al\u200bice",  # zero-width space (Cf)
        "al\u00a0ice",  # no-break space (Zs)
        "al\u2028ice",  # line separator (Zl)
        "al\u202eice",  # right-to-left override (Cf)
        "\ud800alice",  # lone surrogate (Cs)
        "x" * (MAX_USERNAME_LENGTH + 1),
        "x" * 100_000,
    ],
)
def test_bad_names_refused(username: str) -> None:
    with pytest.raises(InvalidRequest):
        normalize_username(username)


def test_name_that_nfkc_expands_past_the_limit_refused() -> None:
    with pytest.raises(InvalidRequest):
        normalize_username("\ufdfa" * 10)  # ten characters, 180 after NFKC


@pytest.mark.parametrize("username", [None, 42, b"alice", ["alice"]])
def test_non_string_refused(username: object) -> None:
    with pytest.raises(InvalidRequest):
        normalize_username(username)


def test_refusal_is_an_invalid_request_code() -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        normalize_username("")
    assert excinfo.value.code == "invalid_request"
