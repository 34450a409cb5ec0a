"""How ``KeyturnAuth`` talks OAuth 2.0: reading an issuer's error answers (RFC 6749 §5.2, which
keyturn's JSON API shares), and the standard exchanges of its ``oauth`` mode: refresh at an RFC 6749
token endpoint and logout at an RFC 7009 revocation endpoint, found in the issuer's metadata
unless given. The metadata is looked for where ``keyturn.verify.discovery`` looks (the client
imports no verifier, so :func:`metadata_urls` restates its rule, and a test keeps the two equal):
RFC 8414 §3.1's path-aware location, then ``<issuer>/.well-known/oauth-authorization-server``
(issuers with a path only), then OpenID Connect's ``<issuer>/.well-known/openid-configuration``;
the next only when one answers 404, 405 or 410.

Like ``_auth``'s, the exchanges are sans-I/O generators (``Steps``): they yield the requests to
send and receive the responses, so one code path serves sync and async callers under their locks.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Generator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlsplit

import httpx

from ..core.errors import (
    ConfigurationError,
    InvalidClient,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    KeyturnError,
    Unavailable,
    UnsupportedGrantType,
)
from ._tokenstore import Tokens

__all__ = ["Endpoints", "Secret", "Standard", "Steps", "error_code", "metadata_urls", "raise_for", "standard"]

_log = logging.getLogger("keyturn.client")

_T = TypeVar("_T")
Steps = Generator[httpx.Request, httpx.Response, _T]  # a sans-I/O exchange with the issuer

_ERRORS: dict[str, type[KeyturnError]] = {
    "invalid_client": InvalidClient,
    "invalid_credentials": InvalidCredentials,
    "invalid_grant": InvalidGrant,
    "invalid_request": InvalidRequest,
    "invalid_token": InvalidToken,
    "temporarily_unavailable": Unavailable,
    "rate_limited": Unavailable,
    "unsupported_grant_type": UnsupportedGrantType,
}
_OAUTH_METADATA = "/.well-known/oauth-authorization-server"
_OPENID_CONFIGURATION = "/.well-known/openid-configuration"
_NOT_THERE = frozenset({404, 405, 410})


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the standard exchanges go; no revocation endpoint means logout is local only."""

    token: str
    revocation: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A confidential client's credentials, sent as registered (RFC 6749 §2.3.1); ``repr`` hides the secret."""

    client_id: str
    secret: str = dataclasses.field(repr=False)
    method: str = "client_secret_basic"

    def __post_init__(self) -> None:
        if self.method not in ("client_secret_basic", "client_secret_post"):
            raise TypeError("auth_method is client_secret_basic or client_secret_post")


