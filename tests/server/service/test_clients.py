"""Integration tests of keyturn.server.service.clients (the client registry as the operator manages
it, and client authentication) on a real database (SQLite file and PostgreSQL), with a hand-moved
clock: registering and its refusals, the secret kept only as a MAC, every reason authentication
refuses, rotating a secret, disabling (which ends the client's tokens through the feed) and
enabling."""

from __future__ import annotations

import re

import pytest

from keyturn.core.clients import NONE, SECRET_BASIC, SECRET_POST, Presented
from keyturn.core.errors import InvalidClient, InvalidRequest, NotFound
from keyturn.server.service import Registered, Service
from tests.conftest import T0, Clock
from tests.helpers import fetch
from tests.server.service.usecases import WHO, events

pytestmark = pytest.mark.anyio


async def billing(service: Service, **options: object) -> Registered:
    """A machine client, ``billing``, registered with a secret sent by HTTP Basic."""
    return await service.clients.add("billing", scope="invoices:read invoices:write", **options)  # type: ignore[arg-type]


def basic(made: Registered, secret: str | None = None) -> Presented:
    return Presented(made.client.client_id, made.secret if secret is None else secret, SECRET_BASIC)


async def refused(service: Service, presented: Presented) -> InvalidClient:
    with pytest.raises(InvalidClient) as caught:
        await service.clients.authenticate(presented)
    return caught.value


# --- add -----------------------------------------------------------------------------------------


async def test_a_registered_client_has_its_defaults_a_secret_and_an_audit_row(service: Service) -> None:
    """The name defaults to the id, the audience to none of its own (the deployment's, read when a
    token is issued), the grant to client_credentials, the method to client_secret_basic; the scope
    is deduplicated; the secret is kt_cs_ and 43 characters; the registration is audited."""
    made = await service.clients.add("billing", scope="invoices:read invoices:read invoices:write")
    record = made.client
    assert re.fullmatch(r"kt_cs_[A-Za-z0-9_-]{43}", made.secret)
    assert (record.client_id, record.name, record.auth_method, record.grant_types) == (
        "billing", "billing", SECRET_BASIC, "client_credentials",
    )  # fmt: skip
    assert (record.scope, record.audience, record.disabled_at) == ("invoices:read invoices:write", "", None)
    assert record.created_at == record.secret_rotated_at == T0
    assert await service.clients.registered() == [record] == [await service.clients.get("billing")]
    assert await events(service) == [("client_added", "ok")]
    assert made.secret not in repr(made)


async def test_a_client_is_registered_with_what_the_operator_gave(service: Service) -> None:
    """Name, audiences (several), client_secret_post and no grant at all are kept as given."""
    made = await service.clients.add(
        "reports", name="Reporting", audience="https://a.test https://b.test", auth_method=SECRET_POST, grant_types=()
    )
    record = made.client
    assert (record.name, record.audience, record.auth_method, record.grant_types, record.scope) == (
        "Reporting", "https://a.test https://b.test", SECRET_POST, "", "",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("client_id", "options", "message"),
    [
        ("keyturn", {}, "'keyturn' is the first-party client (KEYTURN_CLIENT_ID)."),
        ("123e4567-e89b-12d3-a456-426614174000", {}, "a client id may not be a UUID (users' subjects are UUIDs)."),
        ("Billing", {}, "a client id is 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or"
                        " digit."),
        ("ab", {}, None),
        ("billing", {"scope": 'read "all"'}, "'\"all\"' is not a scope name (RFC 6749 §3.3)."),
        ("billing", {"audience": "https://a.test\\x"}, None),
        ("billing", {"auth_method": "none"}, "auth_method is one of: client_secret_basic, client_secret_post."),
        ("billing", {"auth_method": "private_key_jwt"}, None),
        ("billing", {"grant_types": ("client_credentials", "password")}, "grant_types are among: client_credentials."),
        ("billing", {"grant_types": ("refresh_token",)}, None),
        ("billing", {"name": "n" * 129}, "A client's name is at most 128 characters."),
    ],
    ids=["first-party", "uuid", "capital", "short", "scope", "audience", "method-none", "method-jwt", "password-grant",
         "refresh-grant", "long-name"],
)  # fmt: skip
async def test_a_client_that_cannot_be_registered_is_refused_with_its_reason(
    service: Service, client_id: str, options: dict[str, object], message: str | None
) -> None:
    """invalid_request bad_client, with a message naming the rule; nothing is stored or audited."""
    with pytest.raises(InvalidRequest) as caught:
        await service.clients.add(client_id, **options)  # type: ignore[arg-type]
    assert caught.value.reason == "bad_client"
    if message is not None:
        assert caught.value.description == message
    assert await service.clients.registered() == []
    assert await events(service) == []


