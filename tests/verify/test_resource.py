"""Unit tests (no I/O) of keyturn.verify.resource: a resource server's RFC 9728 metadata, where it
lives, which identifiers it accepts or derives, and the answer its well-known URL gives.
"""

from __future__ import annotations

import pytest

from keyturn.verify import ProtectedResource
from keyturn.verify.resource import WELL_KNOWN, protected_resource, well_known_url

ISSUER = "https://auth.example.com"


@pytest.mark.parametrize(
    ("identifier", "path"),
    [
        ("https://api.example.com", ""),
        ("https://api.example.com/", ""),
        ("https://example.com/v1", "/v1"),
        ("https://example.com:8443/a/b", "/a/b"),
        ("http://127.0.0.1:8000", ""),
    ],
)
def test_the_well_known_url_goes_between_host_and_path(identifier: str, path: str) -> None:
    """RFC 9728 §3: the well-known string is inserted after the host, before the path; a lone `/` is no path."""
    origin = identifier.removesuffix("/").removesuffix(path)
    assert well_known_url(identifier) == f"{origin}/.well-known/oauth-protected-resource{path}"
    resource = ProtectedResource(identifier)
    assert resource.metadata_url("https", "elsewhere.example", "/mount") == well_known_url(identifier)
    assert resource.path == f"/.well-known/oauth-protected-resource{path}"


def test_a_given_identifier_is_kept_exactly() -> None:
    """§3.3: `resource` must be identical to the identifier the client used: no trailing slash added or removed."""
    for identifier in ("https://api.example.com", "https://api.example.com/", "https://example.com/v1/"):
        resource = ProtectedResource(identifier)
        assert resource.resource == identifier
        assert resource.document(identifier, ISSUER)["resource"] == identifier


def test_the_document_has_the_members_of_section_2() -> None:
    """resource, the verifier's issuer as the one authorization server, and header as the one bearer method."""
    resource = ProtectedResource("https://api.example.com")
    assert resource.document("https://api.example.com", ISSUER) == {
        "resource": "https://api.example.com",
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
    }


def test_optional_members_appear_only_when_given() -> None:
    """scopes_supported (a space-separated string or a list), resource_name and resource_documentation."""
    resource = ProtectedResource(
        "https://api.example.com",
        scopes="orders:read orders:write",
        name="Orders",
        documentation="https://docs.example",
    )
    document = resource.document("https://api.example.com", ISSUER)
    assert document["scopes_supported"] == ["orders:read", "orders:write"]
    assert (document["resource_name"], document["resource_documentation"]) == ("Orders", "https://docs.example")
    assert ProtectedResource(scopes=["a"]).document("https://x.example", ISSUER)["scopes_supported"] == ["a"]


@pytest.mark.parametrize(
    ("identifier", "complaint"),
    [
        ("https://api.example.com/v1?tenant=a", "no query or fragment"),
        ("https://api.example.com?", "no query or fragment"),
        ("https://api.example.com#top", "no query or fragment"),
        ("http://api.example.com", "must use https"),
        ("http://10.0.0.1:8000", "must use https"),
        ("ftp://api.example.com", "absolute https URL"),
        ("api.example.com", "absolute https URL"),
        ("https://", "absolute https URL"),
        ("https://user:pw@api.example.com", "no user info"),
        ('https://api.example.com/a"b', "characters it may not hold"),
        ("https://api.example.com/a\\b", "characters it may not hold"),
        ("https://api.example.com/a b", "characters it may not hold"),
        ("https://api.example.com/a%20b", "characters it may not hold"),
        ('https://api.example.com"', "absolute https URL"),
    ],
)
def test_identifiers_that_cannot_be_published_are_refused(identifier: str, complaint: str) -> None:
    """§1.2: https, no query or fragment; and nothing that a quoted challenge or a route would mangle."""
    with pytest.raises(ValueError, match=complaint):
        ProtectedResource(identifier)


@pytest.mark.parametrize("identifier", ["http://127.0.0.1:8000", "http://localhost:5000/api", "http://[::1]:8080"])
def test_http_is_accepted_on_loopback(identifier: str) -> None:
    """Development servers on this machine may publish an http identifier."""
    assert ProtectedResource(identifier).resource == identifier


