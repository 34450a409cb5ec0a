"""Unit tests (no I/O) of keyturn.core.passwords: argon2id hashing, verification and the password policy."""

from __future__ import annotations

import re
import unicodedata

import argon2
import pytest

from keyturn.core.errors import InvalidCredentials, PasswordPolicyError
from keyturn.core.passwords import Passwords

CHEAP = {"time_cost": 1, "memory_cost": 1024}
PASSWORD = "correct horse battery staple"
ARGON2_HASH = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(**CHEAP)


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Count argon2 hash and verify calls (and record the hash each verify used)."""
    calls: dict[str, list[str]] = {"hash": [], "verify": []}
    real_hash, real_verify = argon2.PasswordHasher.hash, argon2.PasswordHasher.verify

    def counting_hash(self: argon2.PasswordHasher, password: str | bytes, **kwargs: object) -> str:
        calls["hash"].append("")
        return real_hash(self, password, **kwargs)  # type: ignore[arg-type]

    def counting_verify(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls["verify"].append(hash if isinstance(hash, str) else hash.decode())
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", counting_hash)
    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)
    return calls


def parameters(stored: str) -> tuple[int, int, int]:
    match = ARGON2_HASH.match(stored)
    assert match, stored
    m, t, p = (int(g) for g in match.groups())
    return m, t, p


def test_default_parameters_are_owasp_argon2id() -> None:
    """OWASP's argon2id recommendation: m=19456 KiB, t=2, p=1."""
    assert parameters(Passwords().hash(PASSWORD)) == (19456, 2, 1)


def test_cheap_parameters_are_used_when_given(passwords: Passwords) -> None:
    assert parameters(passwords.hash(PASSWORD)) == (1024, 1, 1)


def test_hash_then_verify(passwords: Passwords) -> None:
    stored = passwords.hash(PASSWORD)
    assert PASSWORD not in stored
    passwords.verify(stored, PASSWORD)  # raises unless the password matches


def test_hash_is_salted(passwords: Passwords) -> None:
    assert passwords.hash(PASSWORD) != passwords.hash(PASSWORD)


def test_wrong_password_raises_invalid_credentials(passwords: Passwords) -> None:
    stored = passwords.hash(PASSWORD)
    with pytest.raises(InvalidCredentials):
        passwords.verify(stored, PASSWORD + "!")


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=1024,t=1,p=1$broken"])
def test_damaged_stored_hash_raises_invalid_credentials(stored: str, passwords: Passwords) -> None:
    with pytest.raises(InvalidCredentials):
        passwords.verify(stored, PASSWORD)


def test_unknown_user_raises_invalid_credentials(passwords: Passwords) -> None:
    with pytest.raises(InvalidCredentials):
        passwords.verify(None, PASSWORD)


def test_unknown_user_still_runs_argon2_with_the_same_parameters(argon2_calls: dict[str, list[str]]) -> None:
    """Unknown user costs one argon2 verification, against a dummy hash made with our own parameters."""
    passwords = Passwords(**CHEAP)
    real_user_hash = passwords.hash(PASSWORD)
    with pytest.raises(InvalidCredentials):
        passwords.verify(None, PASSWORD)
    assert len(argon2_calls["verify"]) == 1
    dummy = argon2_calls["verify"][0]
    assert dummy != real_user_hash
    assert parameters(dummy) == parameters(real_user_hash)


def test_unknown_user_does_the_same_argon2_work_as_a_wrong_password(argon2_calls: dict[str, list[str]]) -> None:
    passwords = Passwords(**CHEAP)
    stored = passwords.hash(PASSWORD)
    with pytest.raises(InvalidCredentials):
        passwords.verify(stored, "wrong password")
    with pytest.raises(InvalidCredentials):
        passwords.verify(None, "wrong password")
    assert len(argon2_calls["verify"]) == 2
    assert parameters(argon2_calls["verify"][0]) == parameters(argon2_calls["verify"][1])


def test_needs_rehash_for_a_hash_made_with_other_parameters(passwords: Passwords) -> None:
    other = Passwords(time_cost=2, memory_cost=2048)
    assert passwords.needs_rehash(other.hash(PASSWORD))
    assert not passwords.needs_rehash(passwords.hash(PASSWORD))


def test_a_hash_with_other_parameters_still_verifies(passwords: Passwords) -> None:
    passwords.verify(Passwords(time_cost=2, memory_cost=2048).hash(PASSWORD), PASSWORD)


