"""Database URLs: what users write, turned into what the store's drivers take.

Users write ``sqlite:///keyturn.db`` or ``postgresql://user:password@host:5432/keyturn`` (also
``postgres://``, as many hosting providers print it). keyturn ships one async driver per database,
so the plain forms map to ``sqlite+aiosqlite`` and ``postgresql+asyncpg``; the explicit forms are
kept. Everything else is refused with one line saying why: other drivers, in-memory SQLite (each
pooled connection would get a database of its own), options a driver would reject only when it
first connects, malformed URLs.

libpq's ``sslmode`` (what ``psql`` and most providers document) is not an asyncpg keyword: it is
passed on as asyncpg's ``ssl``, which takes the same six modes. Certificate files come from
``PGSSLROOTCERT``, ``PGSSLCERT`` and ``PGSSLKEY`` in the environment, which asyncpg reads itself.
"""

from __future__ import annotations

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["EXAMPLES", "SESSION_ATTRS", "SSL_MODES", "normalize_database_url", "redacted"]

EXAMPLES = "sqlite:///path/to/keyturn.db or postgresql://user:password@host:5432/dbname"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")  # asyncpg's
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
# Query options the asyncpg dialect passes to asyncpg.connect() and keyturn leaves to the user.
_POSTGRES_OPTIONS = ("ssl", "sslmode", "target_session_attrs", "host", "prepared_statement_cache_size")
_FROM_ENVIRONMENT = {"sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL"}
_KEYTURN_OWN = {"connect_timeout": "KEYTURN_DB_TIMEOUT", "application_name": "keyturn sets it to 'keyturn'"}


def normalize_database_url(text: str) -> str:
    """The URL the store opens for ``text``, a URL as a user writes it.

    Raises:
        ValueError: the URL is malformed, names another database or driver, is in-memory SQLite,
            or carries an option the driver would refuse; the message says which, without the
            URL itself (it may hold a password).
    """
    scheme, sep, rest = text.strip().partition("://")
    if not sep or not scheme:
        raise ValueError(f"is not a database URL; use {EXAMPLES}")
    driver = _DRIVERS.get(scheme.lower())
    if driver is None:
        raise ValueError(f"'{scheme}://' is not supported (keyturn ships aiosqlite and asyncpg); use {EXAMPLES}")
    normalized = f"{driver}://{rest}"
    try:
        url = make_url(normalized)
        _ = url.port  # parsed lazily: a port that is not a number raises here
    except (ArgumentError, ValueError):
        raise ValueError(f"is malformed; use {EXAMPLES} (percent-encode '@', ':' and '/' in a password)") from None
    if driver == "sqlite+aiosqlite":
        _check_sqlite(url)
        return normalized
    query = _postgres_query(url)
    if query == dict(url.query):
        return normalized
    return url.set(query=query).render_as_string(hide_password=False)


def _check_sqlite(url: URL) -> None:
    if url.host or url.username or url.port:
        raise ValueError("a SQLite URL has no host: sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if not url.database or url.database == ":memory:":
        raise ValueError(
            "in-memory SQLite is not shared between pooled connections; give a file: sqlite:///path/to/keyturn.db"
        )
    if url.query:
        raise ValueError(
            f"SQLite URLs take no options (got {', '.join(sorted(url.query))}); keyturn sets SQLite's options itself"
        )


def _postgres_query(url: URL) -> dict[str, str | tuple[str, ...]]:
    query = dict(url.query)
    for name in query:
        if name in _FROM_ENVIRONMENT:
            raise ValueError(f"option '{name}' is not read from the URL by asyncpg; set {_FROM_ENVIRONMENT[name]}")
        if name in _KEYTURN_OWN:
            raise ValueError(f"option '{name}' is not supported ({_KEYTURN_OWN[name]})")
        if name not in _POSTGRES_OPTIONS:
            raise ValueError(f"unknown option '{name}'; PostgreSQL URLs take {', '.join(_POSTGRES_OPTIONS)}")
    attrs = query.get("target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise ValueError(f"target_session_attrs must be one of {', '.join(SESSION_ATTRS)}")
    size = query.get("prepared_statement_cache_size")
    if size is not None and not (isinstance(size, str) and size.isdigit()):
        raise ValueError("prepared_statement_cache_size must be a whole number")
    if "sslmode" in query and "ssl" in query:
        raise ValueError("give one of 'sslmode' and 'ssl', not both")
    mode = query.pop("sslmode", None) or query.pop("ssl", None)
    if mode is None:
        return query
    if not isinstance(mode, str) or mode not in SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
    return {**query, "ssl": mode}


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.partition("://")[0] + "://..."
