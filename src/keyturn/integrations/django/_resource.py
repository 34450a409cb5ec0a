"""The Django side of RFC 9728: the ``RESOURCE`` setting, and the metadata URL a challenge names.

The document itself is served by the view of :mod:`keyturn.integrations.django.urls`; a challenge
names its URL only while the URLconf routes that path to that view, so no challenge points at a
URL nobody serves.
"""

# Django ships no type information; without django-stubs its names are Any here.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import functools

from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import HttpRequest
from django.urls import Resolver404, resolve

from ...verify.resource import ProtectedResource, protected_resource

URL_NAME = "keyturn-protected-resource"


def resource_setting(value: object) -> ProtectedResource | None:
    """The checked ``settings.KEYTURN["RESOURCE"]`` (see :func:`keyturn.verify.resource.protected_resource`).

    Raises:
        ImproperlyConfigured: neither an https URL without query or fragment, a ProtectedResource,
            nor a boolean.
    """
    if not (value is None or isinstance(value, str | bool | ProtectedResource)):
        raise ImproperlyConfigured("settings.KEYTURN['RESOURCE'] must be an https URL, a ProtectedResource or False")
    return _parsed(value)


@functools.lru_cache(maxsize=32)  # config() reads the setting on every request
def _parsed(value: str | bool | ProtectedResource | None) -> ProtectedResource | None:
    try:
        return protected_resource(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"settings.KEYTURN['RESOURCE']: {exc}") from None


def metadata_url(request: HttpRequest, resource: ProtectedResource | None) -> str | None:
    """The metadata URL a challenge to ``request`` names: ``None`` when nothing is published, or the
    URLconf does not route the metadata path to keyturn's view."""
    if resource is None or not is_metadata(request, resource.path):
        return None
    try:
        host = request.get_host()
    except DisallowedHost:  # not in ALLOWED_HOSTS: name no URL built from it
        return None
    return resource.metadata_url(request.scheme, host, request.path.removesuffix(request.path_info))


def is_metadata(request: HttpRequest, path: str | None = None) -> bool:
    """Whether ``path`` (default: the request's own) routes to keyturn's metadata view."""
    try:
        match = resolve(request.path_info if path is None else path, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return bool(match.url_name == URL_NAME)
