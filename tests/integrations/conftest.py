"""Fixtures of the adapter integration tests: a real keyturn server per module, and Django's settings.

Django's settings are process-global, so they are configured here, once, for every test in this folder
(the ``KEYTURN`` setting itself is set per test module, when its server's URL is known).
"""

from __future__ import annotations

import django
import pytest
from django.conf import settings

from tests.integrations.tokens import Tokens
from tests.servers import Server, keyturn_fixture

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="keyturn-integration-tests-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="tests.integrations.test_django",
        INSTALLED_APPS=[],
        DATABASES={},
        MIDDLEWARE=["keyturn.integrations.django.KeyturnMiddleware"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["keyturn.integrations.django.drf.KeyturnAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["keyturn.integrations.django.drf.HasScopes"],
            "EXCEPTION_HANDLER": "keyturn.integrations.django.drf.keyturn_exception_handler",
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
            "UNAUTHENTICATED_USER": None,  # no django.contrib.auth: anonymous requests get user None
        },
    )
    django.setup()


# `keyturn --dev serve` issuing 1-second access tokens, so an expired token takes a second to get.
server = keyturn_fixture("--dev", access_token_ttl="1")


@pytest.fixture(scope="module")
def tokens(server: Server) -> Tokens:
    return Tokens.for_new_user(server)
