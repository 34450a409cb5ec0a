"""Integration tests of keyturn.server.service.oauth (the OAuth use cases of registered clients) on
a real database (SQLite file and PostgreSQL), with a hand-moved clock: the ``client_credentials``
grant and its claims and refusals, RFC 7662 introspection of every kind of token in every state
(without side effects), RFC 7009 revocation on behalf of a client, a refresh by the wrong client,
and a disable racing many grants on two service instances of one database."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest

from keyturn.core.clients import SECRET_BASIC, Presented
from keyturn.core.errors import InvalidClient, InvalidGrant, InvalidScope, UnauthorizedClient
from keyturn.core.passwords import Passwords
from keyturn.server.service import MachineToken, Registered, Service, TokenPair
from tests.conftest import ISSUER, Clock, make_settings
from tests.server.service.usecases import PW, WHO, events

pytestmark = pytest.mark.anyio

SCOPE = "invoices:read invoices:write"


def claims(token: str) -> dict[str, Any]:
    """The payload of an access token, read without verifying it (the tests verify it otherwise)."""
    payload = token.split(".")[1]
    found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return found


async def billing(service: Service, **options: object) -> Registered:
    return await service.clients.add("billing", scope=SCOPE, **options)  # type: ignore[arg-type]


async def machine_token(service: Service, made: Registered, scope: tuple[str, ...] | None = None) -> MachineToken:
    return await service.oauth.client_credentials(made.client, scope, WHO)


async def alice(service: Service) -> TokenPair:
    await service.auth.create_user("alice", PW, WHO)
    return await service.auth.login("alice", PW, WHO)


async def active(service: Service, token: str) -> bool:
    answer = await service.oauth.introspect(token)
    assert answer["active"] is True or answer == {"active": False}, answer
    return bool(answer["active"])


async def generation(service: Service, pair: TokenPair) -> int:
    async with service.store.read() as tx:
        found = await tx.session_and_user(uuid.UUID(pair.session_id))
    assert found is not None
    return found[0].generation


# --- client_credentials --------------------------------------------------------------------------


async def test_a_machine_token_names_the_client_its_grant_and_audience(service: Service, clock: Clock) -> None:
    """RFC 9068 §2.2: sub = client_id = the client's id, sid = its grant id, aud = its registered
    audience (a string when it is one), its whole scope, this issuer, the access-token lifetime; it
    verifies for that audience; the grant is audited as client_token on the grant."""
    made = await billing(service, audience="https://api.test")
    issued = await machine_token(service, made)
    assert (issued.token_type, issued.expires_in, issued.scope) == ("Bearer", 900, SCOPE)
    found = claims(issued.access_token)
    assert (found["sub"], found["client_id"], found["sid"]) == ("billing", "billing", str(made.client.grant_id))
    assert (found["aud"], found["scope"], found["iss"]) == ("https://api.test", SCOPE, ISSUER)
    assert found["exp"] - found["iat"] == 900
    verified = await service.ctx.verifier_for("https://api.test").verify_async(issued.access_token, now=clock())
    assert verified.sub == "billing"
    async with service.store.read() as tx:
        (record, *_) = await tx.audit_events(limit=1)
    assert (record.event, record.session_id, record.user_id) == ("client_token", made.client.grant_id, None)
    assert record.detail == {"client_id": "billing", "scope": SCOPE}


async def test_several_audiences_are_a_list(service: Service) -> None:
    """A client registered for two APIs gets aud as a list of both, in order."""
    made = await billing(service, audience="https://a.test https://b.test")
    assert claims((await machine_token(service, made)).access_token)["aud"] == ["https://a.test", "https://b.test"]


async def test_a_machine_token_can_be_narrowed_to_part_of_the_clients_scope(service: Service) -> None:
    """scope=invoices:read of a client granted read and write: a token with read only."""
    made = await billing(service)
    issued = await machine_token(service, made, ("invoices:read",))
    assert issued.scope == claims(issued.access_token)["scope"] == "invoices:read"


@pytest.mark.parametrize("wanted", [("admin",), ("invoices:read", "profile"), ("invoices",)])
async def test_a_scope_beyond_the_clients_is_invalid_scope_and_issues_nothing(
    service: Service, wanted: tuple[str, ...]
) -> None:
    """Asking for any scope the client was not registered with: invalid_scope naming it; no grant audited."""
    made = await billing(service)
    with pytest.raises(InvalidScope) as refused:
        await machine_token(service, made, wanted)
    missing = " ".join(w for w in wanted if w not in SCOPE.split())
    assert refused.value.description == f"Not granted: {missing}."
    assert await events(service) == [("client_added", "ok")]


async def test_a_client_registered_without_the_grant_is_unauthorized_client(service: Service) -> None:
    """A resource server registered with --no-grant may introspect, but gets no token."""
    made = await billing(service, grant_types=())
    with pytest.raises(UnauthorizedClient) as refused:
        await machine_token(service, made)
    assert refused.value.code == "unauthorized_client"
    assert await events(service) == [("client_added", "ok")]


async def test_a_client_disabled_after_it_authenticated_gets_no_token(service: Service) -> None:
    """The client is read again in the grant's transaction: disabled between authentication and
    issue is invalid_client client_disabled, and nothing is issued or audited as issued."""
    made = await billing(service)
    authenticated = await service.clients.authenticate(Presented("billing", made.secret, SECRET_BASIC))
    assert authenticated is not None
    await service.clients.disable("billing")
    with pytest.raises(InvalidClient) as refused:
        await service.oauth.client_credentials(authenticated, None, WHO)
    assert refused.value.reason == "client_disabled"
    assert "client_token" not in [event for event, _ in await events(service)]


# --- introspection -------------------------------------------------------------------------------


async def test_a_users_access_token_introspects_active_with_its_username(service: Service, clock: Clock) -> None:
    """RFC 7662 §2.2: active, Bearer, the scope, the first-party client, the user's id and name,
    aud as a list, iss, exp, iat, jti and the session."""
    pair = await alice(service)
    answer = await service.oauth.introspect(pair.access_token)
    found = claims(pair.access_token)
    assert answer == {
        "active": True, "token_type": "Bearer", "scope": "profile", "client_id": "keyturn", "sub": found["sub"],
        "aud": [ISSUER], "iss": ISSUER, "exp": found["exp"], "iat": found["iat"], "jti": found["jti"],
        "sid": pair.session_id, "username": "alice",
    }  # fmt: skip


async def test_a_users_access_token_is_inactive_at_once_after_logout(service: Service) -> None:
    """Introspection reads the session now: a logout a moment ago makes its token inactive."""
    pair = await alice(service)
    await service.auth.logout(await service.auth.authenticate(pair.access_token), None, WHO)
    assert await service.oauth.introspect(pair.access_token) == {"active": False}


async def test_an_expired_access_token_is_inactive(service: Service, clock: Clock) -> None:
    """Past exp and the leeway, a user's and a machine's tokens are inactive; a second before, active."""
    pair = await alice(service)
    issued = await machine_token(service, await billing(service))
    clock.advance(900 + 5 - 1)
    assert await active(service, pair.access_token)
    assert await active(service, issued.access_token)
    clock.advance(2)
    assert not await active(service, pair.access_token)
    assert not await active(service, issued.access_token)


async def test_a_refresh_token_is_active_exactly_when_a_refresh_would_succeed(service: Service, clock: Clock) -> None:
    """The current refresh token, and the previous one inside the grace window, are active (with
    the user, the session and the client); one two generations old is inactive."""
    first = await alice(service)
    second = await service.auth.refresh(first.refresh_token, WHO)
    third = await service.auth.refresh(second.refresh_token, WHO)
    current = await service.oauth.introspect(third.refresh_token)
    assert {k: current[k] for k in ("active", "client_id", "username", "sid", "scope", "iss")} == {
        "active": True, "client_id": "keyturn", "username": "alice", "sid": first.session_id, "scope": "profile",
        "iss": ISSUER,
    }  # fmt: skip
    assert current["sub"] == claims(first.access_token)["sub"]
    assert current["iat"] == int(clock().timestamp()) < current["exp"]
    assert await active(service, second.refresh_token)
    assert not await active(service, first.refresh_token)
    clock.advance(11)
    assert not await active(service, second.refresh_token)
    assert await active(service, third.refresh_token)


async def test_introspecting_an_old_refresh_token_is_not_reuse(service: Service, clock: Clock) -> None:
    """Introspection has no side effect: an old refresh token reported inactive did not revoke the
    session (a refresh would have); the current token still rotates, nothing was audited."""
    first = await alice(service)
    second = await service.auth.refresh(first.refresh_token, WHO)
    clock.advance(11)
    before = await events(service)
    for _ in range(3):
        assert not await active(service, first.refresh_token)
    assert await events(service) == before
    assert await active(service, second.access_token)
    third = await service.auth.refresh(second.refresh_token, WHO)
    assert third.session_id == first.session_id


async def test_an_ended_session_and_an_expired_session_have_inactive_refresh_tokens(
    service: Service, clock: Clock
) -> None:
    """After logout, and past the idle lifetime (7 days), the refresh token is inactive."""
    pair = await alice(service)
    idle = await service.auth.login("alice", PW, WHO)
    await service.auth.logout(None, pair.refresh_token, WHO)
    assert not await active(service, pair.refresh_token)
    assert await active(service, idle.refresh_token)
    clock.advance(7 * 24 * 3600 + 1)
    assert not await active(service, idle.refresh_token)


@pytest.mark.parametrize(
    "token_of",
    [
        lambda pair: "garbage",
        lambda pair: "",
        lambda pair: "a.b.c",
        lambda pair: "e30.e30.e30",
        lambda pair: "x" * 20_000,
        lambda pair: "x.y." + "z" * 20_000,
        lambda pair: "e30." + base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30",
        lambda pair: "e30." + base64.urlsafe_b64encode(b'{"client_id": "bill\\u0000ing"}').decode() + ".e30",
        lambda pair: "kt_rt_" + "A" * 60,
        lambda pair: pair.refresh_token[:-2] + ("AA" if not pair.refresh_token.endswith("AA") else "BB"),
        lambda pair: pair.access_token[:-4] + "AAAA",
    ],
    ids=["garbage", "empty", "dots", "empty-json", "long", "long-jwt", "deeply-nested-json", "nul-client-id",
         "unknown-refresh",
         "forged-refresh", "bad-signature"],
)  # fmt: skip
async def test_anything_not_a_live_token_of_ours_is_inactive(service: Service, token_of: Any) -> None:
    """{"active": false} and nothing else: no error, no detail that tells why."""
    pair = await alice(service)
    assert await service.oauth.introspect(token_of(pair)) == {"active": False}
    assert await active(service, pair.access_token)


async def test_a_machine_token_introspects_active_without_a_username(service: Service) -> None:
    """A machine's token: active, its client as sub and client_id, aud as a list, its grant as sid."""
    made = await billing(service)
    issued = await machine_token(service, made)
    answer = await service.oauth.introspect(issued.access_token)
    found = claims(issued.access_token)
    assert answer == {
        "active": True, "token_type": "Bearer", "scope": SCOPE, "client_id": "billing", "sub": "billing",
        "aud": [ISSUER], "iss": ISSUER, "exp": found["exp"], "iat": found["iat"], "jti": found["jti"],
        "sid": str(made.client.grant_id),
    }  # fmt: skip


