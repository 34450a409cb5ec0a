"""Finding an issuer's metadata, which names its keys (``jwks_uri``) and its revocation feed.

The locations are tried in this order (:func:`metadata_urls`):

1. RFC 8414 §3.1: ``/.well-known/oauth-authorization-server`` inserted between the host and the
   issuer's path (``https://a.example/t1`` -> ``https://a.example/.well-known/oauth-authorization-server/t1``);
2. for an issuer with a path only, ``<issuer>/.well-known/oauth-authorization-server``: where
   earlier keyturn servers, and others, serve it (RFC 8414 §5);
3. OpenID Connect Discovery 1.0 §4: ``<issuer>/.well-known/openid-configuration``, what most other
   issuers serve (Keycloak, Auth0, Okta...).

The next location is asked only when one answers 404, 405 or 410 (nothing there). Any other
answer ends the search: an error is a failure (the issuer is failing, not absent), and a document
is used only if its ``issuer`` is exactly the configured one (RFC 8414 §3.3, OpenID Connect
Discovery §4.3); one about another issuer is refused, never used.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..core.errors import ConfigurationError, Unavailable

__all__ = ["Discovery", "discover", "fetch_metadata", "fetch_metadata_async", "metadata_url", "metadata_urls"]

OAUTH_METADATA = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
_NOT_THERE = frozenset({404, 405, 410})
_MAX_METADATA_BYTES = 256 * 1024
_ACCEPT = {"Accept": "application/json"}

Discovery = Generator[str, httpx.Response, dict[str, Any] | None]
"""A sans-I/O search: yields each URL to GET and is sent its response (see :func:`discover`)."""


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where ``issuer``'s metadata may be, in the order to try (see the module docstring).

    A terminating ``/`` of the issuer is removed first (RFC 8414 §3.1); an issuer has no query or
    fragment (RFC 8414 §2), and any is left out.
    """
    parts = urlsplit(issuer.rstrip("/"))
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    legacy = (f"{origin}{path}{OAUTH_METADATA}",) if path else ()
    return (f"{origin}{OAUTH_METADATA}{path}", *legacy, f"{origin}{path}{OPENID_CONFIGURATION}")


def metadata_url(issuer: str) -> str:
    """Where ``issuer``'s RFC 8414 metadata is (§3.1), the first of :func:`metadata_urls`."""
    return metadata_urls(issuer)[0]


def discover(issuer: str) -> Discovery:
    """Find ``issuer``'s metadata without doing I/O: yields each URL to GET, and is sent its response.

    Returns:
        The metadata (a JSON object whose ``issuer`` is exactly ``issuer``), or ``None`` when no
        location has any.

    Raises:
        Unavailable: a location answered 5xx or 429; the next one is not asked.
        ConfigurationError: (``setting == "issuer"``) a location answered another error, something
            that is not a JSON object, or metadata about another issuer (RFC 8414 §3.3).
    """
    for url in metadata_urls(issuer):
        response = yield url
        if response.status_code not in _NOT_THERE:
            return _metadata(response, url, issuer)
    return None


def fetch_metadata(http: httpx.Client, issuer: str) -> dict[str, Any] | None:
    """:func:`discover` through a sync client (same result and errors, and ``httpx.HTTPError``)."""
    search = discover(issuer)
    try:
        url = next(search)
        while True:
            url = search.send(http.get(url, headers=_ACCEPT))
    except StopIteration as found:
        metadata: dict[str, Any] | None = found.value
        return metadata


async def fetch_metadata_async(http: httpx.AsyncClient, issuer: str) -> dict[str, Any] | None:
    """:func:`discover` through an async client."""
    search = discover(issuer)
    try:
        url = next(search)
        while True:
            url = search.send(await http.get(url, headers=_ACCEPT))
    except StopIteration as found:
        metadata: dict[str, Any] | None = found.value
        return metadata


def _metadata(response: httpx.Response, url: str, issuer: str) -> dict[str, Any]:
    """The document ``url`` answered, if it is metadata about ``issuer``."""
    status = response.status_code
    if status >= 500 or status == 429:
        raise Unavailable(f"The issuer's metadata at {url} answered HTTP {status}.")
    if status != 200:
        raise ConfigurationError("issuer", f"the metadata at {url} answered HTTP {status}")
    try:
        document = response.json() if len(response.content) <= _MAX_METADATA_BYTES else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ConfigurationError("issuer", f"the metadata at {url} is not a JSON object")
    named = document.get("issuer")
    if named != issuer:  # exactly: the issuer's tokens must carry this very string as `iss`
        shown = repr(named)[:100]
        raise ConfigurationError("issuer", f"the metadata at {url} is about another issuer ({shown}) (RFC 8414 §3.3)")
    return document
