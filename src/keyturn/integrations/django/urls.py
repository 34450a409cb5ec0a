"""The API's RFC 9728 metadata document, for the root of a URLconf::

    urlpatterns = [..., path("", include("keyturn.integrations.django.urls"))]

It answers GET ``/.well-known/oauth-protected-resource``, plus the path of
``settings.KEYTURN["RESOURCE"]`` if it has one (``https://example.com/api`` ->
``/.well-known/oauth-protected-resource/api``, RFC 9728 §3), with no token needed; any other path
under it is 404. Once it is included, every keyturn challenge names that URL (§5.1).
"""

# Django ships no type information; without django-stubs its names (and decorators) are Any here.
# mypy: disable-error-code="import-untyped, untyped-decorator"

from __future__ import annotations

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import re_path
from django.views.decorators.http import require_safe

from . import config
from ._resource import URL_NAME

__all__ = ["urlpatterns"]


@require_safe
def protected_resource(request: HttpRequest) -> JsonResponse:
    """The metadata of this API (RFC 9728 §3.2), or 404 where none is published."""
    current = config()
    resource = current.resource
    if resource is None or request.path_info != resource.path:
        raise Http404("keyturn publishes no metadata at this path")
    root = request.path.removesuffix(request.path_info)
    reply = resource.answer(current.issuer, request.scheme, request.get_host(), root)
    return JsonResponse(reply.body, status=reply.status, headers=reply.headers)


urlpatterns = [re_path(r"^\.well-known/oauth-protected-resource(?:/.*)?$", protected_resource, name=URL_NAME)]
