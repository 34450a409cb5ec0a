"""Integration tests of keyturn.server.http.recovery in-process: the real ASGI app on a real
database (SQLite file and PostgreSQL), its mail delivered to a real SMTP server on loopback
(``tests/smtp.py``). The four routes' answers, their rate limits, recovery without mail, the
address on /me, and that no answer (status, body, or time) tells a registered address from
another."""

from __future__ import annotations

import itertools
import re
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keyturn.core.errors import SessionRevoked
from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.http.cookies import REFRESH_COOKIE
from keyturn.server.http.recovery import RESEND_STATUS, RESET_STATUS
from keyturn.server.service import Service
from keyturn.server.service.recovery import LINK_REFUSED
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, SESSION_ENDED, assert_refused, bearer, fetch, login
from tests.smtp import SmtpServer, link_token, smtp_fixture

pytestmark = pytest.mark.anyio
ALICE = "alice@example.com"
NEW = "a whole new passphrase"
IP = "203.0.113.7"
NO_STORE = "no-store"


smtp = smtp_fixture()


class Site:
    """A started service with mail to the test SMTP server, its app, and clients from given IPs."""

    def __init__(self, svc: Service, smtp: SmtpServer) -> None:
        self.svc = svc
        self.smtp = smtp
        self.app: FastAPI = create_app(svc.settings, service=svc)

    @asynccontextmanager
    async def client(self, ip: str = IP) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 51234))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER, headers={"user-agent": "pytest"}) as c:
            yield c

    async def mail_to(self, to: str, count: int = 1) -> str:
        """Send the outbox; the link token of the ``count``-th message to ``to``."""
        await self.svc.postman.deliver_due()
        message = self.smtp.wait_for(to, count=count, timeout=5)
        action = "reset-password" if "new password" in str(message["Subject"]) else "verify-email"
        return link_token(message, action)

    async def recipients(self) -> list[str]:
        """Send the outbox; every recipient the SMTP server has had, in order, in lower case."""
        await self.svc.postman.deliver_due()
        return [str(m["To"]).lower() for m in self.smtp.messages]


@asynccontextmanager
async def site(
    database_url: str, clock: Clock, passwords: Passwords, smtp: SmtpServer, **overrides: Any
) -> AsyncIterator[Site]:
    svc = Service(make_settings(database_url, mail_url=smtp.url, **overrides), passwords=passwords, clock=clock)
    await svc.start()
    try:
        yield Site(svc, smtp)
    finally:
        await svc.close()


@pytest.fixture
async def mail_site(
    database_url: str, clock: Clock, fast_passwords: Passwords, smtp: SmtpServer
) -> AsyncIterator[Site]:
    async with site(database_url, clock, fast_passwords, smtp) as s:
        yield s


