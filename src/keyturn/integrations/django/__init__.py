"""Django: settings, a middleware that verifies bearer tokens, a view decorator, and the API's
RFC 9728 metadata.

Django REST Framework classes are in :mod:`keyturn.integrations.django.drf`.

``settings.py``::

    KEYTURN = {
        "ISSUER": "https://auth.example.com",
        "AUDIENCE": "https://api.example.com",  # default: the issuer
        "RESOURCE": "https://api.example.com",  # this API's RFC 9728 resource identifier
    }
    MIDDLEWARE = [..., "keyturn.integrations.django.KeyturnMiddleware"]

``urls.py`` (the metadata document, at the root of the URLconf: RFC 9728 §3 places it at the host's root)::

    urlpatterns = [..., path("", include("keyturn.integrations.django.urls"))]

``views.py``::

    from keyturn.integrations.django import require_token

    @require_token(scopes=["orders:read"])
    def orders(request):
        return JsonResponse({"user": request.keyturn_claims.sub})

``KEYTURN`` keys: ``ISSUER`` (required), ``AUDIENCE`` (a string or a list; default: ``ISSUER``),
``JWKS_URL`` (default: discovered from the issuer), ``SCOPES`` (required of every token),
``LEEWAY`` (seconds of clock skew, default 5), ``REALM`` (named in challenges, default ``"api"``),
``REVOCATIONS`` (follow the issuer's revocation feed, default ``True``),
``REVOCATION_MAX_STALENESS`` (seconds without an answer before the feed counts as stale, default
60), ``REVOCATION_FAIL_OPEN`` (let tokens through while stale instead of answering 503,
default ``False``) and ``RESOURCE`` (the API's https URL, or a
:class:`~keyturn.verify.ProtectedResource`; default: each request's ``https://<host>``, ``http``
on loopback, nothing under a ``SCRIPT_NAME``; ``False``: publish nothing).
One :class:`~keyturn.verify.Verifier` is built per process and per distinct setting, on first use.

Bad tokens get 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, missing scopes 403
with ``error="insufficient_scope"``, unreachable keys 503, all with keyturn's JSON error body.
While ``keyturn.integrations.django.urls`` serves the metadata at
``/.well-known/oauth-protected-resource`` (plus the path of ``RESOURCE``, if any), every challenge
names it: ``Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"``.
"""

# Django ships no type information; without django-stubs its names are Any here.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ...core.errors import KeyturnError, MissingToken
from ...core.tokens import AccessClaims, scope_names
from ...verify import ProtectedResource, RevocationFeed, Verifier
from ...verify.bearer import answer, bearer_token
from ._resource import is_metadata, metadata_url, resource_setting

__all__ = ["KeyturnConfig", "KeyturnMiddleware", "config", "error_response", "get_verifier", "require_token"]

View: TypeAlias = Callable[..., Any]

_SETTING_KEYS = frozenset(
    {"ISSUER", "AUDIENCE", "JWKS_URL", "SCOPES", "LEEWAY", "REALM", "REVOCATIONS", "REVOCATION_MAX_STALENESS",
     "REVOCATION_FAIL_OPEN", "RESOURCE"}
)  # fmt: skip
_UNSET: Any = object()
_verifiers: dict[KeyturnConfig, Verifier] = {}
_verifiers_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class KeyturnConfig:
    """``settings.KEYTURN``, checked."""

    issuer: str
    audience: str | tuple[str, ...]
    jwks_url: str | None = None
    scopes: tuple[str, ...] = ()
    leeway: timedelta = timedelta(seconds=5)
    realm: str = "api"
    revocations: bool = True
    revocation_max_staleness: timedelta = timedelta(seconds=60)
    revocation_fail_open: bool = False
    resource: ProtectedResource | None = field(default_factory=ProtectedResource)


def config() -> KeyturnConfig:
    """The checked ``settings.KEYTURN``.

    Raises:
        ImproperlyConfigured: the setting is missing, has an unknown key or a value of the wrong kind.
    """
    raw = getattr(settings, "KEYTURN", None)
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured('settings.KEYTURN must be a dict, at least {"ISSUER": "https://..."}')
    unknown = sorted(set(raw) - _SETTING_KEYS)
    if unknown:
        raise ImproperlyConfigured(f"settings.KEYTURN has unknown keys: {', '.join(map(str, unknown))}")
    issuer = _url(raw, "ISSUER")
    audience = raw.get("AUDIENCE", issuer)
    if not isinstance(audience, str):
        audience = _strings(audience, "AUDIENCE")
    leeway = raw.get("LEEWAY", 5)
    if isinstance(leeway, int | float) and not isinstance(leeway, bool) and leeway >= 0:
        leeway = timedelta(seconds=leeway)
    if not isinstance(leeway, timedelta):
        raise ImproperlyConfigured("settings.KEYTURN['LEEWAY'] must be a number of seconds >= 0")
    realm = raw.get("REALM", "api")
    if not isinstance(realm, str) or '"' in realm or "\\" in realm:
        raise ImproperlyConfigured("settings.KEYTURN['REALM'] must be a string without quotes or backslashes")
    jwks_url = _url(raw, "JWKS_URL") if raw.get("JWKS_URL") is not None else None
    scopes = _strings(raw.get("SCOPES", ()), "SCOPES")
    follow, fail_open = _flag(raw, "REVOCATIONS", True), _flag(raw, "REVOCATION_FAIL_OPEN", False)
    staleness = raw.get("REVOCATION_MAX_STALENESS", 60)
    if not isinstance(staleness, int | float) or isinstance(staleness, bool) or staleness <= 30:
        raise ImproperlyConfigured("settings.KEYTURN['REVOCATION_MAX_STALENESS'] must be a number of seconds > 30")
    stale = timedelta(seconds=staleness)
    resource = resource_setting(raw.get("RESOURCE"))
    return KeyturnConfig(issuer, audience, jwks_url, scopes, leeway, realm, follow, stale, fail_open, resource)