async def test_a_machine_token_is_inactive_after_disable_or_its_own_revocation(service: Service) -> None:
    """Disabling the client ends its token; so does the client revoking one of its own tokens (every
    token of the grant); the tokens issued after the revocation are active."""
    made = await billing(service)
    first, sibling = await machine_token(service, made), await machine_token(service, made)
    await service.oauth.revoke(first.access_token, None, made.client, WHO)
    assert not await active(service, first.access_token)
    assert not await active(service, sibling.access_token)
    after = await machine_token(service, made)
    assert await active(service, after.access_token)
    await service.clients.disable("billing")
    assert not await active(service, after.access_token)


# --- revocation ----------------------------------------------------------------------------------


async def test_a_machine_revoking_its_own_token_ends_its_grant_and_may_ask_again(service: Service) -> None:
    """RFC 7009 for a machine's own access token: one feed entry for the grant, reason
    client_revoked, audited; the client gets a new grant, and a new token carries it and works.
    Revoking the same token again ends nothing more."""
    made = await billing(service)
    issued = await machine_token(service, made)
    await service.oauth.revoke(issued.access_token, "access_token", made.client, WHO)
    await service.oauth.revoke(issued.access_token, None, made.client, WHO)
    entries = (await service.feed.page()).entries
    assert [(e.sid, e.reason) for e in entries] == [(str(made.client.grant_id), "client_revoked")]
    record = await service.clients.get("billing")
    assert record.grant_id != made.client.grant_id
    assert record.disabled_at is None
    again = await machine_token(service, made)
    assert claims(again.access_token)["sid"] == str(record.grant_id)
    assert await active(service, again.access_token)
    assert ("client_token_revoked", "ok") in await events(service)


