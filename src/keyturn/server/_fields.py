"""The values of single settings: durations, networks, origins, and what makes a secret or an
issuer unacceptable. Pure functions; ``config.Settings`` applies them."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from ..core.errors import ConfigurationError

__all__ = [
    "MIN_SECRET_CHARS",
    "Duration",
    "alg_name",
    "dev_secret",
    "is_loopback_host",
    "issuer_problem",
    "networks",
    "origins",
    "parse_duration",
    "secret_weakness",
]  # fmt: skip

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|[smhdw])\s*")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_PLACEHOLDERS = ("changeme", "change-me", "secret", "password", "example", "xxxx", "todo")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
MIN_SECRET_CHARS = 32
MAX_DURATION_SECONDS = 10 * 366 * 86400
MAX_DURATION_CHARS = 64  # "1w 6d 23h 59m 59s 999ms" is 23: longer is no duration, and costs time to scan


def parse_duration(value: object) -> timedelta:
    """Parse ``900``, ``"0.5"``, ``"15m"``, ``"7d"``, ``"1h30m"`` or ``"250ms"`` into a timedelta.

    Raises:
        ValueError: the value is not a non-negative duration.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 900, 15m or 7d")
    if isinstance(value, int | float):
        return _seconds(float(value))
    text = str(value).strip().lower()
    if len(text) > MAX_DURATION_CHARS:
        raise ValueError(f"a duration is at most {MAX_DURATION_CHARS} characters, such as 30s, 15m, 1h or 7d")
    if _SECONDS.fullmatch(text):
        return _seconds(float(text))
    # One part after the other from where the last ended: linear, where findall() retried the
    # pattern from every position (quadratic on a long run of digits).
    total, at = 0.0, 0
    while at < len(text) and (part := _DURATION.match(text, at)):
        total, at = total + float(part[1]) * _UNITS[part[2]], part.end()
    if not text or at < len(text):  # the message shows the stripped text: at most 64 characters
        raise ValueError(f"'{text}' is not a duration; use seconds or a unit: 30s, 15m, 1h, 7d")
    return _seconds(total)


def _seconds(seconds: float) -> timedelta:
    if not 0 <= seconds <= MAX_DURATION_SECONDS:
        raise ValueError("a duration must be between 0 and 10 years")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def alg_name(value: object) -> object:
    return "EdDSA" if isinstance(value, str) and value.lower() in {"ed25519", "eddsa"} else value


def networks(value: object) -> object:
    """``KEYTURN_TRUSTED_PROXIES``: comma-separated addresses or networks (``10.0.0.0/8``)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    found = tuple(str(n).strip() for n in items if str(n).strip())
    for network in found:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"'{network}' is not an IP address or network") from None
    return found


def origins(value: object) -> object:
    """``KEYTURN_CORS_ORIGINS``: comma-separated origins such as ``https://app.example.com``."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    found = tuple(str(o).strip().rstrip("/") for o in items if str(o).strip())
    for origin in found:
        if origin == "*" or not _ORIGIN.fullmatch(origin):
            raise ValueError(f"'{origin}' is not an origin like https://app.example.com (no '*', no path)")
    return found


def secret_weakness(secret: str) -> str | None:
    """Say why a master secret is too weak, or ``None`` when it is acceptable."""
    if len(secret) < MIN_SECRET_CHARS:
        return f"must be at least {MIN_SECRET_CHARS} characters (use `keyturn secret`)"
    if len(set(secret)) < 12:
        return "has too few distinct characters to be random"
    # A placeholder word is suspicious only when little else is there: a long random value may
    # contain "todo" by chance.
    rest = secret.lower()
    for word in _PLACEHOLDERS:
        rest = rest.replace(word, "")
    if len(rest) < MIN_SECRET_CHARS:
        return "looks like a placeholder"
    return None


def is_loopback_host(host: str) -> bool:
    """``localhost``, or an address in 127.0.0.0/8 or ``::1`` (names other than localhost are not resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def issuer_problem(issuer: str, *, production: bool) -> str | None:
    """Why ``issuer`` cannot be this deployment's issuer, or ``None``."""
    if not issuer:
        return "is required outside development mode: this server's public URL, such as https://auth.example.com"
    parts = urlsplit(issuer)
    try:
        parts.port  # noqa: B018 - parsed lazily: raises for a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    odd = parts.query or parts.fragment or parts.username is not None
    if parts.scheme not in ("http", "https") or not parts.hostname or odd:
        return f"'{issuer}' is not a URL such as https://auth.example.com (no query, fragment or user)"
    if production and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "must be https:// outside development mode (http:// only on a loopback address such as 127.0.0.1)"
    return None


def dev_secret(path: Path) -> str:
    """Read or create the development master secret file (mode 0600)."""
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        weakness = secret_weakness(value)
        if weakness:
            raise ConfigurationError("KEYTURN_SECRET", f"the development secret in {path} {weakness}; delete it")
        return value
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    logging.getLogger("keyturn.config").warning("generated a development master secret in %s", path)
    return value
