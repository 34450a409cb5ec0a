"""Integration tests of the revocation feed through every adapter (FastAPI, Starlette's middleware,
Flask, Django and DRF): real apps whose verifiers follow the feed of a real keyturn server process
on loopback, set up with nothing beyond the usual Verifier or ``KEYTURN`` setting.

A logged-out session's token is refused with 401 invalid_token within 2 s; a stale feed makes
an app answer 503 (shown once, with Starlette's middleware); Django's ``REVOCATION*`` keys reach
its verifier. Sync followers (Flask, Django) are closed once the module's server has stopped, as
in ``tests/verify/test_revocations.py``; async ones by their test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from keyturn.core.tokens import AccessClaims
from keyturn.integrations.django import KeyturnMiddleware, get_verifier
from keyturn.integrations.fastapi import require_token, setup
from keyturn.integrations.starlette import keyturn_middleware
from keyturn.verify import Verifier
from tests.helpers import SESSION_ENDED
from tests.integrations import test_flask as flask_apps
from tests.integrations import test_starlette as starlette_endpoints
from tests.integrations.tokens import Tokens, bearer
from tests.servers import READY_TIMEOUT, Server, keyturn_server, stop
from tests.verify.test_revocations import FEED_DOWN, following, quick

pytestmark = pytest.mark.server

PROPAGATION = 2.0  # seconds from the logout's answer to the first 401
CHALLENGE = 'Bearer realm="api", error="invalid_token"'


class Answer(NamedTuple):
    status: int
    body: Any
    headers: Any  # the response's own mapping: case-insensitive


Call = Callable[[str], Answer]  # GET a guarded route with a bearer token
AsyncCall = Callable[[str], Awaitable[Answer]]


@pytest.fixture(scope="module")
def verifiers() -> Iterator[list[Verifier]]:
    """The module's sync verifiers, closed once the server has stopped (its SIGTERM answers their
    held long polls, so closing waits for none)."""
    made: list[Verifier] = []
    yield made
    for verifier in made:
        verifier.close()


@pytest.fixture(scope="module")
def server(verifiers: list[Verifier], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`keyturn --dev serve` with its usual 15-minute tokens (this folder's server issues 1-second
    ones, which could expire while a test waits for a refusal)."""
    with keyturn_server(tmp_path_factory.mktemp("keyturn"), "--dev", ready_timeout=READY_TIMEOUT) as running:
        yield running


def logout(url: str, token: str) -> None:
    assert httpx.post(f"{url}/v1/auth/logout", headers=bearer(token)).status_code == 204


# --- the apps --------------------------------------------------------------------------------


@contextmanager
def flask_app(server: Server, verifiers: list[Verifier]) -> Iterator[Call]:
    verifier = Verifier(issuer=server.url, audience=server.url)
    verifiers.append(verifier)
    client = flask_apps.make_app(verifier).test_client()

    def call(token: str) -> Answer:
        response = client.get("/claims", headers=bearer(token))
        return Answer(response.status_code, response.get_json(), response.headers)

    yield call


@contextmanager
def django_app(server: Server, verifiers: list[Verifier], *, drf: bool = False) -> Iterator[Call]:
    """Django's middleware and decorator (``/claims``) or DRF alone (``/drf/profile``), configured
    by ``settings.KEYTURN`` only."""
    middleware: dict[str, Any] = {"MIDDLEWARE": []} if drf else {}
    with override_settings(KEYTURN={"ISSUER": server.url, "AUDIENCE": server.url}, **middleware):
        verifiers.append(get_verifier())
        client = Client()

        def call(token: str) -> Answer:
            response = client.get("/drf/profile" if drf else "/claims", headers=bearer(token))
            return Answer(response.status_code, response.json(), response.headers)

        yield call


SYNC_APPS: dict[str, Callable[[Server, list[Verifier]], Any]] = {
    "flask": flask_app,
    "django": django_app,
    "drf": lambda server, verifiers: django_app(server, verifiers, drf=True),
}


def fastapi_app(verifier: Verifier) -> FastAPI:
    app = FastAPI()
    setup(app, verifier)

    @app.get("/profile")
    async def profile(claims: AccessClaims = Depends(require_token(scopes=["profile"]))) -> dict[str, str]:  # noqa: B008
        return {"sub": claims.sub}

    return app


def starlette_app(verifier: Verifier) -> Starlette:
    return Starlette(routes=[Route("/profile", starlette_endpoints.profile)], middleware=[keyturn_middleware(verifier)])


