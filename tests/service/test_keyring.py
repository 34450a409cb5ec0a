"""Integration tests of signing keys between the store and the ring, on a real SQLite file."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from keyturn.errors import UnknownKey
from keyturn.service import Client, Service
from tests.conftest import Clock, make_settings

pytestmark = pytest.mark.anyio

PW = "correct horse battery staple"


async def test_first_key_is_created_once_even_when_started_concurrently(db_path: Path, clock: Clock) -> None:
    """Several services starting at once on one database make exactly one key."""
    settings = make_settings(db_path)
    first = Service(settings, clock=clock)
    await first.store.db.migrate()
    services = [Service(settings, clock=clock) for _ in range(4)]
    await asyncio.gather(*(s.start() for s in services))
    for s in [first, *services]:
        await s.close()
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM signing_keys").fetchone() == (1,)


async def test_private_keys_are_encrypted_at_rest(service: Service, db_path: Path) -> None:
    """The stored blob does not contain the private key, and another secret cannot open it."""
    ring = await service.ctx.keys.ring(service.ctx.clock())
    key = ring.signer(service.ctx.clock())
    der = key.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with sqlite3.connect(db_path) as db:
        (blob,) = db.execute("SELECT private_sealed FROM signing_keys").fetchone()
    assert der not in blob
    assert der[-32:] not in blob
    other = Service(make_settings(db_path, secret=secrets.token_urlsafe(48)))
    try:
        with pytest.raises(Exception, match="cannot be decrypted"):
            await other.ctx.keys.ring(service.ctx.clock())
    finally:
        await other.close()


async def test_rotation_keeps_old_tokens_valid_until_they_expire(service: Service, clock: Clock) -> None:
    """After rotation the new key signs; the old key stays published until its tokens have expired."""
    await service.auth.create_user("alice", PW, Client())
    old_pair = await service.auth.login("alice", PW, Client())
    old_kid = (await service.admin.keys())[0].kid
    new_key = await service.admin.rotate_key()  # published now, signs after the 10 min delay
    assert (await service.auth.login("alice", PW, Client())).access_token.count(".") == 2
    clock.advance(10 * 60)
    ring = await service.ctx.keys.ring(clock(), force=True)
    assert ring.signer(clock()).kid == new_key.kid
    assert {k.kid for k in ring.published(clock())} == {old_kid, new_key.kid}
    fresh = await service.auth.refresh(old_pair.refresh_token, Client())
    await service.auth.authenticate(fresh.access_token)
    clock.advance(15 * 60 + 5)
    ring = await service.ctx.keys.ring(clock(), force=True)
    assert [k.kid for k in ring.published(clock())] == [new_key.kid]
    with pytest.raises(UnknownKey):
        ring.get(old_kid, clock())
