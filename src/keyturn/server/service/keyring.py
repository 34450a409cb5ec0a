"""Signing keys between the store and the core key ring: creation, rotation, caching."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta

from ...core.errors import Unavailable
from ...core.keys import KeyRing, SigningKey, generate_key, open_private_key, seal_private_key
from ...core.masterkey import MasterKey
from ..config import Settings
from ..store import KeyRecord, Store, Tx

__all__ = ["KeyManager"]

RELOAD_EVERY = timedelta(seconds=5)  # how soon a key rotated by another process is used
UNKNOWN_KID_RELOAD = timedelta(seconds=2)


class KeyManager:
    """Loads the key ring from the store and keeps it fresh; the store is the truth.

    A :class:`~keyturn.core.keys.KeySource` (async only), so the server verifies its tokens with
    ``keyturn.verify.Verifier`` as every resource server does.
    """

    def __init__(self, store: Store, master: MasterKey, settings: Settings) -> None:
        self._store = store
        self._master = master
        self._settings = settings
        self._ring: KeyRing | None = None
        self._loaded_at: datetime | None = None
        self._opened: dict[str, SigningKey] = {}
        self._lock = asyncio.Lock()

    async def ensure_signing_key(self, now: datetime) -> SigningKey | None:
        """Create the first signing key if none can sign; returns it, or None if one existed.

        Runs in one write transaction under a lock, so instances starting at once on one
        database create one key.
        """
        async with self._store.write() as tx:
            await tx.lock("signing-keys")
            ring = self._to_ring(await tx.signing_keys())
            if any(k.retired_at is None for k in ring.published(now)):
                return None
            key = await asyncio.to_thread(generate_key, self._settings.signing_alg, now=now)
            await self._insert(tx, key)
        self._ring = None
        return key

    async def rotate(self, tx: Tx, now: datetime, delay: timedelta) -> SigningKey:
        """Publish a new key now; it starts signing after ``delay``."""
        key = await asyncio.to_thread(generate_key, self._settings.signing_alg, now=now, activates_at=now + delay)
        await self._insert(tx, key)
        self._ring = None
        return key

    async def ring_async(self, now: datetime, kid: object = None) -> KeyRing:
        """The ring to verify with (``KeySource``, for ``Verifier(keys=...)``): see :meth:`ring`."""
        return await self.ring(now, kid=kid)

    async def ring(self, now: datetime, *, kid: object = None, force: bool = False) -> KeyRing:
        """The current ring, reloaded when stale or when ``kid`` is not in it (rate-limited)."""
        ring, loaded = self._ring, self._loaded_at
        if (
            force
            or ring is None
            or loaded is None
            or now - loaded > RELOAD_EVERY
            or (kid is not None and kid not in ring and now - loaded > UNKNOWN_KID_RELOAD)
        ):
            async with self._lock:
                try:
                    async with self._store.read() as tx:
                        records = await tx.signing_keys()
                except Unavailable:
                    if ring is None:
                        raise
                    # Keep signing and publishing the keys we have; try the database again later.
                    self._loaded_at = now
                    return ring
                self._ring, self._loaded_at = self._to_ring(records), now
            return self._ring
        return ring

    async def _insert(self, tx: Tx, key: SigningKey) -> None:
        assert key.created_at is not None
        assert key.activates_at is not None
        await tx.insert_key(
            KeyRecord(
                kid=key.kid,
                alg=key.alg,
                public_jwk=json.dumps(key.public_jwk(), sort_keys=True),
                private_sealed=seal_private_key(key, self._master),
                created_at=key.created_at,
                activates_at=key.activates_at,
            )
        )

    def _to_ring(self, records: list[KeyRecord]) -> KeyRing:
        return KeyRing(
            (self._open(r) for r in records),
            token_ttl=self._settings.access_token_ttl,
            leeway=self._settings.leeway,
        )

    def _open(self, record: KeyRecord) -> SigningKey:
        cached = self._opened.get(record.kid)
        if cached is None:
            public = SigningKey.from_jwk({**json.loads(record.public_jwk), "alg": record.alg})
            private = open_private_key(record.private_sealed, record.kid, self._master)
            cached = replace(public, private_key=private, created_at=record.created_at)
            self._opened[record.kid] = cached
        return replace(cached, activates_at=record.activates_at, retired_at=record.retired_at)