async def test_a_taken_client_id_is_refused_and_the_first_secret_still_works(service: Service) -> None:
    """A second registration of an id is client_exists; the first client and its secret are untouched."""
    made = await billing(service)
    with pytest.raises(InvalidRequest) as caught:
        await service.clients.add("billing")
    assert caught.value.reason == "client_exists"
    assert await service.clients.authenticate(basic(made)) == made.client
    assert await events(service) == [("client_added", "ok")]


async def test_only_the_secrets_mac_is_stored_and_the_secret_is_in_no_row(service: Service, database_url: str) -> None:
    """The clients row holds the keyed MAC of the secret; neither the secret nor any part of its
    random text appears in any clients or audit row, after adding and after rotating."""
    made = await billing(service)
    rotated = await service.clients.rotate_secret("billing")
    await service.clients.disable("billing")
    rows = await fetch(database_url, "SELECT * FROM clients") + await fetch(database_url, "SELECT * FROM audit_events")
    text = repr(rows)
    for secret in (made.secret, rotated.secret):
        assert secret not in text
        assert secret.removeprefix("kt_cs_")[:16] not in text
    (mac,) = (await fetch(database_url, "SELECT secret_mac FROM clients"))[0]
    assert mac == service.ctx.client_secrets.digest(rotated.secret)


# --- authenticate --------------------------------------------------------------------------------


@pytest.mark.parametrize("presented", [Presented(None), Presented("keyturn")], ids=["nothing", "first-party-id"])
async def test_the_first_party_public_client_authenticates_as_none(service: Service, presented: Presented) -> None:
    """No client, or KEYTURN_CLIENT_ID without a secret, is the public client: None."""
    assert await service.clients.authenticate(presented) is None


async def test_a_registered_client_authenticates_by_its_method(service: Service) -> None:
    """The client's record for its secret by its registered method, Basic or post."""
    made = await billing(service)
    poster = await service.clients.add("poster", auth_method=SECRET_POST)
    assert await service.clients.authenticate(basic(made)) == made.client
    assert await service.clients.authenticate(Presented("poster", poster.secret, SECRET_POST)) == poster.client


async def test_each_refusal_of_client_authentication_names_its_reason(service: Service) -> None:
    """unknown_client, missing_credentials, public_client, bad_credentials (a wrong secret, another
    client's, an unknown client with a secret: one answer, no oracle), wrong_method, client_disabled."""
    made = await billing(service)
    other = await service.clients.add("reports")
    cases = [
        (Presented("nobody"), "unknown_client", "Unknown client."),
        (Presented("x" * 65), "unknown_client", "Unknown client."),
        (Presented("bill\x00ing"), "unknown_client", "Unknown client."),  # PostgreSQL text holds no NUL
        (Presented("billing"), "missing_credentials", "This client must authenticate."),
        (Presented("keyturn", "anything", SECRET_BASIC), "public_client",
         "The first-party client is public: send no secret."),
        (Presented("keyturn", "", SECRET_POST), "public_client", "The first-party client is public: send no secret."),
        (basic(made, made.secret + "x"), "bad_credentials", "Client authentication failed."),
        (basic(made, other.secret), "bad_credentials", "Client authentication failed."),
        (basic(made, ""), "bad_credentials", "Client authentication failed."),
        (Presented("nobody", made.secret, SECRET_BASIC), "bad_credentials", "Client authentication failed."),
        (Presented(None, made.secret, SECRET_POST), "bad_credentials", "Client authentication failed."),
        (Presented("b" * 65, made.secret, SECRET_BASIC), "bad_credentials", "Client authentication failed."),
        (Presented("billing\x00", made.secret, SECRET_BASIC), "bad_credentials", "Client authentication failed."),
        (Presented("billing", made.secret, SECRET_POST), "wrong_method",
         "Authenticate with client_secret_basic, as registered."),
    ]  # fmt: skip
    for presented, reason, description in cases:
        exc = await refused(service, presented)
        assert (exc.code, exc.reason, exc.description) == ("invalid_client", reason, description), presented
    await service.clients.disable("billing")
    exc = await refused(service, basic(made))
    assert (exc.reason, exc.description) == ("client_disabled", "The client is disabled.")


