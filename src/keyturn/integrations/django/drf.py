"""Django REST Framework: an authentication class, a scope permission, and keyturn-shaped errors.

``settings.py`` (next to ``KEYTURN``, see :mod:`keyturn.integrations.django`)::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["keyturn.integrations.django.drf.KeyturnAuthentication"],
        "EXCEPTION_HANDLER": "keyturn.integrations.django.drf.keyturn_exception_handler",
    }

``views.py``::

    from keyturn.integrations.django.drf import HasScopes

    class Orders(APIView):
        permission_classes = [HasScopes]
        required_scopes = ["orders:read"]

        def get(self, request):
            return Response({"user": request.user.username, "scope": request.auth.scope})

``request.user`` is a :class:`KeyturnPrincipal` (no database row) and ``request.auth`` the
:class:`keyturn.AccessClaims`. Requests without a bearer token stay anonymous, so another
authentication class may still handle them.

What DRF answers on its own, without ``keyturn_exception_handler``: the same status codes (401
for a missing or bad token, with ``WWW-Authenticate: Bearer realm="api"`` taken from the first
authentication class; 403 for a missing scope; 503 when no keys can be fetched), but with DRF's
body ``{"detail": "..."}`` and a challenge that names no ``error``. With the handler, those answers
carry keyturn's body ``{"error": ..., "error_description": ...}`` and the RFC 6750 challenge
(``error="invalid_token"``, ``error="insufficient_scope", scope="..."``), exactly as keyturn's
server and its other adapters send them. Every other error (validation, 404, 405, throttling)
keeps DRF's own shape. Either way, while ``keyturn.integrations.django.urls`` is included, the
challenge names the API's RFC 9728 metadata URL (``resource_metadata="..."``, see
:mod:`keyturn.integrations.django`).
"""

# Neither Django nor DRF ships type information; without their stub packages their names are Any.
# mypy: disable-error-code="import-untyped"
# mypy: allow-subclassing-any

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed, NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from ...core.errors import InsufficientScope, InvalidToken, KeyturnError, MissingToken
from ...core.tokens import AccessClaims, scope_names
from ...verify.bearer import answer
from . import _bearer, config, get_verifier
from ._resource import metadata_url

__all__ = [
    "HasScopes",
    "KeyturnAPIException",
    "KeyturnAuthentication",
    "KeyturnAuthenticationFailed",
    "KeyturnPermissionDenied",
    "KeyturnPrincipal",
    "keyturn_exception_handler",
]


class KeyturnPrincipal:
    """``request.user`` for a verified token: user-like enough for DRF, its permissions and throttles."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, claims: AccessClaims) -> None:
        self.claims = claims
        self.pk = self.id = self.username = claims.sub

    @property
    def scope(self) -> tuple[str, ...]:
        return self.claims.scope

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"KeyturnPrincipal(sub={self.username!r})"


class KeyturnAuthenticationFailed(AuthenticationFailed):
    """401 for a refused token; ``keyturn_error`` is the keyturn error behind it."""

    def __init__(self, error: KeyturnError) -> None:
        super().__init__(detail=error.description, code=error.code)
        self.keyturn_error = error


class KeyturnPermissionDenied(PermissionDenied):
    """403 for a token without a required scope."""

    def __init__(self, error: KeyturnError) -> None:
        super().__init__(detail=error.description, code=error.code)
        self.keyturn_error = error


class KeyturnAPIException(APIException):
    """Any other keyturn error (503 when no keys can be fetched), with keyturn's status."""

    def __init__(self, error: KeyturnError) -> None:
        super().__init__(detail=error.description, code=error.code)
        self.status_code = answer(error).status
        self.keyturn_error = error
        self.wait = 1 if self.status_code == 503 else None  # DRF's default handler turns it into Retry-After


def _drf_error(error: KeyturnError) -> APIException:
    """The DRF exception that answers ``error`` with keyturn's status."""
    if isinstance(error, InvalidToken):
        return KeyturnAuthenticationFailed(error)
    if isinstance(error, InsufficientScope):
        return KeyturnPermissionDenied(error)
    return KeyturnAPIException(error)


class KeyturnAuthentication(BaseAuthentication):
    """Verifies ``Authorization: Bearer`` tokens with the verifier of ``settings.KEYTURN``."""

    def authenticate(self, request: Any) -> tuple[KeyturnPrincipal, AccessClaims] | None:
        """``(KeyturnPrincipal, claims)``, or ``None`` without a bearer token.

        Raises:
            KeyturnAuthenticationFailed: the token is refused (401).
            KeyturnAPIException: the keys cannot be fetched (503).
        """
        try:
            token = _bearer(request)
            if token is None:
                return None
            claims = get_verifier().verify(token)
        except KeyturnError as exc:
            raise _drf_error(exc) from None
        return KeyturnPrincipal(claims), claims

    def authenticate_header(self, request: Any) -> str:
        """The challenge DRF sends with its 401 answers (RFC 6750 §3, RFC 9728 §5.1)."""
        current = config()
        url = metadata_url(getattr(request, "_request", request), current.resource)
        challenge: str = answer(MissingToken(), current.realm, resource_metadata=url).headers["WWW-Authenticate"]
        return challenge


class HasScopes(BasePermission):
    """Grants access to a keyturn token that carries every scope in ``required_scopes``.

    ``required_scopes`` is read from this class (subclass it) and from the view; both count.
    Without a keyturn token DRF answers 401; with one that lacks a scope, 403 ``insufficient_scope``.
    """

    required_scopes: Sequence[str] = ()

    def has_permission(self, request: Any, view: Any) -> bool:
        claims = request.auth
        if not isinstance(claims, AccessClaims):
            return False  # DRF then answers 401 (no credentials) or 403 (other credentials)
        wanted = (*scope_names(self.required_scopes), *scope_names(getattr(view, "required_scopes", ())))
        try:
            claims.require(wanted)
        except InsufficientScope as exc:
            raise KeyturnPermissionDenied(exc) from None
        return True


def keyturn_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, answering keyturn errors (and DRF's own 401 for a missing bearer
    token) in keyturn's shape; put its dotted path in ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``."""
    from rest_framework.views import exception_handler, set_rollback  # needs configured settings

    error = getattr(exc, "keyturn_error", None)
    if error is None and isinstance(exc, NotAuthenticated) and _is_bearer(getattr(exc, "auth_header", None)):
        error = MissingToken()
    if not isinstance(error, KeyturnError):
        response: Response | None = exception_handler(exc, context)
        return response
    set_rollback()
    current, request = config(), context.get("request")
    url = None if request is None else metadata_url(getattr(request, "_request", request), current.resource)
    reply = answer(error, current.realm, resource_metadata=url)
    return Response(reply.body, status=reply.status, headers=reply.headers)


def _is_bearer(challenge: object) -> bool:
    return isinstance(challenge, str) and challenge.lower().startswith("bearer")