class Standard:
    """The standard exchanges with one issuer, as a public client or as a confidential one.

    Args:
        issuer: The issuer's base URL, without a trailing slash.
        client_id: Sent with every request when given (a public client names itself).
        endpoints: The endpoints to use; ``None``: read them from the issuer's metadata, once.
        secret: A confidential client's credentials, sent with every request instead.
    """

    def __init__(
        self, issuer: str, client_id: str | None, endpoints: Endpoints | None, secret: Secret | None = None
    ) -> None:
        self._issuer = issuer
        self._client_id = client_id if secret is None else secret.client_id
        self._endpoints = endpoints
        self._secret = secret

    def client_credentials(self, scope: str | None, sent_at: float) -> Steps[Tokens]:
        """RFC 6749 §4.4: an access token for the client itself (no refresh token).

        Raises:
            InvalidClient: the issuer does not accept the client's credentials.
            InvalidRequest: the issuer refused the request (an unknown scope, a grant the client
                may not use).
            Unavailable, ConfigurationError: as for ``refresh``.
        """
        endpoints = yield from self._discovered()
        form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
        response = yield self._post(endpoints.token, form)
        self._raise_for(response)
        body = _json_or_none(response)
        if not isinstance(body, Mapping):
            raise _unusable("the body is not a JSON object")
        try:  # no refresh token, no session: the machine asks again
            return Tokens.from_response({"refresh_token": "-", "session_id": "-", **body}, sent_at)
        except ValueError as exc:  # the message names a field, never a value
            raise _unusable(str(exc)) from None

    def refresh(self, current: Tokens, sent_at: float) -> Steps[Tokens]:
        """RFC 6749 §6: exchange ``current``'s refresh token at the token endpoint.

        Raises:
            InvalidGrant: the refresh token was refused (400 ``invalid_grant``): the session is over.
            InvalidClient: the issuer does not accept this client (``client_id``).
            Unavailable: the issuer cannot answer, or answered something that is no token response.
            ConfigurationError: the issuer's metadata is missing or names another issuer.
        """
        endpoints = yield from self._discovered()
        form = {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
        response = yield self._post(endpoints.token, form)
        self._raise_for(response)
        return _refreshed(_json_or_none(response), current, sent_at)

    def revoke(self, current: Tokens) -> Steps[None]:
        """RFC 7009: revoke ``current``'s refresh token (and so its session) at the revocation endpoint.

        Raises:
            Unavailable: the issuer cannot answer.
            InvalidClient: the issuer does not accept this client (``client_id``).
            ConfigurationError: the issuer's metadata is missing or names another issuer.
        """
        endpoints = yield from self._discovered()
        if endpoints.revocation is None:
            _log.warning(
                "%s has no revocation endpoint: session %s is forgotten here only", self._issuer, current.session_id
            )
            return
        kind = "access_token" if self._secret is not None else "refresh_token"  # a machine has no refresh token
        form = {"token": getattr(current, kind), "token_type_hint": kind}
        self._raise_for((yield self._post(endpoints.revocation, form)))  # §2.2: 200 even for a dead token

    def _discovered(self) -> Steps[Endpoints]:
        if self._endpoints is None:
            urls = metadata_urls(self._issuer)
            for url in urls:
                response = yield httpx.Request("GET", url, headers={"Accept": "application/json"})
                if response.status_code not in _NOT_THERE:
                    break
            else:
                raise ConfigurationError("oauth", f"no metadata at {' nor '.join(urls)}; give token_endpoint instead.")
            self._endpoints = _read_metadata(response, url, self._issuer)
            _log.debug("standard endpoints of %s: %s", self._issuer, self._endpoints)
        return self._endpoints

    def _post(self, url: str, form: dict[str, str]) -> httpx.Request:
        headers = {"Accept": "application/json"}
        if self._secret is not None and self._secret.method == "client_secret_basic":
            pair = f"{quote_plus(self._secret.client_id)}:{quote_plus(self._secret.secret)}"  # §2.3.1, form-encoded
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif self._secret is not None:
            form.update(client_id=self._secret.client_id, client_secret=self._secret.secret)
        elif self._client_id is not None:
            form["client_id"] = self._client_id  # RFC 6749 §2.3.1: a public client names itself
        return httpx.Request("POST", url, data=form, headers=headers)

    def _raise_for(self, response: httpx.Response) -> None:
        try:
            raise_for(response)
        except InvalidClient as exc:
            raise InvalidClient(
                f"The issuer does not accept this client (client_id {self._client_id!r}): {exc.description}"
            ) from None


def standard(
    issuer: str, oauth: bool, token_endpoint: str | None, revocation_endpoint: str | None, client_id: str | None
) -> Standard | None:
    """The standard exchanges the options ask for, if any."""
    if token_endpoint is not None:
        return Standard(issuer, client_id, Endpoints(token_endpoint, revocation_endpoint))
    if revocation_endpoint is not None:
        raise TypeError("revocation_endpoint goes with token_endpoint (with oauth=True both come from the metadata).")
    if oauth:
        return Standard(issuer, client_id, None)
    if client_id is not None:
        raise TypeError("client_id is for the standard endpoints: give oauth=True or token_endpoint too.")
    return None


def _refreshed(body: object, current: Tokens, sent_at: float) -> Tokens:
    """Read an RFC 6749 §5.1 refresh response; what it leaves out is carried over from ``current``:
    the refresh token if not rotated (§6), the scope (§5.1), keyturn's ``session_id`` and, if
    there is no ``expires_in``, the previous lifetime."""
    if not isinstance(body, Mapping):
        raise _unusable("the body is not a JSON object")
    carried: dict[str, Any] = {
        "refresh_token": current.refresh_token, "scope": current.scope, "session_id": current.session_id,
        "expires_in": current.expires_at - current.issued_at,
    }  # fmt: skip
    try:
        tokens = Tokens.from_response({**carried, **body}, sent_at)
    except ValueError as exc:  # the message names a field, never a value
        raise _unusable(str(exc)) from None
    if tokens.refresh_token == current.refresh_token and "refresh_token_expires_in" not in body:
        tokens = dataclasses.replace(tokens, refresh_expires_at=current.refresh_expires_at)
    return tokens


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where ``issuer``'s metadata may be, in the order to try: ``keyturn.verify.discovery``'s rule."""
    parts = urlsplit(issuer.rstrip("/"))
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    legacy = (f"{origin}{path}{_OAUTH_METADATA}",) if path else ()
    return (f"{origin}{_OAUTH_METADATA}{path}", *legacy, f"{origin}{path}{_OPENID_CONFIGURATION}")


def _read_metadata(response: httpx.Response, url: str, issuer: str) -> Endpoints:
    """RFC 8414 §3.2: the token and revocation endpoints, from metadata about our issuer (§3.3;
    ``issuer`` is a base URL here, so a terminating ``/`` on either side does not matter)."""
    if response.status_code >= 500 or response.status_code == 429:
        raise Unavailable(f"The issuer's metadata at {url} answered HTTP {response.status_code}.")
    metadata = _json_or_none(response) if response.is_success else None
    if not isinstance(metadata, Mapping):
        raise ConfigurationError("oauth", f"no usable metadata at {url} (HTTP {response.status_code}).")
    if str(metadata.get("issuer", "")).rstrip("/") != issuer:
        shown = repr(metadata.get("issuer"))[:100]
        raise ConfigurationError("issuer", f"the metadata at {url} is about another issuer ({shown}) (RFC 8414 §3.3).")
    token = _endpoint(metadata, "token_endpoint", issuer)
    if token is None:
        raise ConfigurationError("oauth", f"the metadata at {url} names no token_endpoint.")
    return Endpoints(token, _endpoint(metadata, "revocation_endpoint", issuer))


def _endpoint(metadata: Mapping[str, Any], name: str, issuer: str) -> str | None:
    url = metadata.get(name)
    if url is None:
        return None
    schemes = ("https://",) if issuer.startswith("https:") else ("http://", "https://")
    if not isinstance(url, str) or not url.startswith(schemes):  # tokens go there: never in clear from https
        raise ConfigurationError("oauth", f"the issuer's metadata names an unusable {name}.")
    return url


def _unusable(problem: str) -> Unavailable:
    return Unavailable(f"The issuer sent an unusable token response: {problem}.", reason="bad_response")


def error_code(response: httpx.Response) -> str | None:
    """The ``error`` member of an error answer, if it has one."""
    body = _json_or_none(response)
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def raise_for(response: httpx.Response) -> None:
    """Raise the keyturn error an issuer's error answer stands for (nothing for a success)."""
    if response.is_success:
        return
    body = _json_or_none(response)
    text = body.get("error_description") if isinstance(body, dict) else None
    description = text[:300] if isinstance(text, str) and text else f"The issuer answered HTTP {response.status_code}."
    status = response.status_code
    error = _ERRORS.get(error_code(response) or "") or (
        Unavailable if status >= 500 or status == 429 else InvalidRequest
    )
    raise InvalidCredentials() if error is InvalidCredentials else error(description)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
