"""What every group of queries shares: the open connection, and records in and out as plain values."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Queries", "values"]


class Queries:
    """A group of queries run on one open transaction (``Tx`` combines them)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._ended: list[dict[str, Any]] = []  # feed entries to write last (``_revocations.py``)
        self.committed: list[Callable[[], None]] = []
        """Called in order once this transaction has committed (``Store.write``); never after a rollback."""

    def end_later(self, ids: list[uuid.UUID], at: datetime, until: datetime, reason: str) -> None:
        """Queue the revocation-feed entries of sessions this transaction ended; the store writes
        them when the transaction's work is done (``RevocationQueries.publish_ended``)."""
        self._ended.extend({"session_id": sid, "at": at, "until": until, "reason": reason} for sid in ids)


def values(record: Any) -> dict[str, Any]:
    """A record's fields by name (``dataclasses.asdict`` deep-copies every value: far slower)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}
