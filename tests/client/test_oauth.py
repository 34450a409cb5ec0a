"""Integration tests of keyturn.client's standard mode (``_oauth``): ``KeyturnAuth`` refreshing at the
RFC 6749 token endpoint and logging out by RFC 7009 revocation of a real keyturn server process on
loopback (2 s access tokens), sync and async; plus unit tests (no I/O: ``httpx.MockTransport``) of
a foreign OAuth server that sends no ``session_id`` and does not rotate, of bad metadata, and of
where the metadata of an issuer with a path is looked for (the same locations as the verifier's).

Requests to the issuer are recorded through the ``client=`` / ``async_client=`` it is given; the
client's clock is moved instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

import httpx
import pytest

from keyturn.client import KeyturnAuth, MemoryTokenStore, Tokens
from keyturn.client._oauth import metadata_urls as client_metadata_urls
from keyturn.core.errors import (
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    KeyturnError,
    SessionRevoked,
    Unavailable,
)
from keyturn.verify.discovery import metadata_urls as verify_metadata_urls
from tests.client.issuer import Clock, User, audit, me
from tests.helpers import PASSWORD, SESSION_ENDED, assert_refused
from tests.servers import Server
from tests.verify.test_discovery import LOCATIONS

pytestmark = pytest.mark.server

METADATA = "/.well-known/oauth-authorization-server"


class Issuer:
    """What a client sent its issuer: each request's path and form fields."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def record(self, request: httpx.Request) -> None:
        form = urllib.parse.parse_qs(request.content.decode()) if request.method == "POST" else {}
        self.sent.append((request.url.path, {name: values[0] for name, values in form.items()}))

    async def arecord(self, request: httpx.Request) -> None:
        self.record(request)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.sent]


def test_a_due_token_is_refreshed_at_the_discovered_token_endpoint(server: Server, user: User) -> None:
    """oauth=True: the endpoint comes from the metadata (read once); the refresh is a form POST with client_id."""
    clock, issuer = Clock(), Issuer()
    with httpx.Client(event_hooks={"request": [issuer.record]}) as client:
        auth = KeyturnAuth(server.url, clock=clock, client=client, oauth=True, client_id="keyturn")
        first = auth.login(user.name, PASSWORD)
        with httpx.Client(auth=auth) as http:
            for offset in (5, 10):
                clock.offset = offset
                assert http.get(f"{server.url}/v1/auth/me").status_code == 200
    assert issuer.paths == ["/v1/auth/login", METADATA, "/oauth/token", "/oauth/token"]
    refresh = issuer.sent[2][1]
    assert refresh == {"grant_type": "refresh_token", "refresh_token": first.refresh_token, "client_id": "keyturn"}
    tokens = auth.store.load()
    assert tokens is not None
    assert tokens.session_id == first.session_id
    assert tokens.refresh_token not in (first.refresh_token, issuer.sent[3][1]["refresh_token"])  # rotated twice
    assert audit(server, user, "refresh") == 2
    assert audit(server, user, "refresh_replay") == 0


@pytest.mark.anyio
async def test_async_due_token_is_refreshed_at_the_discovered_token_endpoint(server: Server, user: User) -> None:
    """The same through httpx.AsyncClient, alogin and async_client."""
    clock, issuer = Clock(), Issuer()
    async with httpx.AsyncClient(event_hooks={"request": [issuer.arecord]}) as client:
        auth = KeyturnAuth(server.url, clock=clock, async_client=client, oauth=True)
        first = await auth.alogin(user.name, PASSWORD)
        clock.offset = 5
        async with httpx.AsyncClient(auth=auth) as http:
            assert (await http.get(f"{server.url}/v1/auth/me")).status_code == 200
    assert issuer.paths == ["/v1/auth/login", METADATA, "/oauth/token"]
    assert issuer.sent[2][1] == {"grant_type": "refresh_token", "refresh_token": first.refresh_token}
    assert audit(server, user, "refresh") == 1


def _tampered(server: Server, user: User) -> MemoryTokenStore:
    """A store holding a fresh session whose access token the server will refuse."""
    store = MemoryTokenStore()
    tokens = KeyturnAuth(server.url, store).login(user.name, PASSWORD)
    store.save(dataclasses.replace(tokens, access_token=tokens.access_token[:-4] + "AAAA"))
    return store


def test_refused_access_token_is_refreshed_at_the_given_token_endpoint_and_retried(server: Server, user: User) -> None:
    """token_endpoint=: no metadata is read; a 401 invalid_token causes one refresh there and one retry."""
    issuer, seen = Issuer(), []
    with httpx.Client(event_hooks={"request": [issuer.record]}) as client:
        auth = KeyturnAuth(
            server.url, _tampered(server, user), client=client, token_endpoint=f"{server.url}/oauth/token"
        )
        with httpx.Client(auth=auth, event_hooks={"response": [lambda r: seen.append(r.status_code)]}) as http:
            assert http.get(f"{server.url}/v1/auth/me").status_code == 200
    assert seen == [401, 200]
    assert issuer.paths == ["/oauth/token"]
    assert audit(server, user, "refresh") == 1


