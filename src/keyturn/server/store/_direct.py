"""The hot statements, run on SQLite's driver directly (issue 18).

Running an already compiled statement through SQLAlchemy still costs more than SQLite takes to run
it, for an indexed read or write with its pages in the cache: the compiled-cache lookup, an
execution context, generic parameter and result processing, a ``Result`` and its rows. For the few
statements behind every authenticated request and every refresh (the session and its user, the
rotation, the audit row), ``Direct`` keeps what SQLAlchemy does for them and drops the rest:

- SQLAlchemy's compiler writes the SQL, once per set of parameter names;
- every value is converted in and out by the processors of its column's type for the dialect, the
  ones SQLAlchemy itself would apply (UUIDs, aware UTC datetimes, JSON);
- a driver error becomes SQLAlchemy's ``DBAPIError``, as from ``execute``, so the store's outage
  handling is unchanged.

The statement runs on the transaction's own ``sqlite3`` connection (``_sqlite.InlineConnection``)
with named parameters, never text built from values. PostgreSQL's statements go through
SQLAlchemy as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

from ._sqlite import inline

__all__ = ["Direct"]

Processor = Callable[[Any], Any] | None
_NAMED = SQLiteDialect(paramstyle="named")  # compiles the SQL only; types are processed for the engine's dialect


class Direct:
    """One statement (a ``select`` or an ``insert``/``update``, with or without ``RETURNING``)."""

    def __init__(self, statement: Select[Any] | UpdateBase) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row, by column name, or None."""
        if conn.dialect.name != "sqlite":
            row = (await conn.execute(self.statement, dict(params))).first()
            return None if row is None else row._asdict()
        return self.first_on(inline(conn).sqlite, conn.dialect, params)

    def first_on(
        self, driver: sqlite3.Connection, dialect: Dialect, params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The first row, read on a ``sqlite3`` connection of its own (``_sqlite.Readers``)."""
        return self._compiled_for(dialect, params).run(driver, params, dialect)

    async def execute(self, conn: AsyncConnection, params: Mapping[str, Any]) -> None:
        """Run it for its effect."""
        if conn.dialect.name != "sqlite":
            await conn.execute(self.statement, dict(params))
            return
        self.first_on(inline(conn).sqlite, conn.dialect, params)

    def _compiled_for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        keys = tuple(params)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _Compiled(self.statement, keys, dialect)
        return compiled


class _Compiled:
    def __init__(self, statement: Select[Any] | UpdateBase, keys: tuple[str, ...], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=_NAMED, column_keys=list(keys))
        self.sql = compiled.string
        self.binds = [(name, _processor(bind.type, dialect, "bind")) for name, bind in compiled.binds.items()]
        self.columns = [(c.name, _processor(c.type, dialect, "result")) for c in statement.exported_columns]

    def run(self, driver: sqlite3.Connection, params: Mapping[str, Any], dialect: Dialect) -> dict[str, Any] | None:
        """Run the statement; its first row, if it returns any (an ``UPDATE ... RETURNING`` has made
        every change by then: SQLite does them all at the first step)."""
        values = {name: params[name] if f is None else f(params[name]) for name, f in self.binds}
        try:
            cursor = driver.execute(self.sql, values)
            try:
                row = cursor.fetchone()
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(
                self.sql, None, exc, sqlite3.Error, hide_parameters=True, dialect=dialect
            ) from exc
        if row is None:
            return None
        return {name: value if f is None else f(value) for (name, f), value in zip(self.columns, row, strict=True)}


def _processor(type_: Any, dialect: Dialect, kind: str) -> Processor:
    impl = type_.dialect_impl(dialect)
    found: Processor = impl.bind_processor(dialect) if kind == "bind" else impl.result_processor(dialect, None)
    return found