@pytest.fixture
async def web(mail_site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with mail_site.client() as c:
        yield c


async def sign_up(client: httpx.AsyncClient, username: str = "alice", email: str | None = ALICE) -> dict[str, Any]:
    response = await client.post("/v1/auth/register", json={"username": username, "password": PASSWORD, "email": email})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_accepted(response: httpx.Response, status: str) -> None:
    """202 with exactly ``{"status": status}``, not to be cached."""
    assert response.status_code == 202, response.text
    assert response.json() == {"status": status}
    assert NO_STORE in response.headers["cache-control"]


# --- the four routes ----------------------------------------------------------------------------


async def test_verify_answers_the_address_and_me_shows_it_verified(web: httpx.AsyncClient, mail_site: Site) -> None:
    """/me shows the address unverified; the mailed link's token at /email/verify is 200 with the
    address and email_verified true (no-store); /me then says verified."""
    await sign_up(web, email="Alice@Example.com")
    tokens = await login(web)
    me = (await web.get("/v1/auth/me", headers=bearer(tokens))).json()
    assert (me["email"], me["email_verified"]) == ("Alice@example.com", False)
    response = await web.post("/v1/auth/email/verify", json={"token": await mail_site.mail_to(ALICE)})
    assert response.status_code == 200, response.text
    assert response.json() == {"email": "Alice@example.com", "email_verified": True}
    assert NO_STORE in response.headers["cache-control"]
    me = (await web.get("/v1/auth/me", headers=bearer(tokens))).json()
    assert (me["email"], me["email_verified"]) == ("Alice@example.com", True)


async def test_where_addresses_must_be_verified_sign_up_needs_one(
    database_url: str, clock: Clock, fast_passwords: Passwords, smtp: SmtpServer
) -> None:
    """KEYTURN_REQUIRE_VERIFIED_EMAIL: sign-up without an address is 400, saying one is needed,
    and creates nothing; with one, sign-in is 403 email_not_verified until the link is opened."""
    async with site(database_url, clock, fast_passwords, smtp, require_verified_email=True) as s, s.client() as web:
        refused = await web.post("/v1/auth/register", json={"username": "bob", "password": PASSWORD})
        assert_refused(refused, 400, "invalid_request", "An email address is required to sign up.")
        assert await fetch(database_url, "SELECT username FROM users") == []
        await sign_up(web)
        signin = {"username": "alice", "password": PASSWORD}
        assert_refused(await web.post("/v1/auth/login", json=signin), 403, "email_not_verified")
        verified = await web.post("/v1/auth/email/verify", json={"token": await s.mail_to(ALICE)})
        assert verified.status_code == 200, verified.text
        assert "access_token" in await login(web, "alice")


async def test_me_of_an_account_without_an_address(web: httpx.AsyncClient) -> None:
    """An account registered without an address has email null, email_verified false."""
    await sign_up(web, email=None)
    me = (await web.get("/v1/auth/me", headers=bearer(await login(web)))).json()
    assert (me["email"], me["email_verified"]) == (None, False)


async def test_a_link_used_twice_or_unknown_is_400_invalid_grant(web: httpx.AsyncClient, mail_site: Site) -> None:
    """A used, unknown or empty link is 400 invalid_grant with the one description (never 401)."""
    await sign_up(web)
    token = await mail_site.mail_to(ALICE)
    assert (await web.post("/v1/auth/email/verify", json={"token": token})).status_code == 200
    for bad in (token, "kt_et_" + "A" * 43, ""):
        response = await web.post("/v1/auth/email/verify", json={"token": bad})
        assert_refused(response, 400, "invalid_grant", LINK_REFUSED)
        response = await web.post("/v1/auth/password/reset", json={"token": bad, "new_password": NEW})
        assert_refused(response, 400, "invalid_grant", LINK_REFUSED)


async def test_a_refused_link_clears_no_cookie(web: httpx.AsyncClient) -> None:
    """With a refresh cookie present, a refused link is still 400 invalid_grant and sets no cookie:
    the browser's session is not signed out by someone else's stale link."""
    cookie = {"cookie": f"{REFRESH_COOKIE}=kt_rt_{'A' * 40}"}
    for path, body in (
        ("/v1/auth/email/verify", {"token": "kt_et_stale"}),
        ("/v1/auth/password/reset", {"token": "kt_et_stale", "new_password": NEW}),
    ):
        response = await web.post(path, json=body, headers=cookie)
        assert_refused(response, 400, "invalid_grant", LINK_REFUSED)
        assert "set-cookie" not in response.headers


async def test_reset_sets_the_password_and_ends_every_session(web: httpx.AsyncClient, mail_site: Site) -> None:
    """forgot -> 202; the mailed link with a new password -> 200 {sessions_ended}; the old refresh
    token and password are refused; the new password signs in."""
    await sign_up(web)
    old = [await login(web) for _ in range(2)]
    assert_accepted(await web.post("/v1/auth/password/forgot", json={"email": "ALICE@example.com"}), RESET_STATUS)
    token = await mail_site.mail_to(ALICE, count=2)
    response = await web.post("/v1/auth/password/reset", json={"token": token, "new_password": NEW})
    assert response.status_code == 200, response.text
    assert response.json() == {"sessions_ended": 2}
    assert NO_STORE in response.headers["cache-control"]
    for tokens in old:
        refreshed = await web.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_refused(refreshed, 401, "invalid_grant", SessionRevoked.description)
        assert_refused(await web.get("/v1/auth/me", headers=bearer(tokens)), 401, "invalid_token", SESSION_ENDED)
    failed = await web.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert_refused(failed, 401, "invalid_credentials")
    await login(web, password=NEW)


async def test_reset_with_a_weak_password_is_400_and_keeps_the_link(web: httpx.AsyncClient, mail_site: Site) -> None:
    """The registration policy's answer (invalid_request, the reason said); the link still works."""
    await sign_up(web)
    await web.post("/v1/auth/password/forgot", json={"email": ALICE})
    token = await mail_site.mail_to(ALICE, count=2)
    response = await web.post("/v1/auth/password/reset", json={"token": token, "new_password": "short"})
    body = assert_refused(response, 400, "invalid_request")
    assert "at least 8" in body["error_description"]
    response = await web.post("/v1/auth/password/reset", json={"token": token, "new_password": NEW})
    assert response.json() == {"sessions_ended": 0}


@pytest.mark.parametrize("path", ["/v1/auth/password/forgot", "/v1/auth/email/resend"])
@pytest.mark.parametrize("body", [{"email": "not an address"}, {"email": 42}, {}, {"email": ALICE, "more": 1}])
async def test_asking_for_a_link_needs_one_address(web: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    """A malformed, missing or extra field is 400 invalid_request, whatever is registered."""
    assert_refused(await web.post(path, json=body), 400, "invalid_request")


async def three_kinds_of_account(web: httpx.AsyncClient, site: Site) -> list[str]:
    """alice (unverified), vera (verified) and dora (disabled), signed up through the API; the
    recipients of every mail so far."""
    await sign_up(web, "alice", ALICE)
    await sign_up(web, "vera", "vera@example.com")
    await web.post("/v1/auth/email/verify", json={"token": await site.mail_to("vera@example.com")})
    await sign_up(web, "dora", "dora@example.com")
    await site.svc.admin.disable_user("dora")
    return await site.recipients()


async def test_forgot_answers_the_same_for_every_kind_of_address(web: httpx.AsyncClient, mail_site: Site) -> None:
    """Known (verified or not), unknown and disabled addresses: the same 202 body; a reset mail
    goes only to the enabled accounts."""
    before = await three_kinds_of_account(web, mail_site)
    for address in (ALICE, "vera@example.com", "nobody@example.com", "dora@example.com"):
        assert_accepted(await web.post("/v1/auth/password/forgot", json={"email": address}), RESET_STATUS)
    assert (await mail_site.recipients())[len(before) :] == [ALICE, "vera@example.com"]


async def test_resend_answers_the_same_for_every_kind_of_address(web: httpx.AsyncClient, mail_site: Site) -> None:
    """Unverified, verified, unknown and disabled addresses: the same 202 body; a new link goes
    only to the unverified enabled account, and it verifies."""
    before = await three_kinds_of_account(web, mail_site)
    for address in ("Alice@Example.com", "vera@example.com", "nobody@example.com", "dora@example.com"):
        assert_accepted(await web.post("/v1/auth/email/resend", json={"email": address}), RESEND_STATUS)
    assert (await mail_site.recipients())[len(before) :] == [ALICE]
    response = await web.post("/v1/auth/email/verify", json={"token": await mail_site.mail_to(ALICE, count=2)})
    assert response.json() == {"email": ALICE, "email_verified": True}


async def test_forgot_without_mail_is_503_for_every_address(client: httpx.AsyncClient) -> None:
    """With no mail configured (production, no KEYTURN_MAIL_URL), asking for a reset link is 503
    temporarily_unavailable, with the same body for a registered and an unknown address."""
    await sign_up(client)
    answers = []
    for address in (ALICE, "nobody@example.com"):
        response = await client.post("/v1/auth/password/forgot", json={"email": address})
        answers.append(assert_refused(response, 503, "temporarily_unavailable"))
    assert answers[0] == answers[1]
    assert "not set up" in answers[0]["error_description"]


# --- rate limits --------------------------------------------------------------------------------


async def test_requests_for_one_address_are_limited_across_its_case_variants(web: httpx.AsyncClient) -> None:
    """3 per 15 minutes per address (forgot and resend together), counted by the address's key:
    the 4th in any case is 429 rate_limited; another address from the same client still passes."""
    await sign_up(web)
    for path, address in (
        ("/v1/auth/password/forgot", "Alice@Example.com"),
        ("/v1/auth/email/resend", "ALICE@EXAMPLE.COM"),
        ("/v1/auth/password/forgot", "alice@example.com"),
    ):
        assert (await web.post(path, json={"email": address})).status_code == 202
    for path in ("/v1/auth/password/forgot", "/v1/auth/email/resend"):
        response = await web.post(path, json={"email": "aLiCe@example.COM"})
        assert_refused(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) > 0
    assert (await web.post("/v1/auth/password/forgot", json={"email": "bob@example.com"})).status_code == 202


async def test_an_unknown_address_is_limited_like_a_known_one(web: httpx.AsyncClient) -> None:
    """The per-address limit does not tell whether the address is registered: the 4th request for
    an unknown address is refused the same way."""
    for _ in range(3):
        assert (await web.post("/v1/auth/password/forgot", json={"email": "nobody@example.com"})).status_code == 202
    response = await web.post("/v1/auth/password/forgot", json={"email": "Nobody@example.com"})
    assert_refused(response, 429, "rate_limited")


async def test_recovery_requests_are_limited_per_client_ip(
    database_url: str, clock: Clock, fast_passwords: Passwords, smtp: SmtpServer
) -> None:
    """KEYTURN_RATE_LIMIT_RECOVERY_IP counts all four routes from one IP (whatever the address or
    link); past it they are 429; another IP is not held back."""
    async with (
        site(database_url, clock, fast_passwords, smtp, rate_limit_recovery_ip="4/hour") as s,
        s.client("198.51.100.1") as one,
        s.client("198.51.100.2") as other,
    ):
        for path, body, status in (
            ("/v1/auth/password/forgot", {"email": "a@example.com"}, 202),
            ("/v1/auth/email/resend", {"email": "b@example.com"}, 202),
            ("/v1/auth/email/verify", {"token": "kt_et_x"}, 400),
            ("/v1/auth/password/reset", {"token": "kt_et_x", "new_password": NEW}, 400),
        ):
            assert (await one.post(path, json=body)).status_code == status
        for path, body in (
            ("/v1/auth/password/forgot", {"email": "c@example.com"}),
            ("/v1/auth/email/verify", {"token": "kt_et_x"}),
        ):
            assert_refused(await one.post(path, json=body), 429, "rate_limited")
        assert (await other.post("/v1/auth/password/forgot", json={"email": "c@example.com"})).status_code == 202


# --- enumeration --------------------------------------------------------------------------------

ROUNDS = 15
WARM_UP = 3
LOW, HIGH = 0.5, 2.0
ATTEMPTS = 5  # load on a shared machine can push one measurement out; a real difference shows in every one

Send = Callable[[], Awaitable[httpx.Response]]


async def median_ratio(known: Send, unknown: Send) -> float:
    """The median time of ``known()`` over the median of ``unknown()``, interleaved (each round
    alternates which goes first, so drift and warm caches favour neither)."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(WARM_UP + ROUNDS):
        order = [(True, known), (False, unknown)]
        for is_known, send in order if i % 2 else reversed(order):
            start = time.perf_counter()
            await send()
            if i >= WARM_UP:
                times[is_known].append(time.perf_counter() - start)
    return statistics.median(times[True]) / statistics.median(times[False])


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """What a caller sees of an answer, with the new account's id and name (which differ from one
    sign-up to the next, and are checked where they are sent) replaced by their shape."""
    body = response.json()
    if isinstance(body, dict):
        body = {k: re.sub(r"[0-9a-f]", "x", v) if k in ("id", "username") else v for k, v in body.items()}
    return response.status_code, dict(response.headers), body


REQUESTS = {"/v1/auth/password/forgot": "reset_request", "/v1/auth/email/resend": "verify_request"}


@pytest.mark.serial  # compares median times: alone, not beside another worker's tests
async def test_no_answer_tells_a_registered_address_from_another(
    database_url: str, clock: Clock, fast_passwords: Passwords, smtp: SmtpServer
) -> None:
    """register (a fresh username each time), forgot and resend answer a registered address and an
    unregistered one with the same status, headers and body, and in the same time: the median of
    15 interleaved requests each within a factor of 2 (with cheap password hashing, so that the
    database work is not hidden behind it). Both kinds of request put the same request in the
    outbox; only when the sender takes them up do the registered address's become mail."""
    limits = {f"rate_limit_{name}": "100000/minute" for name in ("recovery_ip", "recovery_address", "register_ip")}
    mailed: Counter[str] = Counter()  # what the requests put in the outbox
    sent: Counter[str] = Counter()  # what the sender then mails, of what the link requests asked for
    async with site(database_url, clock, fast_passwords, smtp, **limits) as s, s.client() as web:
        await sign_up(web, "owner", "known@example.com")
        mailed["verify"] += 1
        names = itertools.count()

        def register(address: Callable[[int], str], mail: str) -> Send:
            async def send() -> httpx.Response:
                n = next(names)
                body = {"username": f"user{n:05d}", "password": PASSWORD, "email": address(n)}
                response = await web.post("/v1/auth/register", json=body)
                assert response.json().get("username") == body["username"], response.text
                mailed[mail] += 1
                return response

            return send

        def ask(path: str, address: str, mail: str | None) -> Send:
            async def send() -> httpx.Response:
                response = await web.post(path, json={"email": address})
                assert response.status_code == 202, response.text
                mailed[REQUESTS[path]] += 1  # the same request for every address
                if mail is not None:
                    sent[mail] += 1
                return response

            return send

        forgot, resend = "/v1/auth/password/forgot", "/v1/auth/email/resend"
        probes = {
            "register": (register(lambda n: "known@example.com", "address_in_use"),
                         register(lambda n: f"fresh{n:05d}@example.com", "verify")),
            "forgot": (ask(forgot, "known@example.com", "reset"), ask(forgot, "x@example.com", None)),
            "resend": (ask(resend, "KNOWN@example.com", "verify"), ask(resend, "x@example.com", None)),
        }  # fmt: skip
        for name, (known, unknown) in probes.items():
            assert comparable(await known()) == comparable(await unknown()), name
            ratios = []
            for _ in range(ATTEMPTS):
                ratios.append(await median_ratio(known, unknown))
                if LOW <= ratios[-1] <= HIGH:
                    break
            assert LOW <= ratios[-1] <= HIGH, f"{name}: registered/unregistered median time ratios {ratios}"
        kinds = Counter(kind for (kind,) in await fetch(database_url, "SELECT kind FROM outbox"))
        assert kinds == mailed
        await s.svc.postman.deliver_due()
        subjects = Counter(str(m["Subject"]).split()[0] for m in smtp.messages if "@example.com" in str(m["To"]))
    assert (
        subjects["Choose"] == sent["reset"]
    )  # "Choose a new password ...": one per request for the registered address
    assert not [m for m in smtp.messages if str(m["To"]) == "x@example.com"]
