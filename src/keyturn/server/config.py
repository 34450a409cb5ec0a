"""Configuration: one immutable ``Settings`` built at start-up and passed in.

Precedence (pydantic-settings): explicit keyword arguments, then ``KEYTURN_*``
environment variables, then the defaults below. Nothing here is built at import
time. In development mode a missing ``KEYTURN_SECRET`` is generated once and kept
in a 0600 file; outside development a missing or weak secret is refused.

Outside development nothing is guessed or exposed by default: the issuer must be set (and be
``https://`` unless loopback), ``/metrics`` needs ``KEYTURN_METRICS_TOKEN``, ``/docs`` and
``/openapi.json`` need ``KEYTURN_API_DOCS``. Database URLs as users write them are turned into the
store's driver URLs by the store (``normalize_database_url``), the one place that knows its drivers.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..core.errors import ConfigurationError
from ._fields import (
    Duration,
    alg_name,
    dev_secret,
    is_loopback_host,
    issuer_problem,
    networks,
    origins,
    parse_duration,
    secret_weakness,
)
from .mailer import parse_mail_url

__all__ = ["Settings", "is_loopback_host", "load_settings", "parse_duration", "secret_weakness"]

_log = logging.getLogger("keyturn.config")
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")  # limits' Redis storages
DEV_ISSUER = "http://127.0.0.1:8000"  # development mode's issuer when none is set: `keyturn serve`'s address


class Settings(BaseSettings):
    """Every setting of a keyturn deployment (environment prefix ``KEYTURN_``)."""

    # hide_input_in_errors: a refused KEYTURN_DATABASE_URL may hold a password.
    model_config = SettingsConfigDict(env_prefix="KEYTURN_", frozen=True, extra="ignore", hide_input_in_errors=True)

    env: Literal["development", "production"] = "production"
    database_url: str = "sqlite+aiosqlite:///keyturn.db"
    secret: SecretStr = SecretStr("")  # required: see _check (development generates one)
    issuer: str = ""  # required outside development mode (see _fail_closed)
    audience: str = ""
    client_id: str = "keyturn"
    default_scope: str = "profile"
    access_token_ttl: Duration = timedelta(minutes=15)
    refresh_idle_ttl: Duration = timedelta(days=7)
    session_max_ttl: Duration = timedelta(days=30)
    reuse_grace: Duration = timedelta(seconds=10)
    leeway: Duration = timedelta(seconds=5)
    key_publish_delay: Duration = timedelta(minutes=10)
    signing_alg: Annotated[Literal["ES256", "EdDSA", "RS256"], BeforeValidator(alg_name)] = "ES256"
    allow_registration: bool = True
    auto_migrate: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=4096, le=1024 * 1024)
    max_header_fields: int = Field(default=100, ge=32, le=10_000)
    password_min_length: int = Field(default=8, ge=1, le=256)
    password_max_length: int = Field(default=1024, ge=8, le=4096)
    db_timeout: Duration = timedelta(seconds=5)
    db_pool_size: int = Field(default=10, ge=1, le=500)
    db_max_overflow: int = Field(default=10, ge=0, le=500)
    session_retention: Duration = timedelta(days=7)
    audit_retention: Duration = timedelta(days=90)
    prune_interval: Duration = timedelta(hours=1)
    prune_batch_size: int = Field(default=1000, ge=1, le=100_000)
    revocation_poll: Duration = timedelta(milliseconds=200)
    metrics_enabled: bool | None = None
    metrics_token: SecretStr | None = None
    api_docs: bool | None = None
    cookie_mode: Literal["auto", "always", "never"] = "auto"
    cookie_samesite: Literal["strict", "lax"] = "strict"
    cors_origins: Annotated[tuple[str, ...], NoDecode, BeforeValidator(origins)] = ()
    web_page: bool | None = None
    rate_limit_enabled: bool = True
    redis_url: str | None = None
    rate_limit_login_ip: str = "30/minute;300/hour"
    rate_limit_login_failures: str = "5/minute;20/hour"
    rate_limit_account_failures: str = "30/15minutes"
    rate_limit_register_ip: str = "10/hour"
    rate_limit_refresh_session: str = "60/minute"
    rate_limit_client_grant: str = "60/minute"
    rate_limit_global: str = "2000/second"
    admins: str | None = None  # removed: see _check
    password_change_failures: int = Field(default=5, ge=1, le=100)
    trusted_proxies: Annotated[tuple[str, ...], NoDecode, BeforeValidator(networks)] = ()
    mail_url: SecretStr | None = None  # keyturn.server.mailer; development: console:
    mail_from: str = ""
    mail_timeout: Duration = timedelta(seconds=10)
    product_name: str = Field(default="keyturn", min_length=1, max_length=64)
    require_verified_email: bool = False
    email_token_ttl: Duration = timedelta(hours=24)
    reset_token_ttl: Duration = timedelta(minutes=30)
    rate_limit_recovery_address: str = "3/15minutes;10/day"
    rate_limit_recovery_ip: str = "20/hour"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "rate_limit_login_ip", "rate_limit_login_failures", "rate_limit_account_failures",
        "rate_limit_register_ip", "rate_limit_refresh_session", "rate_limit_client_grant", "rate_limit_global",
        "rate_limit_recovery_address", "rate_limit_recovery_ip",
    )  # fmt: skip
    @classmethod
    def _limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a rate limit such as 30/minute;300/hour") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from .store import normalize_database_url  # the store knows its drivers (and imports SQLAlchemy)

        return normalize_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and value.partition("://")[0].lower() not in _REDIS_SCHEMES:
            raise ValueError(f"use redis://host:6379/0 (or {', '.join(_REDIS_SCHEMES[1:])}://...)")
        return value

    @field_validator("mail_url")
    @classmethod
    def _mail_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_mail_url(value.get_secret_value())  # a ValueError names the problem, never the password
        return value

    @model_validator(mode="before")
    @classmethod
    def _dev_issuer(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("env") == "development" and not data.get("issuer"):
            return {**data, "issuer": DEV_ISSUER}
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.access_token_ttl < timedelta(seconds=1):
            raise ValueError("KEYTURN_ACCESS_TOKEN_TTL: must be at least 1 second")
        if self.refresh_idle_ttl < timedelta(seconds=1):
            raise ValueError("KEYTURN_REFRESH_IDLE_TTL: must be at least 1 second")
        if self.session_max_ttl < self.refresh_idle_ttl:
            raise ValueError("KEYTURN_SESSION_MAX_TTL: must not be shorter than KEYTURN_REFRESH_IDLE_TTL")
        if not timedelta(milliseconds=10) <= self.revocation_poll <= timedelta(seconds=5):
            raise ValueError("KEYTURN_REVOCATION_POLL: must be between 10ms and 5s")
        if self.reuse_grace > timedelta(minutes=5):
            raise ValueError("KEYTURN_REUSE_GRACE: must be at most 5m")
        if self.admins is not None:
            # Authority from a name anyone could register: refused, not silently ignored.
            raise ValueError(
                "KEYTURN_ADMINS: was removed; grant the role instead (`keyturn users grant NAME admin`) "
                "and unset KEYTURN_ADMINS"
            )
        if not self.secret.get_secret_value():
            raise ValueError("KEYTURN_SECRET: is required outside development mode")
        weakness = secret_weakness(self.secret.get_secret_value())
        if weakness and self.env != "development":
            raise ValueError(f"KEYTURN_SECRET: {weakness}")
        return self

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        """Outside development, nothing is exposed or guessed that the operator did not set."""
        problem = issuer_problem(self.issuer, production=not self.dev)
        if problem:
            raise ValueError(f"KEYTURN_ISSUER: {problem}")
        if self.dev:
            return self
        if self.metrics_enabled and self.metrics_token is None:
            raise ValueError(
                "KEYTURN_METRICS_TOKEN: is required outside development mode when KEYTURN_METRICS_ENABLED=true "
                "(make one with `keyturn secret`)"
            )
        weakness = None if self.metrics_token is None else secret_weakness(self.metrics_token.get_secret_value())
        if weakness:
            raise ValueError(f"KEYTURN_METRICS_TOKEN: {weakness}")
        if self.mail_url is not None and parse_mail_url(self.mail_url.get_secret_value()) is None:
            raise ValueError("KEYTURN_MAIL_URL: console: writes reset links to the log: development only")
        if self.require_verified_email and self.mail_url is None:
            raise ValueError("KEYTURN_MAIL_URL: is required with KEYTURN_REQUIRE_VERIFIED_EMAIL (no one could verify)")
        return self

    @property
    def dev(self) -> bool:
        return self.env == "development"

    @property
    def serve_metrics(self) -> bool:
        """``/metrics``: on in development; outside it only with ``KEYTURN_METRICS_TOKEN`` (off if disabled)."""
        if self.metrics_enabled is not None:
            return self.metrics_enabled
        return self.dev or self.metrics_token is not None

    @property
    def serve_api_docs(self) -> bool:
        """``/docs`` and ``/openapi.json``: on in development unless ``KEYTURN_API_DOCS`` says otherwise."""
        return self.dev if self.api_docs is None else self.api_docs

    @property
    def hsts(self) -> bool:
        """Send ``Strict-Transport-Security``: the issuer, the public URL, is https."""
        return self.issuer.startswith("https://")

    @property
    def serve_web_page(self) -> bool:
        """The web page at ``/``: on in development unless ``KEYTURN_WEB_PAGE`` says otherwise."""
        return self.dev if self.web_page is None else self.web_page

    @property
    def mail(self) -> str | None:
        """How mail is sent (``keyturn.server.mailer``): ``KEYTURN_MAIL_URL``, ``console:`` in
        development, or None: no mail (recovery by email is unavailable)."""
        if self.mail_url is not None:
            return self.mail_url.get_secret_value()
        return "console:" if self.dev else None

    @property
    def mail_sender(self) -> str:
        """``From:``: ``KEYTURN_MAIL_FROM``, or the product at no-reply@ the issuer's host."""
        return self.mail_from or f"{self.product_name} <no-reply@{urlsplit(self.issuer).hostname or 'localhost'}>"

    @property
    def token_audience(self) -> str:
        """The ``aud`` of issued access tokens: ``KEYTURN_AUDIENCE`` or the issuer."""
        return self.audience or self.issuer


