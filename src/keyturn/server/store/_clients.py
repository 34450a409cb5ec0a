"""The queries on the OAuth client registry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ...core.errors import InvalidRequest
from ._queries import Queries, values
from .records import ClientRecord
from .schema import clients

__all__ = ["ClientQueries"]


class ClientQueries(Queries):
    async def insert_client(self, client: ClientRecord) -> None:
        """Raises ``InvalidRequest`` when the client id is taken."""
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(clients).values(**values(client)))
        except IntegrityError:
            raise InvalidRequest(f"A client named {client.client_id!r} exists.", reason="client_exists") from None

    async def client(self, client_id: str) -> ClientRecord | None:
        """The client named ``client_id`` (whatever a caller sent: no id that cannot be one is looked up)."""
        if not _storable(client_id):
            return None
        row = (await self._conn.execute(_CLIENT, {"cid": client_id})).first()
        return None if row is None else ClientRecord(**row._asdict())

    async def lock_client(self, client_id: str) -> ClientRecord | None:
        """The client's row, locked until this transaction ends (every change to a client takes it)."""
        if not _storable(client_id):
            return None
        row = (await self._conn.execute(_CLIENT.with_for_update(), {"cid": client_id})).first()
        return None if row is None else ClientRecord(**row._asdict())

    async def list_clients(self, limit: int = 1000) -> list[ClientRecord]:
        rows = await self._conn.execute(select(clients).order_by(clients.c.client_id).limit(limit))
        return [ClientRecord(**r._asdict()) for r in rows]

    async def set_client_secret(self, client_id: str, secret_mac: str, now: datetime) -> None:
        stmt = update(clients).where(clients.c.client_id == client_id)
        await self._conn.execute(stmt.values(secret_mac=secret_mac, secret_rotated_at=now))

    async def end_client_grant(
        self, client: ClientRecord, now: datetime, reason: str, *, tokens_until: datetime, disable: bool = False
    ) -> uuid.UUID | None:
        """End every access token the client holds: publish its grant to the revocation feed with
        this transaction, draw a new one, and (``disable``) disable the client; returns the new
        grant. None when the client's grant is no longer ``client.grant_id`` (another transaction
        ended it): nothing is done."""
        fresh = uuid.uuid4()
        changes: dict[str, object] = {"grant_id": fresh}
        if disable:
            changes["disabled_at"] = now
        stmt = update(clients).where(clients.c.client_id == client.client_id, clients.c.grant_id == client.grant_id)
        if (await self._conn.execute(stmt.values(**changes))).rowcount != 1:
            return None
        self.end_later([client.grant_id], now, tokens_until, reason)
        return fresh

    async def enable_client(self, client_id: str) -> None:
        await self._conn.execute(update(clients).where(clients.c.client_id == client_id).values(disabled_at=None))


_CLIENT = select(clients).where(clients.c.client_id == bindparam("cid"))


def _storable(client_id: str) -> bool:
    """Whether ``client_id`` could be a stored id: at most the column's 64 characters, and no NUL
    (which PostgreSQL's text refuses with an error, where no row is the answer)."""
    return 0 < len(client_id) <= 64 and "\x00" not in client_id
