"""Request and response bodies of the first-party JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Credentials",
    "LoginRequest",
    "LogoutRequest",
    "Me",
    "PasswordChange",
    "RefreshRequest",
    "SessionOut",
    "SessionsOut",
    "TokenResponse",
    "UserOut",
]


class _Strict(BaseModel):
    """Strict JSON: no coercion (``123`` is not a string), no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Credentials(_Strict):
    username: str = Field(examples=["alice"])
    password: str = Field(examples=["correct horse battery staple"])


class LoginRequest(Credentials):
    device_name: str | None = Field(default=None, max_length=128)
    mode: Literal["body", "cookie"] | None = Field(
        default=None, description="`cookie`: the refresh token is set as an HttpOnly cookie, not returned."
    )


class RefreshRequest(_Strict):
    refresh_token: str | None = Field(default=None, description="Omit in cookie mode.")


class LogoutRequest(_Strict):
    refresh_token: str | None = None


class PasswordChange(_Strict):
    current_password: str
    new_password: str


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 token response, plus the refresh token's lifetime and the session id."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret
    expires_in: int
    refresh_token: str | None = Field(default=None, description="Absent in cookie mode.")
    refresh_token_expires_in: int
    session_id: str
    scope: str


class UserOut(BaseModel):
    id: str
    username: str
    created_at: datetime


class SessionOut(BaseModel):
    id: str
    current: bool
    user_agent: str
    ip: str
    device_name: str | None
    created_at: datetime
    last_used_at: datetime


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class Me(BaseModel):
    sub: str
    username: str
    session_id: str
    client_id: str
    scope: str
    exp: int
    iat: int
    auth_time: int | None
