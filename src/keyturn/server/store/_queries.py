"""What every group of queries shares: the open connection, and records in and out as plain values."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Queries", "values"]


class Queries:
    """A group of queries run on one open transaction (``Tx`` combines them)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn


def values(record: Any) -> dict[str, Any]:
    """A record's fields by name (``dataclasses.asdict`` deep-copies every value: far slower)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}
