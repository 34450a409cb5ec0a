"""RFC 9728: the metadata a resource server publishes about itself, so clients find where to get a token.

An API that verifies keyturn tokens is an OAuth *protected resource*. It publishes a JSON document
(§2: its ``resource`` identifier, the ``authorization_servers`` whose tokens it takes, how to send
them) at ``/.well-known/oauth-protected-resource`` inserted between the host and the path of its
resource identifier (§3), and names that URL in the ``resource_metadata`` parameter of every Bearer
challenge it sends (§5.1), so a client refused with 401 can discover the issuer by itself.

Framework-free: each adapter (``keyturn.integrations.*``) serves :meth:`ProtectedResource.answer`
at :attr:`ProtectedResource.path` and passes :meth:`ProtectedResource.metadata_url` to
:func:`keyturn.verify.bearer.answer`. The resource identifier is either given
(``ProtectedResource("https://api.example.com")``, checked at once) or derived from each request:
its scheme and ``Host``, for an app served at the host's root (see :meth:`ProtectedResource.identifier`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..core.tokens import scope_names

__all__ = ["WELL_KNOWN", "MetadataAnswer", "ProtectedResource", "protected_resource", "well_known_url"]

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_MAX_AGE = 3600  # seconds a client may reuse the document

# A host (a name or an IP literal) and an optional port: no user info, nothing to escape in a header.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# RFC 3986 path segments without percent-escapes: what every framework routes as written, and
# nothing (a quote, a backslash, a space) that would need escaping in a quoted-string.
_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]*)*")


class MetadataAnswer(NamedTuple):
    """What to send for a GET of the metadata URL: ``status``, JSON ``body`` and ``headers``."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True, slots=True, init=False)
class ProtectedResource:
    """A resource server's RFC 9728 metadata: its identifier (given, or derived per request) and
    the optional members it adds. Immutable and hashable (a Django setting may hold one)."""

    resource: str | None
    scopes: tuple[str, ...]
    name: str | None
    documentation: str | None
    path: str = field(compare=False, repr=False)
    _url: str | None = field(compare=False, repr=False)

    def __init__(
        self,
        resource: str | None = None,
        *,
        scopes: str | Iterable[str] = (),
        name: str | None = None,
        documentation: str | None = None,
    ) -> None:
        """
        Args:
            resource: the API's resource identifier, the URL clients call it by
                (``https://api.example.com``, ``https://example.com/api``); ``http`` only on
                loopback. Default: derived from each request (see :meth:`identifier`).
            scopes: published as ``scopes_supported`` (only when given): the scopes clients ask
                the issuer for to call this API.
            name: published as ``resource_name``, for display to end users.
            documentation: published as ``resource_documentation``: a URL of developer documentation.

        Raises:
            ValueError: ``resource`` is not such a URL: another scheme, a query or fragment, user
                info, or a character that would need escaping (a quote, a backslash, a space, ``%``).
        """
        identifier = None if resource is None else _checked(resource)
        if documentation is not None and not documentation.startswith(("https://", "http://")):
            raise ValueError(f"documentation {documentation!r} must be an http(s) URL")
        set_ = object.__setattr__  # a frozen dataclass sets its fields once, here
        set_(self, "resource", identifier)
        set_(self, "scopes", scope_names(scopes))
        set_(self, "name", name)
        set_(self, "documentation", documentation)
        set_(self, "path", WELL_KNOWN + _split(identifier)[1] if identifier else WELL_KNOWN)
        set_(self, "_url", None if identifier is None else well_known_url(identifier))

    def identifier(self, scheme: str, host: str, root_path: str = "") -> str | None:
        """The resource identifier for a request with this scheme, ``Host`` and mount point.

        A given identifier is the answer whatever the request. Otherwise it is ``scheme://host``,
        for an app at the host's root (``root_path`` empty: the well-known URL of an app mounted
        under a path lies outside it), with an ``https`` scheme, or ``http`` on loopback, and a
        ``Host`` that is a plain host and port; else ``None``: nothing is published.
        """
        if self.resource is not None:
            return self.resource
        if root_path or not _HOST.fullmatch(host):
            return None
        if scheme == "https" or (scheme == "http" and _loopback(host)):
            return f"{scheme}://{host}"
        return None

    def metadata_url(self, scheme: str, host: str, root_path: str = "") -> str | None:
        """The URL to name in ``resource_metadata`` for such a request (``None``: name none)."""
        if self._url is not None:
            return self._url
        identifier = self.identifier(scheme, host, root_path)
        return None if identifier is None else well_known_url(identifier)

    def document(self, identifier: str, issuer: str) -> dict[str, Any]:
        """The metadata (RFC 9728 §2) of the resource ``identifier``, whose tokens ``issuer`` issues."""
        body: dict[str, Any] = {
            "resource": identifier,
            "authorization_servers": [issuer],
            "bearer_methods_supported": ["header"],  # RFC 6750 §2.1, the only way keyturn reads tokens
        }
        if self.scopes:  # §3.2: a member with zero values is omitted
            body["scopes_supported"] = list(self.scopes)
        if self.name is not None:
            body["resource_name"] = self.name
        if self.documentation is not None:
            body["resource_documentation"] = self.documentation
        return body

    def answer(self, issuer: str, scheme: str, host: str, root_path: str = "") -> MetadataAnswer:
        """The answer to a GET of :attr:`path`: 200 with the document (§3.2), or 404 when a
        derived identifier cannot be had for this request.

        A given identifier's document is the same for everyone: ``public`` caches may keep it.
        A derived one depends on the request's ``Host``: ``private``, so no shared cache serves
        one client's answer to another.
        """
        identifier = self.identifier(scheme, host, root_path)
        if identifier is None:
            body = {"error": "not_found", "error_description": "This API publishes no metadata at this address."}
            return MetadataAnswer(404, body, {"Cache-Control": "no-store"})
        shared = "public" if self.resource is not None else "private"
        headers = {"Cache-Control": f"{shared}, max-age={_MAX_AGE}"}
        return MetadataAnswer(200, self.document(identifier, issuer), headers)