def _first_error(exc: ValidationError) -> ConfigurationError:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    message = str(err["msg"]).removeprefix("Value error, ")
    if not field and ": " in message and message.startswith("KEYTURN_"):
        field, message = message.split(": ", 1)
    setting = field if field.startswith("KEYTURN_") else f"KEYTURN_{field.upper()}"
    return ConfigurationError(setting, message)


def load_settings(
    *, dev: bool = False, secret_file: Path | None = None, dev_issuer: str | None = None, **overrides: Any
) -> Settings:
    """Build the settings from the environment, turning any error into one clear line.

    Args:
        dev: development mode; a missing secret is generated into ``secret_file``.
        secret_file: where the development secret lives (default ``./keyturn.secret``).
        dev_issuer: the issuer in development mode when ``KEYTURN_ISSUER`` is not set (``serve``
            passes the address it listens on); outside development the issuer must be set.
        **overrides: explicit values that win over the environment.

    Raises:
        ConfigurationError: a setting is missing or invalid; it names the setting.
    """
    if dev:
        overrides.setdefault("env", "development")
    try:
        env = overrides.get("env") or os.environ.get("KEYTURN_ENV", "production")
        if env == "development" and "secret" not in overrides and not os.environ.get("KEYTURN_SECRET"):
            overrides["secret"] = dev_secret(secret_file or Path("keyturn.secret"))
        if env == "development" and dev_issuer and "issuer" not in overrides and not os.environ.get("KEYTURN_ISSUER"):
            overrides["issuer"] = dev_issuer
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise _first_error(exc) from None
    if settings.dev:
        _log.warning("development mode: the master secret and defaults are for development only")
    return settings