@pytest.mark.anyio
async def test_async_refused_access_token_is_refreshed_at_the_token_endpoint_and_retried(
    server: Server, user: User
) -> None:
    """The same through httpx.AsyncClient."""
    issuer, seen = Issuer(), []

    async def status(response: httpx.Response) -> None:
        seen.append(response.status_code)

    async with httpx.AsyncClient(event_hooks={"request": [issuer.arecord]}) as client:
        auth = KeyturnAuth(server.url, _tampered(server, user), async_client=client, oauth=True)
        async with httpx.AsyncClient(auth=auth, event_hooks={"response": [status]}) as http:
            assert (await http.get(f"{server.url}/v1/auth/me")).status_code == 200
    assert seen == [401, 200]
    assert issuer.paths == [METADATA, "/oauth/token"]
    assert audit(server, user, "refresh") == 1


def test_logout_revokes_the_refresh_token_at_the_revocation_endpoint(server: Server, user: User) -> None:
    """logout is an RFC 7009 form POST; the session then ends (/me refuses it) and the store is cleared."""
    issuer = Issuer()
    with httpx.Client(event_hooks={"request": [issuer.record]}) as client:
        auth = KeyturnAuth(server.url, client=client, oauth=True, client_id="keyturn")
        tokens = auth.login(user.name, PASSWORD)
        auth.logout()
        auth.logout()  # nothing left to end: not an error, and no request
    assert issuer.paths == ["/v1/auth/login", METADATA, "/oauth/revoke"]
    revocation = {"token": tokens.refresh_token, "token_type_hint": "refresh_token", "client_id": "keyturn"}
    assert issuer.sent[2][1] == revocation
    assert auth.store.load() is None
    assert_refused(me(server, tokens.access_token), 401, "invalid_token", SESSION_ENDED)
    assert audit(server, user, "logout") == 1


@pytest.mark.anyio
async def test_alogout_revokes_at_the_revocation_endpoint(server: Server, user: User) -> None:
    """The async logout does the same."""
    auth = KeyturnAuth(server.url, oauth=True)
    tokens = await auth.alogin(user.name, PASSWORD)
    await auth.alogout()
    assert auth.store.load() is None
    assert_refused(me(server, tokens.access_token), 401, "invalid_token", SESSION_ENDED)


@pytest.mark.anyio
async def test_a_revoked_session_raises_invalid_grant_at_the_token_endpoint(server: Server, user: User) -> None:
    """After logout-all, the refresh is refused (400 invalid_grant): InvalidGrant, as in JSON mode; store cleared."""
    clock = Clock()
    auth = KeyturnAuth(server.url, clock=clock, oauth=True)
    other = await KeyturnAuth(server.url).alogin(user.name, PASSWORD)
    await auth.alogin(user.name, PASSWORD)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {other.access_token}"}) as raw:
        assert (await raw.post(f"{server.url}/v1/auth/logout-all")).status_code == 204
    clock.offset = 5
    async with httpx.AsyncClient(auth=auth) as http:
        with pytest.raises(InvalidGrant) as refused:
            await http.get(f"{server.url}/v1/auth/me")
    assert (refused.value.code, refused.value.description) == ("invalid_grant", SessionRevoked.description)
    assert auth.store.load() is None


def test_an_unknown_client_id_raises_invalid_client_and_keeps_the_session(server: Server, user: User) -> None:
    """A client_id keyturn does not know: InvalidClient naming it, at refresh and at logout; the store is kept."""
    clock = Clock()
    auth = KeyturnAuth(server.url, clock=clock, oauth=True, client_id="someone-else")
    auth.login(user.name, PASSWORD)
    clock.offset = 5
    with httpx.Client(auth=auth) as http, pytest.raises(InvalidClient, match="client_id 'someone-else'") as refused:
        http.get(f"{server.url}/v1/auth/me")
    assert refused.value.code == "invalid_client"
    with pytest.raises(InvalidClient, match="client_id 'someone-else'"):
        auth.logout()
    assert auth.store.load() is not None


def test_metadata_of_another_issuer_is_refused(server: Server, user: User) -> None:
    """RFC 8414 §3.3: the server's metadata names http://127.0.0.1:port, not localhost: ConfigurationError."""
    store = MemoryTokenStore()
    KeyturnAuth(server.url, store).login(user.name, PASSWORD)
    auth = KeyturnAuth(f"http://localhost:{server.port}", store, clock=Clock(), oauth=True)
    with pytest.raises(ConfigurationError, match="another issuer") as refused:
        auth.logout()
    assert refused.value.setting == "issuer"
    assert store.load() is not None


