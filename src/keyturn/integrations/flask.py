"""Flask: an extension that answers keyturn errors, and a decorator that verifies the bearer token.

::

    from flask import Flask
    from keyturn.integrations.flask import Keyturn, current_claims, require_token
    from keyturn.verify import Verifier

    app = Flask(__name__)
    Keyturn(app, Verifier(issuer="https://auth.example.com", audience="https://api.example.com"))

    @app.get("/orders")
    @require_token(scopes=["orders:read"])
    def orders():
        return {"user": current_claims().sub}

Bad tokens get 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, missing scopes 403
with ``error="insufficient_scope"``, unreachable keys 503, all with keyturn's JSON error body.
The app factory pattern works too: ``keyturn = Keyturn()`` at import, ``keyturn.init_app(app,
verifier)`` in the factory.

The extension also publishes the API's RFC 9728 metadata (``keyturn.verify.resource``):
``Keyturn(app, verifier, resource="https://api.example.com")`` registers GET
``/.well-known/oauth-protected-resource`` (with the path of ``resource``, if any:
``https://example.com/api`` -> ``/.well-known/oauth-protected-resource/api``; endpoint
``keyturn_protected_resource``), no token needed, and names that URL in every challenge
(``Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"``).
Without ``resource`` the identifier is each request's ``https://<host>`` (``http`` on loopback;
nothing is published for an app under a ``SCRIPT_NAME``, whose well-known URL lies outside it);
``resource=False`` publishes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import SecurityError

from ..core.errors import KeyturnError, MissingToken
from ..core.tokens import AccessClaims, scope_names
from ..verify import Verifier
from ..verify.bearer import answer, bearer_token
from ..verify.resource import ProtectedResource, protected_resource

__all__ = ["Keyturn", "KeyturnState", "current_claims", "require_token"]

P = ParamSpec("P")
R = TypeVar("R")

EXTENSION = "keyturn"


@dataclass(frozen=True, slots=True)
class KeyturnState:
    """What :meth:`Keyturn.init_app` keeps in ``app.extensions["keyturn"]``."""

    verifier: Verifier
    realm: str
    resource: ProtectedResource | None = None


class Keyturn:
    """The Flask extension: binds a :class:`~keyturn.verify.Verifier` to an app."""

    def __init__(
        self,
        app: Flask | None = None,
        verifier: Verifier | None = None,
        *,
        realm: str = "api",
        resource: str | ProtectedResource | bool | None = None,
    ) -> None:
        """
        Args:
            app: the app to set up now; leave it out for the app factory pattern.
            verifier: the verifier used by :func:`require_token` (may come later, with ``init_app``).
            realm: the realm named in ``WWW-Authenticate`` challenges.
            resource: the API's resource identifier (``"https://api.example.com"``), or a
                :class:`~keyturn.verify.ProtectedResource`; default: derived from each request;
                ``False``: publish no metadata.

        Raises:
            ValueError: ``resource`` is not an https URL without query or fragment.
        """
        self.verifier = verifier
        self.realm = realm
        self.resource = protected_resource(resource)
        if app is not None:
            self.init_app(app, verifier)

    def init_app(self, app: Flask, verifier: Verifier | None = None) -> None:
        """Store the verifier on ``app``, answer every :class:`~keyturn.KeyturnError` as JSON, and
        register the metadata route.

        Raises:
            TypeError: no verifier, neither here nor in the constructor.
        """
        chosen = verifier or self.verifier
        if chosen is None:
            raise TypeError("Keyturn.init_app needs a keyturn.verify.Verifier")
        app.extensions[EXTENSION] = KeyturnState(chosen, self.realm, self.resource)
        app.register_error_handler(KeyturnError, _answer)
        if self.resource is not None:
            app.add_url_rule(self.resource.path, "keyturn_protected_resource", _metadata, methods=["GET"])


def require_token(scopes: Iterable[str] = ()) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so it runs only with a valid bearer token carrying every one of ``scopes``.

    The claims are on ``flask.g.keyturn_claims`` (and :func:`current_claims`) inside the view.
    Use it with parentheses: ``@require_token()`` or ``@require_token(scopes=["orders:read"])``.

    Args:
        scopes: scopes this view needs; a string is read as a space-separated list (RFC 6749 §3.3).

    Raises:
        TypeError: used without parentheses.
    """
    if callable(scopes):
        raise TypeError("use @require_token() with parentheses")
    wanted = scope_names(scopes)

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            token = bearer_token(request.headers.get("Authorization"))
            g.keyturn_claims = _state().verifier.verify(token, scopes=wanted)
            # ensure_sync lets the same decorator guard ``async def`` views.
            result: R = current_app.ensure_sync(view)(*args, **kwargs)
            return result

        return guarded

    return decorate


def current_claims() -> AccessClaims:
    """The verified claims of this request (inside a view guarded by :func:`require_token`).

    Raises:
        MissingToken: the request carries no verified token (answered with 401).
    """
    claims = g.get("keyturn_claims")
    if not isinstance(claims, AccessClaims):
        raise MissingToken()
    return claims


def _state() -> KeyturnState:
    state = current_app.extensions.get(EXTENSION)
    if not isinstance(state, KeyturnState):
        raise RuntimeError("set up keyturn first: Keyturn(app, verifier) or keyturn.init_app(app, verifier)")
    return state


def _answer(exc: KeyturnError) -> ResponseReturnValue:
    state = _state()
    reply = answer(exc, state.realm, resource_metadata=_metadata_url(state.resource))
    body: dict[str, Any] = reply.body
    return body, reply.status, reply.headers


def _metadata() -> ResponseReturnValue:
    state = _state()
    assert state.resource is not None  # the route exists only with one
    reply = state.resource.answer(state.verifier.issuer, request.scheme, request.host, request.script_root)
    return reply.body, reply.status, reply.headers


def _metadata_url(resource: ProtectedResource | None) -> str | None:
    if resource is None:
        return None
    try:
        host = request.host
    except SecurityError:  # a Host outside TRUSTED_HOSTS: name no URL built from it
        return None
    return resource.metadata_url(request.scheme, host, request.script_root)