def protected_resource(value: str | ProtectedResource | bool | None) -> ProtectedResource | None:
    """What an adapter's ``resource=`` argument means: a URL or a :class:`ProtectedResource` is
    published; ``None`` (the default) or ``True`` publish an identifier derived per request;
    ``False`` publishes nothing.

    Raises:
        ValueError: the URL is not a resource identifier (see :class:`ProtectedResource`).
    """
    if value is False:
        return None
    if value is None or value is True:
        return ProtectedResource()
    return value if isinstance(value, ProtectedResource) else ProtectedResource(value)


def well_known_url(identifier: str) -> str:
    """Where the metadata of ``identifier`` is (RFC 9728 §3): the well-known path inserted between
    the host and the path (``https://a.example/v1`` -> ``https://a.example/.well-known/oauth-protected-resource/v1``).
    """
    origin, path = _split(identifier)
    return f"{origin}{WELL_KNOWN}{path}"


def _split(identifier: str) -> tuple[str, str]:
    """The origin and the path of ``identifier``; a lone ``/`` is no path (§3.1: a terminating slash
    after the host is removed before the insertion)."""
    scheme, _, rest = identifier.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}", "" if not path else slash + path


def _checked(resource: str) -> str:
    """``resource`` if it is a resource identifier this module can publish and quote (§1.2)."""
    if not isinstance(resource, str):
        raise TypeError(f"resource must be a URL string, not {type(resource).__name__}")
    if "?" in resource or "#" in resource:
        raise ValueError(f"resource {resource!r} must have no query or fragment (RFC 9728 §1.2, RFC 8707 §2)")
    scheme, sep, rest = resource.partition("://")
    host, slash, path = rest.partition("/")
    if not sep or scheme not in ("https", "http") or not _HOST.fullmatch(host):
        raise ValueError(f"resource {resource!r} must be an absolute https URL with a host and no user info")
    if not _PATH.fullmatch(slash + path):
        raise ValueError(
            f"resource {resource!r} has a path with characters it may not hold (quotes, spaces, '\\', '%')"
        )
    if scheme == "http" and not _loopback(host):
        raise ValueError(f"resource {resource!r} must use https (RFC 9728 §1.2); http only on loopback")
    return resource


def _loopback(host: str) -> bool:
    """Whether ``host`` (with its port, if any) names this machine: ``localhost`` or a loopback IP."""
    name = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