async def test_a_wrong_method_is_told_only_with_the_right_secret(service: Service) -> None:
    """Which method a client was registered with is said only to whoever has its secret."""
    await billing(service)
    assert (await refused(service, Presented("billing", "guess", SECRET_POST))).reason == "bad_credentials"
    assert (await refused(service, Presented("billing", None, NONE))).reason == "missing_credentials"


# --- rotate, disable, enable ---------------------------------------------------------------------


async def test_rotating_a_secret_refuses_the_old_one_at_once_and_keeps_tokens(service: Service, clock: Clock) -> None:
    """The new secret works, the old one is bad_credentials at once; a token issued before the
    rotation stays active (rotation is not revocation); the rotation is dated and audited."""
    made = await billing(service)
    token = await service.oauth.client_credentials(made.client, None, WHO)
    clock.advance(30)
    rotated = await service.clients.rotate_secret("billing")
    assert rotated.secret != made.secret
    assert (await service.clients.get("billing")).secret_rotated_at == clock()
    assert (await refused(service, basic(made))).reason == "bad_credentials"
    assert await service.clients.authenticate(basic(rotated)) == rotated.client
    assert (await service.oauth.introspect(token.access_token))["active"] is True
    assert await events(service) == [("client_added", "ok"), ("client_token", "ok"), ("client_secret_rotated", "ok")]


async def test_rotate_secret_returns_the_record_as_stored(service: Service, clock: Clock) -> None:
    """The client in the answer (what the admin API shows) is the row after the rotation, with its
    new rotation time (it was the row read before it)."""
    await billing(service)
    clock.advance(30)
    rotated = await service.clients.rotate_secret("billing")
    assert rotated.client == await service.clients.get("billing")


async def test_disabling_refuses_the_client_and_ends_its_tokens_through_the_feed(service: Service) -> None:
    """After disable: authentication is client_disabled, its token introspects inactive, and the
    feed has one entry for the grant the token carried, reason client_disabled; audited."""
    made = await billing(service)
    token = await service.oauth.client_credentials(made.client, None, WHO)
    record = await service.clients.disable("billing")
    assert record.disabled_at is not None
    assert record.grant_id != made.client.grant_id
    assert (await refused(service, basic(made))).reason == "client_disabled"
    assert await service.oauth.introspect(token.access_token) == {"active": False}
    page = await service.feed.page()
    assert [(e.sid, e.reason) for e in page.entries] == [(str(made.client.grant_id), "client_disabled")]
    assert (await events(service))[-1] == ("client_disabled", "ok")


async def test_enabling_lets_the_client_in_again_but_not_its_old_tokens(service: Service) -> None:
    """After enable the secret authenticates and new tokens are active; the token ended by the
    disable stays inactive (its grant was published); audited."""
    made = await billing(service)
    old = await service.oauth.client_credentials(made.client, None, WHO)
    await service.clients.disable("billing")
    record = await service.clients.enable("billing")
    assert record.disabled_at is None
    authenticated = await service.clients.authenticate(basic(made))
    assert authenticated == record
    new = await service.oauth.client_credentials(record, None, WHO)
    assert (await service.oauth.introspect(new.access_token))["active"] is True
    assert await service.oauth.introspect(old.access_token) == {"active": False}
    assert (await events(service))[-2:] == [("client_enabled", "ok"), ("client_token", "ok")]


@pytest.mark.parametrize("action", ["get", "rotate_secret", "disable", "enable"])
async def test_an_unknown_client_is_not_found(service: Service, action: str) -> None:
    """Every operator action on an id nobody registered: NotFound naming it; nothing audited."""
    with pytest.raises(NotFound) as caught:
        await getattr(service.clients, action)("nobody")
    assert caught.value.description == "No client named 'nobody'."
    assert await events(service) == []


async def test_scopes_supported_are_the_default_the_roles_and_the_clients(service: Service) -> None:
    """Sorted and each once: the sign-in default (profile), the roles' (admin), every client's."""
    assert await service.clients.scopes_supported() == ["admin", "profile"]
    await billing(service)
    await service.clients.add("reports", scope="profile reports:read")
    assert await service.clients.scopes_supported() == [
        "admin", "invoices:read", "invoices:write", "profile", "reports:read",
    ]  # fmt: skip