def get_verifier() -> Verifier:
    """The process's :class:`~keyturn.verify.Verifier` for the current ``settings.KEYTURN``."""
    current = config()
    verifier = _verifiers.get(current)
    if verifier is None:
        with _verifiers_lock:
            verifier = _verifiers.get(current)
            if verifier is None:
                feed = current.revocations and RevocationFeed(
                    max_staleness=current.revocation_max_staleness, fail_open=current.revocation_fail_open
                )
                verifier = _verifiers[current] = Verifier(
                    current.issuer,
                    current.audience,
                    jwks_url=current.jwks_url,
                    scopes=current.scopes,
                    leeway=current.leeway,
                    revocations=feed,
                )
    return verifier


def error_response(error: KeyturnError, request: HttpRequest | None = None) -> JsonResponse:
    """keyturn's answer to ``error``: status, JSON body and ``WWW-Authenticate`` challenge, naming
    the metadata URL (RFC 9728 §5.1) when ``request`` is given and the URLconf serves it."""
    current = config()
    url = None if request is None else metadata_url(request, current.resource)
    reply = answer(error, current.realm, resource_metadata=url)
    return JsonResponse(reply.body, status=reply.status, headers=reply.headers)


class KeyturnMiddleware:
    """Sets ``request.keyturn_claims``: the verified claims, or ``None`` without a bearer token.

    A request with a bad bearer token is answered 401 here; one without a token goes on (views
    decide, e.g. with :func:`require_token`). Works in sync and async stacks.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        config()  # refuse to start with a broken setting, not on the first request

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        try:
            token = _bearer(request)
            _remember(request, None if token is None else get_verifier().verify(token))
        except KeyturnError as exc:
            if not is_metadata(request):
                return error_response(exc, request)
            _remember(request, None)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            token = _bearer(request)
            claims = None if token is None else await get_verifier().verify_async(token)
        except KeyturnError as exc:
            if not is_metadata(request):
                return error_response(exc, request)
            claims = None
        _remember(request, claims)
        response: HttpResponseBase = await self.get_response(request)
        return response


def require_token(scopes: Iterable[str] = ()) -> Callable[[View], View]:
    """Decorate a view (sync or async) so it runs only with a valid token carrying every one of ``scopes``.

    Without :class:`KeyturnMiddleware` the decorator verifies the token itself. The view is exempt
    from Django's CSRF check, as DRF's views are: a bearer token is never sent by a browser on its
    own, so a forged cross-site request has none and is refused with 401.

    Args:
        scopes: scopes this view needs; a string is read as a space-separated list (RFC 6749 §3.3).
    """
    if callable(scopes):
        raise TypeError("use @require_token() with parentheses")
    wanted = scope_names(scopes)

    def decorate(view: View) -> View:
        guarded = _guard_async(view, wanted) if iscoroutinefunction(view) else _guard_sync(view, wanted)
        exempt: View = csrf_exempt(functools.wraps(view)(guarded))
        return exempt

    return decorate


def _guard_sync(view: View, wanted: tuple[str, ...]) -> View:
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            claims = getattr(request, "keyturn_claims", _UNSET)
            if claims is _UNSET:  # no middleware: verify here
                token = _bearer(request)
                claims = None if token is None else get_verifier().verify(token)
            _remember(request, _granted(claims, wanted))
        except KeyturnError as exc:
            return error_response(exc, request)
        return view(request, *args, **kwargs)

    return guarded


def _guard_async(view: View, wanted: tuple[str, ...]) -> View:
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            claims = getattr(request, "keyturn_claims", _UNSET)
            if claims is _UNSET:
                token = _bearer(request)
                claims = None if token is None else await get_verifier().verify_async(token)
            _remember(request, _granted(claims, wanted))
        except KeyturnError as exc:
            return error_response(exc, request)
        return await view(request, *args, **kwargs)

    return guarded


def _bearer(request: HttpRequest) -> str | None:
    """The bearer token, or ``None`` when there is no ``Authorization: Bearer`` header at all.

    Another scheme (``Basic``) is left alone for other authentication to handle.
    """
    try:
        return bearer_token(request.headers.get("Authorization"))
    except MissingToken:
        return None


def _remember(request: Any, claims: AccessClaims | None) -> None:
    request.keyturn_claims = claims


def _granted(claims: object, wanted: tuple[str, ...]) -> AccessClaims:
    if not isinstance(claims, AccessClaims):
        raise MissingToken()
    return claims.require(wanted)


def _flag(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"settings.KEYTURN[{key!r}] must be True or False")
    return value


def _url(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"settings.KEYTURN[{key!r}] must be an http(s) URL")
    return value


def _strings(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ImproperlyConfigured(f"settings.KEYTURN[{key!r}] must be a list of strings")
