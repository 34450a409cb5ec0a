"""Integration tests of signing keys between the store and the ring, on a real SQLite file and PostgreSQL database."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from keyturn.core.errors import UnknownKey
from keyturn.core.keys import SigningKey
from keyturn.core.tokens import issue_access_token
from keyturn.server.service import Client, Service
from keyturn.verify import Verifier
from tests.conftest import Clock, make_settings
from tests.helpers import fetch

pytestmark = pytest.mark.anyio

PW = "correct horse battery staple"


async def test_first_key_is_created_once_even_when_started_concurrently(database_url: str, clock: Clock) -> None:
    """Several services starting at once on one database make exactly one key."""
    settings = make_settings(database_url)
    first = Service(settings, clock=clock)
    await first.store.db.migrate()
    services = [Service(settings, clock=clock) for _ in range(4)]
    await asyncio.gather(*(s.start() for s in services))
    for s in [first, *services]:
        await s.close()
    assert await fetch(database_url, "SELECT count(*) FROM signing_keys") == [(1,)]


async def test_private_keys_are_encrypted_at_rest(service: Service, database_url: str) -> None:
    """The stored blob does not contain the private key, and another secret cannot open it."""
    ring = await service.ctx.keys.ring(service.ctx.clock())
    key = ring.signer(service.ctx.clock())
    der = key.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    [(blob,)] = await fetch(database_url, "SELECT private_sealed FROM signing_keys")
    assert der not in blob
    assert der[-32:] not in blob
    other = Service(make_settings(database_url, secret=secrets.token_urlsafe(48)))
    try:
        with pytest.raises(Exception, match="cannot be decrypted"):
            await other.ctx.keys.ring(service.ctx.clock())
    finally:
        await other.close()


async def test_the_key_manager_is_the_verifier_key_source_and_finds_another_instances_key(
    service: Service, clock: Clock
) -> None:
    """Verifier(keys=KeyManager) verifies the service's tokens, and a token of a key another instance
    made since the ring was read verifies after one reload for its kid (the retry lives in Verifier)."""
    settings = service.settings
    verifier = Verifier(
        settings.issuer, settings.token_audience, keys=service.ctx.keys, leeway=settings.leeway, cache_size=0
    )
    signer = (await service.ctx.keys.ring(clock())).signer(clock())
    assert (await verifier.verify_async(mint(service, signer), now=clock())).sub == "alice"
    other = Service(settings, clock=clock)
    try:
        async with other.store.write() as tx:
            made = await other.ctx.keys.rotate(tx, clock(), timedelta(0))
    finally:
        await other.close()
    clock.advance(3)  # the ring is not stale yet (5 s), but a look for an unknown kid is allowed (2 s)
    assert (await verifier.verify_async(mint(service, made), now=clock())).sub == "alice"
    with pytest.raises(TypeError, match="verify_async"):  # KeyManager answers only async
        verifier.verify(mint(service, signer), now=clock())


def mint(service: Service, key: SigningKey) -> str:
    s = service.settings
    token, _ = issue_access_token(
        key, issuer=s.issuer, audience=s.token_audience, subject="alice", session_id="s", client_id="keyturn",
        scope="", now=service.ctx.clock(), ttl=timedelta(minutes=5),
    )  # fmt: skip
    return token


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


async def test_keys_stay_published_while_the_database_is_down(clock: Clock, request: pytest.FixtureRequest) -> None:
    """PostgreSQL stopped: the JWKS keeps serving the last keys read (verifiers keep working), /readyz
    answers 503, and when the server is back the keys are read again without a restart."""
    import httpx

    from keyturn.server.http import create_app
    from tests.postgres import PostgresServer

    if "postgresql" not in request.config.getoption("backends"):
        pytest.skip("PostgreSQL backend not selected")
    server = PostgresServer()
    try:
        server.start()
        settings = make_settings(await asyncio.to_thread(server.create_database, "keys"), db_timeout="2s")
        svc = Service(settings, clock=clock)
        await svc.start()
        transport = httpx.ASGITransport(app=create_app(settings, service=svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = (await client.get("/.well-known/jwks.json")).json()
            server.stop("fast")
            clock.advance(60)  # the ring is stale: a reload is due, and fails
            during = await client.get("/.well-known/jwks.json")
            assert (during.status_code, during.json()) == (200, before)
            assert (await client.get("/readyz")).status_code == 503
            server.start()
            clock.advance(60)
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/.well-known/jwks.json")).json() == before
        await svc.close()
    finally:
        server.destroy()
