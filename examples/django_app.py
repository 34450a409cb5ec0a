"""A Django resource server in one file, protected by keyturn access tokens verified offline:
a plain Django view and a Django REST Framework view.

Run (with `keyturn --dev serve` running on port 8000; Django and DRF are not part of `.[server]`):

    .venv/bin/pip install -q -c constraints.txt -e '.[django]'
    .venv/bin/python examples/django_app.py runserver 8003          # serves http://127.0.0.1:8003

Settings: KEYTURN_ISSUER (default http://127.0.0.1:8000), KEYTURN_AUDIENCE (default: the issuer).
"""

from __future__ import annotations

import os
import secrets
import sys

from django.conf import settings

issuer = os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8000")
settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY=secrets.token_urlsafe(50),  # nothing here is signed with it: no sessions, no cookies
    INSTALLED_APPS=[],
    DATABASES={},
    MIDDLEWARE=["keyturn.integrations.django.KeyturnMiddleware"],
    KEYTURN={"ISSUER": issuer, "AUDIENCE": os.environ.get("KEYTURN_AUDIENCE", issuer)},
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["keyturn.integrations.django.drf.KeyturnAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["keyturn.integrations.django.drf.HasScopes"],
        "EXCEPTION_HANDLER": "keyturn.integrations.django.drf.keyturn_exception_handler",
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "UNAUTHENTICATED_USER": None,  # no django.contrib.auth in this project
    },
)

# Django REST Framework reads the settings as it is imported, so these imports come after them.
from django.core.management import execute_from_command_line  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from keyturn.integrations.django import require_token  # noqa: E402


def public(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "anyone"})


@require_token(scopes=["profile"])
def orders(request: HttpRequest) -> JsonResponse:
    claims = request.keyturn_claims  # set by KeyturnMiddleware
    return JsonResponse({"user": claims.sub, "scope": list(claims.scope), "orders": []})


class Invoices(APIView):
    required_scopes = ("profile",)  # checked by HasScopes, the default permission above

    def get(self, request: Request) -> Response:
        return Response({"user": request.user.username, "scope": list(request.auth.scope), "invoices": []})


urlpatterns = [
    path("", include("keyturn.integrations.django.urls")),  # RFC 9728: /.well-known/oauth-protected-resource
    path("public", public),
    path("orders", orders),
    path("api/invoices", Invoices.as_view()),
]

if __name__ == "__main__":
    execute_from_command_line(sys.argv)