# A foreign OAuth server (unit: no I/O), which omits what RFC 6749 §5.1 lets it omit.

FOREIGN = "https://idp.test"
OLD = Tokens("old-at", "the-rt", issued_at=0, expires_at=60, session_id="kept", scope="read", refresh_expires_at=999)


def _foreign(answer: dict[str, Any], metadata: dict[str, Any] | None = None) -> tuple[KeyturnAuth, Issuer]:
    issuer = Issuer()

    def serve(request: httpx.Request) -> httpx.Response:
        issuer.record(request)
        if request.url.path == METADATA:
            return httpx.Response(200, json=metadata or {"issuer": FOREIGN, "token_endpoint": f"{FOREIGN}/token"})
        return httpx.Response(200, json=answer)

    client = httpx.Client(transport=httpx.MockTransport(serve))
    clock = Clock()
    clock.offset = 100 - clock()  # the clock reads 100 (OLD is due), then moves with real time
    return KeyturnAuth(FOREIGN, MemoryTokenStore(OLD), clock=clock, client=client, oauth=True, client_id="cli"), issuer


def _api(auth: KeyturnAuth) -> str:
    """Call a (mocked) API through ``auth``; the bearer token it saw."""
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200)

    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as http:
        assert http.get("https://api.test/things").status_code == 200
    return seen[0]


def test_a_foreign_server_that_does_not_rotate_keeps_the_refresh_token() -> None:
    """No refresh_token, session_id, scope or refresh_token_expires_in in the answer: they carry over."""
    auth, issuer = _foreign({"access_token": "new-at", "token_type": "bearer", "expires_in": 300})
    assert _api(auth) == "Bearer new-at"
    assert issuer.sent[1] == ("/token", {"grant_type": "refresh_token", "refresh_token": "the-rt", "client_id": "cli"})
    tokens = auth.store.load()
    assert tokens is not None
    assert (tokens.refresh_token, tokens.session_id, tokens.scope, tokens.refresh_expires_at) == (
        "the-rt", "kept", "read", 999
    )  # fmt: skip
    assert tokens.expires_at - tokens.issued_at == pytest.approx(300)


def test_a_foreign_server_that_rotates_without_a_lifetime_leaves_the_refresh_expiry_unknown() -> None:
    """A new refresh token without refresh_token_expires_in has no known expiry; no expires_in: the old lifetime."""
    auth, _ = _foreign({"access_token": "new-at", "token_type": "Bearer", "refresh_token": "new-rt"})
    assert _api(auth) == "Bearer new-at"
    tokens = auth.store.load()
    assert tokens is not None
    assert (tokens.refresh_token, tokens.refresh_expires_at) == ("new-rt", None)
    assert tokens.expires_at - tokens.issued_at == pytest.approx(60)


def test_logout_without_a_revocation_endpoint_only_forgets_the_tokens() -> None:
    """Metadata naming no revocation_endpoint: logout sends nothing but the metadata request and clears the store."""
    auth, issuer = _foreign({})
    auth.logout()
    assert issuer.paths == [METADATA]
    assert auth.store.load() is None


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"issuer": "https://other.test", "token_endpoint": f"{FOREIGN}/token"}, "another issuer"),
        ({"issuer": FOREIGN}, "names no token_endpoint"),
        ({"issuer": FOREIGN, "token_endpoint": "http://idp.test/token"}, "unusable token_endpoint"),
        ({"issuer": FOREIGN, "token_endpoint": f"{FOREIGN}/t", "revocation_endpoint": 3}, "unusable revocation"),
    ],
)
def test_unusable_metadata_raises_configuration_error(metadata: dict[str, Any], problem: str) -> None:
    """Metadata of another issuer, with no token endpoint, or sending tokens in clear: refused, nothing sent on."""
    auth, issuer = _foreign({}, metadata)
    with pytest.raises(ConfigurationError, match=problem):
        auth.logout()
    assert issuer.paths == [METADATA]
    assert auth.store.load() == OLD


def test_standard_options_without_the_standard_mode_are_a_type_error() -> None:
    """client_id alone, or revocation_endpoint without token_endpoint, would be silently ignored: TypeError."""
    with pytest.raises(TypeError, match="client_id"):
        KeyturnAuth(FOREIGN, client_id="cli")
    with pytest.raises(TypeError, match="revocation_endpoint"):
        KeyturnAuth(FOREIGN, oauth=True, revocation_endpoint=f"{FOREIGN}/revoke")


# Where the metadata is looked for (unit: no I/O), for an issuer with a path such as Keycloak's realms.

