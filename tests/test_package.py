"""Unit tests of the public import paths: the exact names each one promises, and what importing it loads.

The public API is pinned here as literal lists, so adding, removing or renaming a public name is a
visible change to this file (and to the changelog). Every check runs in a fresh Python interpreter
(a subprocess, nothing else): what an import loads, and what it defines, must not depend on what
earlier tests imported, and the Django adapter's modules are imported without configuring Django.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from typing import Any

import pytest

import keyturn

PUBLIC_API: dict[str, list[str]] = {
    "keyturn": [
        "AccessClaims", "BadSignature", "InvalidClaim", "InvalidGrant", "InvalidToken", "KeyRing", "KeyturnError",
        "SigningKey", "TokenExpired", "UnknownKey", "issue_access_token", "verify_access_token",
    ],
    "keyturn.verify": [
        "FeedStatus", "JwksPolicy", "KeySource", "ProtectedResource", "RevocationFeed", "SyncKeySource", "Verifier",
    ],
    "keyturn.client": [
        "ClientCredentialsAuth", "FileTokenStore", "KeyturnAuth", "MemoryTokenStore", "TokenStore", "Tokens",
    ],
    "keyturn.integrations.fastapi": ["BearerToken", "require_token", "setup"],
    "keyturn.integrations.starlette": [
        "KeyturnBackend", "KeyturnMiddleware", "KeyturnUser", "keyturn_middleware", "on_error", "requires",
    ],
    "keyturn.integrations.flask": ["Keyturn", "KeyturnState", "current_claims", "require_token"],
    "keyturn.integrations.django": [
        "KeyturnConfig", "KeyturnMiddleware", "config", "error_response", "get_verifier", "require_token",
    ],
    "keyturn.integrations.django.drf": [
        "HasScopes", "KeyturnAPIException", "KeyturnAuthentication", "KeyturnAuthenticationFailed",
        "KeyturnPermissionDenied", "KeyturnPrincipal", "keyturn_exception_handler",
    ],
}  # fmt: skip

HEAVY = (
    "fastapi", "starlette", "sqlalchemy", "argon2", "pydantic", "pydantic_settings", "uvicorn", "alembic",
    "flask", "django", "rest_framework",
)  # fmt: skip

_EXPORTS = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    found[name] = {"all": exported, "unresolved": [n for n in exported or () if not hasattr(module, n)]}
print(json.dumps(found))
"""


def fresh_python(code: str, *args: str) -> Any:
    """What ``code`` prints as JSON, run by a new interpreter with ``args`` as ``sys.argv[1:]``."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=60
    )  # fmt: skip
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def exports() -> dict[str, dict[str, Any]]:
    """Each public module's ``__all__`` and the names in it that do not resolve, from one fresh import."""
    found: dict[str, dict[str, Any]] = fresh_python(_EXPORTS, *PUBLIC_API)
    return found


def test_the_pinned_lists_are_sorted_and_unique() -> None:
    """The literal lists are the order ``__all__`` must have: sorted, each name once."""
    for names in PUBLIC_API.values():
        assert names == sorted(set(names))


@pytest.mark.parametrize("module", PUBLIC_API)
def test_all_is_exactly_the_public_api(module: str, exports: dict[str, dict[str, Any]]) -> None:
    """A public name added, removed or renamed fails here until PUBLIC_API says so too."""
    assert exports[module]["all"] == PUBLIC_API[module]


@pytest.mark.parametrize("module", PUBLIC_API)
def test_every_name_in_all_resolves(module: str, exports: dict[str, dict[str, Any]]) -> None:
    assert exports[module]["unresolved"] == []


def test_version_is_the_distributions() -> None:
    """``keyturn.__version__`` is what the installed distribution's metadata says."""
    assert keyturn.__version__ == importlib.metadata.version("keyturn")


@pytest.mark.parametrize("module", ["keyturn", "keyturn.verify", "keyturn.client", "keyturn.integrations"])
def test_import_loads_no_server_framework_database_or_password_library(module: str) -> None:
    """A resource server that only verifies tokens, or a program that only calls APIs, does not pay
    for (or depend on) the server's stack: no ``keyturn.server``, web framework, SQLAlchemy or argon2."""
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith('keyturn.server')"
        f" or m.split('.')[0] in {list(HEAVY)!r})))"
    )
    assert fresh_python(code) == []