async def test_a_token_of_another_client_is_refused_as_other_client(service: Service) -> None:
    """RFC 7009 §2.1: a client may revoke only tokens issued to it. A user's access or refresh
    token (issued to the first-party client) revoked by a registered client, a machine's token
    revoked by another machine or by the first-party client: invalid_grant other_client, and
    every one of those tokens stays active."""
    pair = await alice(service)
    made, other = await billing(service), await service.clients.add("reports")
    issued = await machine_token(service, made)
    attempts = [(pair.access_token, other.client), (pair.refresh_token, other.client),
                (issued.access_token, other.client), (issued.access_token, None)]  # fmt: skip
    for token, client in attempts:
        with pytest.raises(InvalidGrant) as refused:
            await service.oauth.revoke(token, None, client, WHO)
        assert (refused.value.reason, refused.value.description) == (
            "other_client", "The token was issued to another client.",
        )  # fmt: skip
    for token in (pair.access_token, pair.refresh_token, issued.access_token):
        assert await active(service, token)
    assert (await service.feed.page()).entries == ()


async def test_a_client_revoking_what_is_no_live_token_is_no_error(service: Service) -> None:
    """RFC 7009 §2.2: garbage, or a token already ended, is answered like a valid one; nothing ends."""
    made = await billing(service)
    issued = await machine_token(service, made)
    for token in ("garbage", "a.b.c", "kt_rt_" + "A" * 60, issued.access_token[:-4] + "AAAA"):
        await service.oauth.revoke(token, None, made.client, WHO)
    assert await active(service, issued.access_token)
    assert (await service.feed.page()).entries == ()


