"""Tests of keyturn.verify.discovery: where an issuer's metadata is looked for, in which order, and
which answers end the search.

Unit (no I/O): the locations of a table of issuers, and the sans-I/O search fed ``httpx.Response``
objects. Integration: a stub issuer on loopback (``tests/verify/issuer.py``) whose issuer has a
path and serves its metadata at one location only; a ``Verifier`` finds its keys and its
revocation feed there (sync and async), and refuses metadata about another issuer, or an error
answer, without looking further.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from keyturn.core.errors import ConfigurationError, KeyturnError, Unavailable
from keyturn.core.keys import generate_key
from keyturn.core.tokens import issue_access_token
from keyturn.verify import RevocationFeed, Verifier
from keyturn.verify.discovery import discover, metadata_url, metadata_urls
from tests.verify.issuer import Answer, stub_issuer
from tests.verify.test_revocations import FEED_DOWN, following

OAUTH = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"
A = "https://a.example"

# issuer -> the locations of its metadata, in order: RFC 8414 §3.1, legacy (with a path only), OIDC.
LOCATIONS: dict[str, tuple[str, ...]] = {
    A: (f"{A}{OAUTH}", f"{A}{OIDC}"),
    f"{A}/": (f"{A}{OAUTH}", f"{A}{OIDC}"),
    f"{A}/tenant1": (f"{A}{OAUTH}/tenant1", f"{A}/tenant1{OAUTH}", f"{A}/tenant1{OIDC}"),
    f"{A}/tenant1/": (f"{A}{OAUTH}/tenant1", f"{A}/tenant1{OAUTH}", f"{A}/tenant1{OIDC}"),
    "http://127.0.0.1:8080/a/b": (
        f"http://127.0.0.1:8080{OAUTH}/a/b", f"http://127.0.0.1:8080/a/b{OAUTH}", f"http://127.0.0.1:8080/a/b{OIDC}",
    ),
    "https://a.example:8443": (f"https://a.example:8443{OAUTH}", f"https://a.example:8443{OIDC}"),
}  # fmt: skip


# --- unit: locations and the search ---------------------------------------------------------------


@pytest.mark.parametrize(("issuer", "urls"), LOCATIONS.items(), ids=list(LOCATIONS))
def test_metadata_locations_in_order(issuer: str, urls: tuple[str, ...]) -> None:
    """Path-aware RFC 8414 location first, the legacy one only for an issuer with a path, OIDC last."""
    assert metadata_urls(issuer) == urls
    assert metadata_url(issuer) == urls[0]


def search(issuer: str, answers: dict[str, httpx.Response]) -> tuple[list[str], Any]:
    """Run :func:`discover` against ``answers`` (404 for any other URL): the URLs it asked, and
    what it returned or raised."""
    asked: list[str] = []
    steps = discover(issuer)
    try:
        url = next(steps)
        while True:
            asked.append(url)
            url = steps.send(answers.get(url, httpx.Response(404)))
    except StopIteration as done:
        return asked, done.value
    except KeyturnError as exc:
        return asked, exc


def test_not_found_everywhere_is_no_metadata() -> None:
    """404, 405 and 410 each send the search on; after the last location, there is no metadata."""
    issuer = f"{A}/tenant1"
    urls = metadata_urls(issuer)
    answers = {url: httpx.Response(status) for url, status in zip(urls, (405, 410, 404), strict=True)}
    assert search(issuer, answers) == (list(urls), None)


@pytest.mark.parametrize("where", [0, 1, 2], ids=["path-aware", "legacy", "openid-configuration"])
def test_the_first_document_found_is_the_metadata(where: int) -> None:
    """The search stops at the first location that has a document about the issuer."""
    issuer = f"{A}/tenant1"
    urls = metadata_urls(issuer)
    document = {"issuer": issuer, "jwks_uri": f"{issuer}/jwks"}
    asked, found = search(issuer, {urls[where]: httpx.Response(200, json=document)})
    assert (asked, found) == (list(urls[: where + 1]), document)


@pytest.mark.parametrize(
    ("answer", "error", "reason"),
    [
        (httpx.Response(500), Unavailable, f"The issuer's metadata at {A}{OAUTH}/t answered HTTP 500."),
        (httpx.Response(429), Unavailable, f"The issuer's metadata at {A}{OAUTH}/t answered HTTP 429."),
        (httpx.Response(403), ConfigurationError, f"issuer: the metadata at {A}{OAUTH}/t answered HTTP 403"),
        (httpx.Response(200, text="<html>"), ConfigurationError, "is not a JSON object"),
        (httpx.Response(200, json=["a list"]), ConfigurationError, "is not a JSON object"),
        (
            httpx.Response(200, json={"issuer": "https://evil.example"}), ConfigurationError,
            f"issuer: the metadata at {A}{OAUTH}/t is about another issuer ('https://evil.example') (RFC 8414 §3.3)",
        ),
        (httpx.Response(200, json={"issuer": f"{A}/t/"}), ConfigurationError, "about another issuer ('https://a.example/t/')"),
        (httpx.Response(200, json={"jwks_uri": f"{A}/jwks"}), ConfigurationError, "about another issuer (None)"),
    ],
    ids=["500", "429", "403", "not-json", "not-an-object", "other-issuer", "trailing-slash", "no-issuer"],
)  # fmt: skip
def test_any_other_answer_ends_the_search(answer: httpx.Response, error: type[KeyturnError], reason: str) -> None:
    """An error, or a document not exactly about the issuer (RFC 8414 §3.3), at the first location
    is a failure with its reason: the next locations are not asked, so a valid OIDC document there
    is never used."""
    issuer = f"{A}/t"
    urls = metadata_urls(issuer)
    valid = httpx.Response(200, json={"issuer": issuer})
    asked, refused = search(issuer, {urls[0]: answer, urls[-1]: valid})
    assert asked == [urls[0]]
    assert isinstance(refused, error)
    assert reason in refused.description
    if isinstance(refused, ConfigurationError):
        assert refused.setting == "issuer"


# --- integration: a stub issuer with a path ---------------------------------------------------------

FEED_PAGE = {"cursor": "e1.0", "entries": [], "more": False, "reset": False}
PLACES = {"path-aware": f"{OAUTH}/tenant1", "legacy": f"/tenant1{OAUTH}", "openid-configuration": f"/tenant1{OIDC}"}


@dataclass
class Tenant:
    """A stub issuer with a path: its URL, a token it issued, what it serves, and the paths asked."""

    issuer: str
    token: str
    documents: dict[str, Any]
    hits: list[str]


@contextmanager
def tenant(metadata_at: str, metadata: Any = None) -> Iterator[Tenant]:
    """A stub issuer ``<url>/tenant1`` serving its JWKS, its feed (an empty page) and, at
    ``metadata_at`` only, ``metadata`` (by default its own, naming both)."""
    key = generate_key("ES256", now=datetime.now(UTC) - timedelta(minutes=1))
    documents: dict[str, Any] = {"/tenant1/jwks": {"keys": [key.public_jwk()]}, "/tenant1/revocations": FEED_PAGE}
    hits: list[str] = []
    with stub_issuer(documents, hits) as url:
        issuer = f"{url}/tenant1"
        documents[metadata_at] = metadata or {
            "issuer": issuer, "jwks_uri": f"{issuer}/jwks", "keyturn_revocations_endpoint": f"{issuer}/revocations",
        }  # fmt: skip
        token, _ = issue_access_token(
            key, issuer=issuer, audience=issuer, subject="user-1", session_id="s-1", client_id="keyturn",
            scope="profile", now=datetime.now(UTC), ttl=timedelta(minutes=5),
        )  # fmt: skip
        yield Tenant(issuer, token, documents, hits)


def metadata_asked(hits: list[str]) -> list[str]:
    """The metadata locations asked, in order (by the JWKS cache, then by the feed's follower)."""
    return [path for path in hits if path in PLACES.values()]


@pytest.mark.parametrize("place", PLACES)
def test_keys_and_feed_are_found_wherever_the_metadata_is(place: str) -> None:
    """Metadata at one location only: the keys it names verify the token, the feed it names is followed."""
    with tenant(PLACES[place]) as stub:
        verifier = Verifier(stub.issuer, stub.issuer)
        try:
            assert verifier.verify(stub.token).sub == "user-1"
            assert verifier.revocations is not None
            assert verifier.revocations.url == f"{stub.issuer}/revocations"
            status = verifier.status()
            assert status is not None
            assert status.state == "following"
        finally:
            verifier.close()
    earlier = list(PLACES.values())[: list(PLACES).index(place) + 1]
    assert metadata_asked(stub.hits) == earlier * 2  # each of the two asked in order, up to the one that answered


@pytest.mark.anyio
@pytest.mark.parametrize("place", PLACES)
async def test_keys_and_feed_are_found_wherever_the_metadata_is_async(place: str) -> None:
    """The same through ``verify_async`` (async JWKS fetch, the follower a task)."""
    with tenant(PLACES[place]) as stub:
        async with following(stub.issuer) as verifier:
            assert (await verifier.verify_async(stub.token)).sub == "user-1"
            assert verifier.revocations is not None
            assert verifier.revocations.url == f"{stub.issuer}/revocations"
    assert metadata_asked(stub.hits) == list(PLACES.values())[: list(PLACES).index(place) + 1] * 2


REFUSED = [
    (Answer(200, {"issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks"}),
     "is about another issuer ('https://evil.example') (RFC 8414 §3.3)"),
    (Answer(500), "answered HTTP 500"),
]  # fmt: skip


@contextmanager
def refusing(answer: Answer) -> Iterator[Tenant]:
    """A tenant whose first location sends ``answer`` and whose last has valid metadata."""
    with tenant(PLACES["path-aware"], answer) as stub:
        stub.documents[PLACES["openid-configuration"]] = {"issuer": stub.issuer, "jwks_uri": f"{stub.issuer}/jwks"}
        yield stub


@pytest.mark.parametrize(("answer", "reason"), REFUSED, ids=["other-issuer", "500"])
def test_keys_are_not_fetched_through_refused_metadata(
    answer: Answer, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first location answers metadata about another issuer, or 500: no keys (503 Unavailable),
    the log says why, and neither the JWKS it names nor a later location (valid OIDC) is asked."""
    with refusing(answer) as stub, caplog.at_level(logging.WARNING, logger="keyturn.jwks"):
        verifier = Verifier(stub.issuer, stub.issuer, revocations=False)
        with pytest.raises(Unavailable) as refused:
            verifier.verify(stub.token)
    assert refused.value.description == "The issuer's signing keys could not be fetched."
    assert stub.hits == [PLACES["path-aware"]]
    assert any(reason in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(("answer", "reason"), REFUSED, ids=["other-issuer", "500"])
def test_the_feed_is_not_found_through_refused_metadata(answer: Answer, reason: str) -> None:
    """Keys given by URL, metadata refused: the feed cannot be found, so the verifier fails closed
    (503) and ``status()`` names the reason; the valid OIDC metadata is never asked."""
    with refusing(answer) as stub:
        feed = RevocationFeed(max_staleness=timedelta(seconds=3), wait=timedelta(seconds=1), timeout=1.0)
        verifier = Verifier(stub.issuer, stub.issuer, jwks_url=f"{stub.issuer}/jwks", revocations=feed)
        try:
            with pytest.raises(Unavailable) as refused:
                verifier.verify(stub.token)
            status = verifier.status()
        finally:
            verifier.close()
    assert refused.value.description == FEED_DOWN
    assert status is not None
    assert (status.state, status.failures >= 2) == ("stale", True)
    assert status.last_error is not None
    assert reason in status.last_error
    assert set(metadata_asked(stub.hits)) == {PLACES["path-aware"]}
