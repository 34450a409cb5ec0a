"""The user-facing use cases, one transaction each, gathered behind ``AuthService``:
sign-in (``signin.py``), rotation (``refresh.py``), authenticated use and sign-out
(``sessions.py``), password change (``password.py``) and recovery by email (``recovery.py``)."""

from __future__ import annotations

from .context import Context
from .password import PasswordChange
from .recovery import Recovery
from .refresh import Refresh
from .sessions import SessionUse
from .signin import SignIn

__all__ = ["AuthService"]


class AuthService(Recovery, SignIn, Refresh, SessionUse, PasswordChange):
    """Register, sign in, rotate, sign out, change a password, verify an address, reset a
    password; every method is one use case."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