async def test_a_refresh_by_another_client_is_other_client_and_rotates_nothing(service: Service, clock: Clock) -> None:
    """A registered client presenting a first-party session's refresh token: invalid_grant
    other_client, the session did not move, so past the grace window the token still rotates."""
    pair = await alice(service)
    await billing(service)
    with pytest.raises(InvalidGrant) as refused:
        await service.auth.refresh(pair.refresh_token, WHO, client_id="billing")
    assert refused.value.reason == "other_client"
    assert await generation(service, pair) == 0
    clock.advance(11)
    rotated = await service.auth.refresh(pair.refresh_token, WHO, client_id="keyturn")
    assert rotated.session_id == pair.session_id
    assert await generation(service, pair) == 1


# --- a disable racing grants ---------------------------------------------------------------------


async def test_no_token_granted_around_a_disable_survives_it(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Workers on two service instances of one database ask for client_credentials tokens back to
    back while the second instance disables the client (once some tokens are out, so grants are in
    flight as it commits): each worker goes on until refused client_disabled; every token issued
    carries the grant the feed published (once), and neither instance introspects it as active."""
    settings = make_settings(database_url)
    one = Service(settings, passwords=fast_passwords, clock=clock)
    two = Service(settings, passwords=fast_passwords, clock=clock)
    await one.start()
    await two.start()
    issued: list[MachineToken] = []
    some_out = asyncio.Event()
    try:
        made = await billing(one)

        async def worker(svc: Service) -> str:
            for _ in range(500):  # a bound, in case the disable never takes effect (the test fails then)
                try:
                    issued.append(await svc.oauth.client_credentials(made.client, None, WHO))
                except InvalidClient as exc:
                    return exc.reason
                if len(issued) >= 20:
                    some_out.set()
            return "never refused"

        async def disable() -> None:
            await some_out.wait()
            await two.clients.disable("billing")

        *reasons, _ = await asyncio.gather(*(worker((one, two)[i % 2]) for i in range(12)), disable())
        assert reasons == ["client_disabled"] * 12
        entries = (await one.feed.page()).entries
        assert [(e.sid, e.reason) for e in entries] == [(str(made.client.grant_id), "client_disabled")]
        assert len(issued) >= 20
        for token in issued:
            assert claims(token.access_token)["sid"] == entries[0].sid
            for svc in (one, two):
                assert await svc.oauth.introspect(token.access_token) == {"active": False}
    finally:
        await one.close()
        await two.close()