def test_documentation_must_be_a_url() -> None:
    """resource_documentation is a URL (§2); anything else is refused at once."""
    with pytest.raises(ValueError, match="documentation"):
        ProtectedResource("https://api.example.com", documentation="see the wiki")


@pytest.mark.parametrize(
    ("scheme", "host", "root_path", "identifier"),
    [
        ("https", "api.example.com", "", "https://api.example.com"),
        ("https", "api.example.com:8443", "", "https://api.example.com:8443"),
        ("http", "127.0.0.1:8000", "", "http://127.0.0.1:8000"),
        ("http", "localhost", "", "http://localhost"),
        ("http", "[::1]:8000", "", "http://[::1]:8000"),
        ("http", "api.example.com", "", None),
        ("https", "api.example.com", "/api", None),
        ("https", "", "", None),
        ("https", 'evil"host', "", None),
        ("https", "user@api.example.com", "", None),
        ("https", "api.example.com/x", "", None),
        ("ws", "127.0.0.1", "", None),
    ],
)
def test_a_derived_identifier_is_the_requests_origin(
    scheme: str, host: str, root_path: str, identifier: str | None
) -> None:
    """Without a given identifier: https://<host> (http on loopback) for an app at the host's root; else none."""
    resource = ProtectedResource()
    assert resource.identifier(scheme, host, root_path) == identifier
    expected = None if identifier is None else f"{identifier}{WELL_KNOWN}"
    assert resource.metadata_url(scheme, host, root_path) == expected
    assert resource.path == WELL_KNOWN


def test_a_given_identifier_ignores_the_request() -> None:
    """A configured identifier is published whatever Host, scheme or mount point a request has."""
    resource = ProtectedResource("https://example.com/api")
    assert resource.identifier("http", 'evil"host', "/x") == "https://example.com/api"
    assert resource.metadata_url("http", "10.0.0.1", "") == f"https://example.com{WELL_KNOWN}/api"


def test_the_answer_of_a_given_identifier_may_be_cached_by_anyone() -> None:
    """200 with the document and `Cache-Control: public, max-age=3600` (it is the same for every client)."""
    reply = ProtectedResource("https://api.example.com").answer(ISSUER, "http", "whatever")
    assert reply.status == 200
    assert reply.body["resource"] == "https://api.example.com"
    assert reply.headers == {"Cache-Control": "public, max-age=3600"}


def test_the_answer_of_a_derived_identifier_is_private() -> None:
    """Derived from the Host header: cached by the client only, never by a shared cache."""
    reply = ProtectedResource().answer(ISSUER, "https", "api.example.com")
    assert (reply.status, reply.body["resource"]) == (200, "https://api.example.com")
    assert reply.headers == {"Cache-Control": "private, max-age=3600"}


def test_no_derived_identifier_is_a_404() -> None:
    """A request an identifier cannot be derived from gets 404 not_found, never a document."""
    reply = ProtectedResource().answer(ISSUER, "http", "api.example.com")
    assert reply.status == 404
    assert reply.body["error"] == "not_found"
    assert reply.headers == {"Cache-Control": "no-store"}


def test_what_an_adapters_resource_argument_means() -> None:
    """None and True derive per request, False publishes nothing, a URL or a ProtectedResource is used as given."""
    assert protected_resource(None) == protected_resource(True) == ProtectedResource()
    assert protected_resource(False) is None
    assert protected_resource("https://api.example.com") == ProtectedResource("https://api.example.com")
    given = ProtectedResource("https://api.example.com", name="Orders")
    assert protected_resource(given) is given
    with pytest.raises(ValueError, match="no query"):
        protected_resource("https://api.example.com?x=1")


def test_protected_resources_are_values() -> None:
    """Equal when their members are, and hashable (a Django setting may hold one)."""
    assert ProtectedResource("https://a.example", scopes="x y") == ProtectedResource(
        "https://a.example", scopes=["x", "y"]
    )
    assert len({ProtectedResource(), ProtectedResource(), ProtectedResource("https://a.example")}) == 2
