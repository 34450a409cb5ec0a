"""Request and response bodies of the first-party JSON API."""

from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..service import TokenPair

__all__ = [
    "Address",
    "Credentials",
    "LinkToken",
    "LoginRequest",
    "LogoutRequest",
    "Me",
    "NewPassword",
    "PasswordChange",
    "RefreshRequest",
    "Registration",
    "SessionOut",
    "SessionRename",
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


class Registration(Credentials):
    email: str | None = Field(default=None, max_length=1024, examples=["alice@example.com"])


class LinkToken(_Strict):
    token: str = Field(max_length=256)


class Address(_Strict):
    email: str = Field(max_length=1024, examples=["alice@example.com"])


class NewPassword(LinkToken):
    new_password: str


class SessionRename(_Strict):
    device_name: str | None = Field(max_length=128, examples=["Work laptop"])


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


def _token_response() -> type[BaseModel]:
    """The documented shape of a token response, generated from the service's ``TokenPair`` (where
    its fields are listed, once): the same names and types, with the refresh token absent in
    cookie mode."""
    hints = get_type_hints(TokenPair)
    shape: dict[str, Any] = {
        f.name: (hints[f.name], f.default if f.default is not MISSING else ...) for f in fields(TokenPair)
    }
    shape["refresh_token"] = (str | None, Field(default=None, description="Absent in cookie mode."))
    model: type[BaseModel] = create_model("TokenResponse", **shape)
    return model


TokenResponse = _token_response()


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
    email: str | None
    email_verified: bool
    session_id: str
    client_id: str
    scope: str
    exp: int
    iat: int
    auth_time: int | None