def test_composed_and_decomposed_forms_verify_the_same(passwords: Passwords) -> None:
    composed, decomposed = "caf\u00e9-latte-42", "cafe\u0301-latte-42"
    assert composed != decomposed
    stored = passwords.hash(passwords.check_new(composed))
    passwords.verify(stored, passwords.normalize(decomposed))


def test_normalization_is_nfkc(passwords: Passwords) -> None:
    assert passwords.normalize("\uff50\uff41\uff53\uff53\u2460") == "pass1"
    assert passwords.normalize("\ufb01ne") == "fine"


def test_too_long_password_refused_before_any_hashing(argon2_calls: dict[str, list[str]]) -> None:
    passwords = Passwords(**CHEAP)
    argon2_calls["hash"].clear()
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.check_new("a" * 1025)
    assert excinfo.value.reason == "password_too_long"
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.normalize("a" * 100_000)
    assert excinfo.value.reason == "password_too_long"
    assert argon2_calls == {"hash": [], "verify": []}


def test_password_at_the_length_limit_accepted(passwords: Passwords) -> None:
    assert passwords.check_new("a" * 1024) == "a" * 1024


def test_password_that_nfkc_expands_past_the_limit_refused(passwords: Passwords) -> None:
    expanding = "\ufdfa" * 100  # one character, eighteen after NFKC
    assert len(unicodedata.normalize("NFKC", expanding)) > 1024
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.check_new(expanding)
    assert excinfo.value.reason == "password_too_long"


def test_limit_follows_max_length() -> None:
    short_limit = Passwords(max_length=16, **CHEAP)
    assert short_limit.check_new("a" * 16)
    with pytest.raises(PasswordPolicyError) as excinfo:
        short_limit.check_new("a" * 17)
    assert excinfo.value.reason == "password_too_long"


def test_long_multibyte_password_accepted(passwords: Passwords) -> None:
    emoji = "\U0001f511" * 200  # 800 bytes of UTF-8
    normalized = passwords.check_new(emoji)
    passwords.verify(passwords.hash(normalized), normalized)


@pytest.mark.parametrize("password", ["", "a", "seven77"])
def test_too_short_password_refused(password: str, passwords: Passwords) -> None:
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.check_new(password)
    assert excinfo.value.reason == "password_too_short"


def test_password_of_min_length_accepted(passwords: Passwords) -> None:
    assert passwords.check_new("eight888") == "eight888"


def test_short_password_can_still_be_submitted_at_login(passwords: Passwords) -> None:
    assert passwords.normalize("short") == "short"


@pytest.mark.parametrize("password", [None, 12345678, b"bytes-password", ["a" * 10], 3.14])
def test_non_string_password_refused(password: object, passwords: Passwords) -> None:
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.check_new(password)
    assert excinfo.value.reason == "password_type"


@pytest.mark.parametrize("password", ["abcdefgh\ud800", "\udfffabcdefgh"])
def test_lone_surrogate_refused_as_policy_error(password: str, passwords: Passwords) -> None:
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.normalize(password)
    assert excinfo.value.reason == "password_encoding"


def test_policy_error_is_an_invalid_request(passwords: Passwords) -> None:
    with pytest.raises(PasswordPolicyError) as excinfo:
        passwords.check_new("short")
    assert excinfo.value.code == "invalid_request"


def test_no_silent_truncation(passwords: Passwords) -> None:
    first, second = "x" * 999 + "a", "x" * 999 + "b"
    stored = passwords.hash(passwords.check_new(first))
    with pytest.raises(InvalidCredentials):
        passwords.verify(stored, passwords.normalize(second))
    passwords.verify(stored, passwords.normalize(first))


def test_no_truncation_at_72_bytes(passwords: Passwords) -> None:
    """The bcrypt limit does not apply: byte 73 counts."""
    stored = passwords.hash("p" * 72 + "1")
    with pytest.raises(InvalidCredentials):
        passwords.verify(stored, "p" * 72 + "2")


def test_common_passwords_are_refused_whatever_their_case() -> None:
    """The shipped list of the 10,000 most common passwords is checked offline, case-insensitively."""
    from keyturn.core.passwords import common_passwords

    assert len(common_passwords()) == 10_000
    policy = Passwords(time_cost=1, memory_cost=1024)
    for common in ("password1", "PASSWORD1", "iloveyou", "qwertyuiop"):
        with pytest.raises(PasswordPolicyError) as caught:
            policy.check_new(common)
        assert caught.value.reason == "password_common"
    assert policy.check_new("correct horse battery staple") == "correct horse battery staple"