REALM = f"{FOREIGN}/realms/main"
PLACES = {
    "path-aware": f"{METADATA}/realms/main",
    "legacy": f"/realms/main{METADATA}",
    "openid-configuration": "/realms/main/.well-known/openid-configuration",
}
REFRESHED = {"access_token": "new-at", "token_type": "Bearer", "expires_in": 300}


@pytest.mark.parametrize(("issuer", "urls"), LOCATIONS.items(), ids=list(LOCATIONS))
def test_the_client_looks_where_the_verifier_looks(issuer: str, urls: tuple[str, ...]) -> None:
    """The client restates keyturn.verify.discovery's rule (it imports no verifier): same locations, same order."""
    assert client_metadata_urls(issuer) == verify_metadata_urls(issuer) == urls


def _realm(answers: dict[str, httpx.Response]) -> tuple[httpx.MockTransport, Issuer]:
    """A foreign issuer with a path answering ``answers`` by path (404 elsewhere; its token
    endpoint refreshes), and what it was sent."""
    issuer = Issuer()

    def serve(request: httpx.Request) -> httpx.Response:
        issuer.record(request)
        if request.url.path == "/realms/main/token":
            return httpx.Response(200, json=REFRESHED)
        return answers.get(request.url.path, httpx.Response(404))

    return httpx.MockTransport(serve), issuer


def _due(**clients: Any) -> KeyturnAuth:
    """A standard-mode KeyturnAuth of the realm whose stored tokens (OLD) are due."""
    clock = Clock()
    clock.offset = 100 - clock()
    return KeyturnAuth(REALM, MemoryTokenStore(OLD), clock=clock, oauth=True, client_id="cli", **clients)


def _metadata(issuer: str = REALM) -> httpx.Response:
    return httpx.Response(200, json={"issuer": issuer, "token_endpoint": f"{REALM}/token"})


@pytest.mark.parametrize("place", PLACES)
def test_endpoints_are_found_wherever_the_metadata_is(place: str) -> None:
    """Metadata at one location only: earlier ones answer 404 and are passed; the refresh goes to
    the token endpoint found there."""
    transport, issuer = _realm({PLACES[place]: _metadata()})
    with httpx.Client(transport=transport) as client:
        assert _api(_due(client=client)) == "Bearer new-at"
    earlier = list(PLACES.values())[: list(PLACES).index(place) + 1]
    assert issuer.paths == [*earlier, "/realms/main/token"]


@pytest.mark.anyio
async def test_endpoints_are_found_at_the_openid_configuration_async() -> None:
    """The same search through async_client: an issuer serving only OpenID Connect discovery."""
    transport, issuer = _realm({PLACES["openid-configuration"]: _metadata()})
    async with httpx.AsyncClient(transport=transport) as client:
        auth = _due(async_client=client)
        await auth.alogout()  # no revocation_endpoint: the metadata is read, the tokens forgotten
    assert issuer.paths == list(PLACES.values())
    assert auth.store.load() is None


FIRST = f"{FOREIGN}{PLACES['path-aware']}"


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        (_metadata("https://evil.test"), ConfigurationError,
         f"issuer: the metadata at {FIRST} is about another issuer ('https://evil.test') (RFC 8414 §3.3)."),
        (httpx.Response(500), Unavailable, f"The issuer's metadata at {FIRST} answered HTTP 500."),
        (httpx.Response(401), ConfigurationError, f"oauth: no usable metadata at {FIRST} (HTTP 401)."),
    ],
    ids=["other-issuer", "500", "401"],
)  # fmt: skip
def test_a_refused_first_answer_ends_the_search(answer: httpx.Response, error: type[KeyturnError], reason: str) -> None:
    """Metadata about another issuer, or an error, at the first location: refused with its reason;
    the valid metadata at a later location is not asked, nothing is sent on, the store is kept."""
    transport, issuer = _realm({PLACES["path-aware"]: answer, PLACES["openid-configuration"]: _metadata()})
    with httpx.Client(transport=transport) as client:
        auth = _due(client=client)
        with pytest.raises(error) as refused:
            auth.logout()
    assert refused.value.description == reason
    assert issuer.paths == [PLACES["path-aware"]]
    assert auth.store.load() == OLD


def test_no_metadata_anywhere_names_every_location() -> None:
    """404 everywhere: ConfigurationError on the ``oauth`` setting, naming the locations asked."""
    transport, issuer = _realm({})
    with httpx.Client(transport=transport) as client, pytest.raises(ConfigurationError) as refused:
        _due(client=client).logout()
    asked = " nor ".join(FOREIGN + path for path in PLACES.values())
    assert (refused.value.setting, refused.value.description) == (
        "oauth", f"oauth: no metadata at {asked}; give token_endpoint instead."
    )  # fmt: skip
    assert issuer.paths == list(PLACES.values())