@asynccontextmanager
async def asgi_app(make: Callable[[Verifier], Any], url: str, **kwargs: Any) -> AsyncIterator[AsyncCall]:
    """The app ``make`` builds on a verifier of ``url``; the verifier is closed on exit."""
    async with (
        following(url, **kwargs) as verifier,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=make(verifier)), base_url="http://api") as client,
    ):

        async def call(token: str) -> Answer:
            response = await client.get("/profile", headers=bearer(token))
            return Answer(response.status_code, response.json(), response.headers)

        yield call


ASYNC_APPS = {"fastapi": fastapi_app, "starlette": starlette_app}


def ended_answer(answer: Answer) -> None:
    assert (answer.status, answer.body) == (401, {"error": "invalid_token", "error_description": SESSION_ENDED})
    assert answer.headers["WWW-Authenticate"] == CHALLENGE


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SYNC_APPS)
def test_sync_app_refuses_a_logged_out_session(
    name: str, server: Server, tokens: Tokens, verifiers: list[Verifier]
) -> None:
    """Flask, Django and DRF answer a logged-out session's token 401 session-ended within 2 s."""
    token = tokens.fresh()
    with SYNC_APPS[name](server, verifiers) as call:
        assert call(token).status == 200
        logout(server.url, token)
        deadline = time.monotonic() + PROPAGATION
        answer = call(token)
        while answer.status == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
            answer = call(token)
    ended_answer(answer)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ASYNC_APPS)
async def test_async_app_refuses_a_logged_out_session(name: str, server: Server, tokens: Tokens) -> None:
    """FastAPI and Starlette's middleware (a task follows the feed) do the same."""
    token = tokens.fresh()
    async with asgi_app(ASYNC_APPS[name], server.url) as call:
        assert (await call(token)).status == 200
        logout(server.url, token)
        deadline = time.monotonic() + PROPAGATION
        answer = await call(token)
        while answer.status == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            answer = await call(token)
    ended_answer(answer)


@pytest.mark.anyio
async def test_stale_feed_is_503_temporarily_unavailable(tmp_path: Path) -> None:
    """With its feed silent past max_staleness (keyturn stopped), an app answers 503 with Retry-After."""
    with keyturn_server(tmp_path, "--dev", ready_timeout=READY_TIMEOUT) as own:
        token = Tokens.for_new_user(own).fresh()
        async with asgi_app(starlette_app, own.url, revocations=quick()) as call:
            assert (await call(token)).status == 200
            stop(own)
            deadline = time.monotonic() + 3.0 + PROPAGATION
            answer = await call(token)
            while answer.status == 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                answer = await call(token)
    assert (answer.status, answer.body) == (503, {"error": "temporarily_unavailable", "error_description": FEED_DOWN})
    assert answer.headers["Retry-After"] == "1"


def test_django_revocation_settings_reach_the_verifier(server: Server, tokens: Tokens) -> None:
    """Django's REVOCATION_* keys tune the feed; REVOCATIONS False turns it off (ended sessions verify)."""
    tuned = {"ISSUER": server.url, "REVOCATION_MAX_STALENESS": 45, "REVOCATION_FAIL_OPEN": True}
    with override_settings(KEYTURN=tuned):
        feed = get_verifier().revocations
    assert feed is not None
    assert (feed.max_staleness, feed.fail_open) == (45.0, True)
    token = tokens.fresh()
    logout(server.url, token)
    with override_settings(KEYTURN={"ISSUER": server.url, "REVOCATIONS": False}):
        assert get_verifier().revocations is None
        assert Client().get("/claims", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"REVOCATIONS": "yes"}, "REVOCATIONS"),
        ({"REVOCATION_FAIL_OPEN": 1}, "REVOCATION_FAIL_OPEN"),
        ({"REVOCATION_MAX_STALENESS": 30}, "REVOCATION_MAX_STALENESS"),
        ({"REVOCATION_MAX_STALENESS": "60"}, "REVOCATION_MAX_STALENESS"),
    ],
)
def test_bad_django_revocation_settings_are_refused_at_start_up(extra: dict[str, Any], complaint: str) -> None:
    """A REVOCATION* key of the wrong kind, or a staleness of 30 s or less, stops start-up naming the key."""
    setting = {"ISSUER": "https://auth.example.com", **extra}
    with override_settings(KEYTURN=setting), pytest.raises(ImproperlyConfigured, match=complaint):
        KeyturnMiddleware(lambda request: None)
