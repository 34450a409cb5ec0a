"""Password hashing (argon2id) and the password policy.

Parameters default to OWASP's argon2id recommendation (m=19 MiB, t=2, p=1). A
login for an unknown user verifies against a dummy hash made with the same
parameters, so it costs the same as a wrong password. Passwords are normalized
(NFKC, NIST SP 800-63B §5.1.1.2) and never truncated: one longer than the limit
is refused before any hashing work.
"""

from __future__ import annotations

import functools
import secrets
import unicodedata
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidCredentials, PasswordPolicyError

__all__ = ["Passwords", "common_passwords"]


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 10,000 most common passwords (case-folded), shipped with the package; checked offline."""
    text = resources.files("keyturn.core.data").joinpath("common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


class Passwords:
    """Hashes, verifies and checks passwords with one set of argon2id parameters."""

    def __init__(
        self,
        *,
        min_length: int = 8,
        max_length: int = 1024,
        time_cost: int = 2,
        memory_cost: int = 19 * 1024,
        parallelism: int = 1,
    ) -> None:
        self.min_length = min_length
        self.max_length = max_length
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(32))

    def normalize(self, password: object) -> str:
        """NFKC-normalize a submitted password, refusing one over the length limit fast.

        Raises:
            PasswordPolicyError: not a string, or longer than ``max_length``.
        """
        if not isinstance(password, str):
            raise PasswordPolicyError("The password must be a string.", reason="password_type")
        # Check before normalizing: NFKC can expand a string, and its cost grows with it.
        # (UTF-8 needs at most 4 bytes a character, so the byte size is bounded too.)
        if len(password) > self.max_length:
            raise self._too_long()
        try:
            password.encode("utf-8")
        except UnicodeEncodeError:
            raise PasswordPolicyError("The password is not valid Unicode text.", reason="password_encoding") from None
        normalized = unicodedata.normalize("NFKC", password)
        if len(normalized) > self.max_length:
            raise self._too_long()
        return normalized

    def check_new(self, password: object) -> str:
        """Apply the policy to a new password and return it normalized.

        Raises:
            PasswordPolicyError: too short, too long, among the 10,000 most common, or not a string.
        """
        normalized = self.normalize(password)
        if len(normalized) < self.min_length:
            raise PasswordPolicyError(
                f"The password must be at least {self.min_length} characters.", reason="password_too_short"
            )
        if normalized.casefold() in common_passwords():
            raise PasswordPolicyError(
                "This password is one of the most common ones; choose another.", reason="password_common"
            )
        return normalized

    def hash(self, password: str) -> str:
        """An argon2id hash of an already normalized password."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> None:
        """Check a normalized password against a stored hash (``None``: unknown user).

        Raises:
            InvalidCredentials: no such user, or the password does not match.
        """
        try:
            self._hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            raise InvalidCredentials() from None
        if stored is None:
            raise InvalidCredentials()

    def needs_rehash(self, stored: str) -> bool:
        """Whether a stored hash was made with other parameters than ours."""
        return self._hasher.check_needs_rehash(stored)

    def _too_long(self) -> PasswordPolicyError:
        return PasswordPolicyError(
            f"The password must be at most {self.max_length} characters.", reason="password_too_long"
        )
