"""RFC 8414 authorization server metadata: what this deployment serves, and nothing it does not.

Served at ``/.well-known/oauth-authorization-server``, and, for an issuer with a path
(``https://example.com/auth``), also at the RFC 8414 §3.1 location
``/.well-known/oauth-authorization-server/auth`` (a proxy that serves keyturn under ``/auth``
routes that path of the host to it). Every endpoint listed is a route of this app, and
``tests/server/http/test_oauth.py`` fetches each one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ...core.clients import AUTH_METHODS, NONE
from ...verify.revocations import FEED_METADATA
from ..service import Service
from .oauth import GRANT_TYPES

__all__ = ["METADATA_PATH", "add_metadata", "metadata_paths"]

METADATA_PATH = "/.well-known/oauth-authorization-server"
MAX_AGE = 300


def metadata_paths(issuer: str) -> list[str]:
    """Where this app serves its metadata: the root location, and the path-aware one (§3.1)."""
    path = urlsplit(issuer).path.rstrip("/")
    return [METADATA_PATH] if not path else [METADATA_PATH, f"{METADATA_PATH}{path}"]


def add_metadata(app: FastAPI, svc: Service) -> None:
    async def metadata() -> JSONResponse:
        """RFC 8414 authorization server metadata: the endpoints, grants, client authentication
        methods and scopes served here, the keys, and the revocation feed."""
        return JSONResponse(await _document(svc), headers={"Cache-Control": f"public, max-age={MAX_AGE}"})

    for path in metadata_paths(svc.settings.issuer):
        app.add_api_route(path, metadata, methods=["GET"], tags=["keys"], response_model=None)


async def _document(svc: Service) -> dict[str, Any]:
    issuer = svc.settings.issuer.rstrip("/")
    authenticated = list(AUTH_METHODS)
    return {
        "issuer": svc.settings.issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "response_types_supported": [],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": [NONE, *authenticated],
        "revocation_endpoint_auth_methods_supported": [NONE, *authenticated],
        "introspection_endpoint_auth_methods_supported": authenticated,
        "scopes_supported": await svc.clients.scopes_supported(),
        FEED_METADATA: f"{issuer}/v1/revocations",
    }
