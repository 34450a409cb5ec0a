"""The user-facing use cases, one transaction each, gathered behind ``AuthService``:
sign-in (``signin.py``), rotation (``refresh.py``), authenticated use and sign-out
(``sessions.py``) and password change (``password.py``)."""

from __future__ import annotations

from .context import Context
from .password import PasswordChange
from .refresh import Refresh
from .sessions import SessionUse
from .signin import SignIn

__all__ = ["AuthService"]


class AuthService(SignIn, Refresh, SessionUse, PasswordChange):
    """Register, sign in, rotate, sign out, change a password; every method is one use case."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
