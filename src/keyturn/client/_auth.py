"""``KeyturnAuth``: the ``httpx.Auth`` of ``keyturn.client`` (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TypeVar

import httpx

from ..core.errors import InvalidGrant, Unavailable
from ._oauth import Steps, error_code, raise_for, standard
from ._tokenstore import MemoryTokenStore, Tokens, TokenStore, held_async

__all__ = ["KeyturnAuth"]

_log = logging.getLogger("keyturn.client")

_T = TypeVar("_T")
_Steps = Steps[_T]  # a sans-I/O exchange with the issuer


class KeyturnAuth(httpx.Auth):
    """Sign httpx requests with a keyturn session's access token, refreshing it when needed.

    Works with both ``httpx.Client`` and ``httpx.AsyncClient``. Starts from the tokens already in
    ``store``, or from ``login``. Every request the client sends carries the access token, so give
    it only to clients that talk to the servers meant to see it.

    Args:
        issuer: The keyturn server's base URL, such as ``"https://auth.example.com"``.
        store: Where the tokens live; a ``FileTokenStore`` survives restarts and can be shared by
            processes. Defaults to a new ``MemoryTokenStore``.
        clock: Seconds since the epoch; expiry is judged by it.
        timeout: Seconds for each call to the issuer when no client is given.
        client: The client for calls to the issuer from sync code (its own auth is not used);
            by default a short-lived one per call.
        async_client: The same for async code.
        oauth: Refresh and log out through the standard endpoints, so that any RFC 6749 server
            that issues refresh tokens will do: a form POST ``grant_type=refresh_token`` to the
            token endpoint (what its answer leaves out carries over: the refresh token of a server
            that does not rotate, RFC 6749 §6, the scope, the session id, the token lifetime) and
            an RFC 7009 revocation for ``logout``. Both are read once from the issuer's
            metadata, whose ``issuer`` must be ours: RFC 8414's (at
            ``https://host/.well-known/oauth-authorization-server/<path>`` for an issuer with a
            path, §3.1, else at ``<issuer>/.well-known/oauth-authorization-server``), or OpenID
            Connect's (``<issuer>/.well-known/openid-configuration``). ``login`` stays keyturn's
            own password sign-in (OAuth has no password grant): with another server, save tokens
            obtained elsewhere in ``store`` first.
        token_endpoint: Use the standard mode with this token endpoint and read no metadata.
        revocation_endpoint: The RFC 7009 endpoint that goes with ``token_endpoint``; without one
            ``logout`` only forgets the tokens here (the server keeps the session until it expires).
        client_id: Sent in the standard mode, as a public client (no secret) names itself.

    Raises:
        TypeError: a standard-mode option without the standard mode.
    """

    # A refused request is sent again after the refresh, so its body must be replayable.
    requires_request_body = True

    def __init__(
        self,
        issuer: str,
        store: TokenStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        oauth: bool = False,
        token_endpoint: str | None = None,
        revocation_endpoint: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.store: TokenStore = MemoryTokenStore() if store is None else store
        self._clock = clock
        self._timeout = timeout
        self._client = client
        self._async_client = async_client
        self._tokens: Tokens | None = None  # what this object last loaded or saved
        self._lock = threading.Lock()
        self._async_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._standard = standard(self.issuer, oauth, token_endpoint, revocation_endpoint, client_id)

    def __repr__(self) -> str:
        return f"KeyturnAuth(issuer={self.issuer!r}, store={self.store!r})"

    def login(self, username: str, password: str, *, device_name: str | None = None) -> Tokens:
        """Sign in with a password and keep the new session's tokens in the store.

        Tokens already in the store are replaced, not logged out: call ``logout`` first to end
        that session at the issuer too.

        Args:
            username: The account's username.
            password: Its password; sent to the issuer only.
            device_name: A name for this session in the user's list of devices.

        Returns:
            The new tokens, also saved in the store.

        Raises:
            InvalidCredentials: the username or password is wrong.
            Unavailable: the issuer cannot be reached, is overloaded or is rate-limiting.
            InvalidRequest: the issuer refused the request as malformed.
        """
        return self._locked(self._login_steps(username, password, device_name))

    async def alogin(self, username: str, password: str, *, device_name: str | None = None) -> Tokens:
        """``login`` for async code; same arguments, result and errors."""
        return await self._alocked(self._login_steps(username, password, device_name))

    def logout(self) -> None:
        """End the stored session at the issuer and clear the store (nothing to do without one).

        Raises:
            Unavailable: the issuer cannot be reached; the store is kept so that logout can be retried.
            InvalidClient: (standard mode) the issuer does not accept ``client_id``; the store is kept.
            ConfigurationError: (``oauth=True``) the issuer's metadata is missing or about another
                issuer; the store is kept.
        """
        self._locked(self._logout_steps())

    async def alogout(self) -> None:
        """``logout`` for async code; same errors."""
        await self._alocked(self._logout_steps())

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request``; on a 401 ``invalid_token`` refresh once and send it once more.

        Raises:
            InvalidGrant: the session is over (or there is none): log in again.
            Unavailable: the issuer cannot be reached.
            InvalidClient: (standard mode) the issuer does not accept ``client_id``.
            ConfigurationError: (``oauth=True``) the issuer's metadata is missing or about another issuer.
        """
        request.read()
        tokens = self._usable()
        if tokens is None:
            tokens = self._locked(self._refresh_steps(refused=None))
        response = yield _signed(request, tokens)
        if _refused(response):
            _log.debug("access token refused by %s; refreshing and retrying once", request.url.host)
            yield _signed(request, self._locked(self._refresh_steps(refused=tokens.access_token)))

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """``sync_auth_flow`` for ``httpx.AsyncClient``; same errors."""
        await request.aread()
        tokens = self._usable()
        if tokens is None:
            tokens = await self._alocked(self._refresh_steps(refused=None))
        response = yield _signed(request, tokens)
        if _refused(response):
            _log.debug("access token refused by %s; refreshing and retrying once", request.url.host)
            yield _signed(request, await self._alocked(self._refresh_steps(refused=tokens.access_token)))

    # The exchanges with the issuer, written once as generators that yield requests and receive
    # responses; _locked / _alocked run them under the locks with a sync or an async client.

    def _usable(self) -> Tokens | None:
        """The tokens in hand if they need no refresh yet (no lock: a stale read costs a refresh check)."""
        tokens = self._tokens if self._tokens is not None else self.store.load()
        if tokens is None or tokens.needs_refresh(self._clock()):
            return None
        self._tokens = tokens
        return tokens

    def _login_steps(self, username: str, password: str, device_name: str | None) -> _Steps[Tokens]:
        body = {"username": username, "password": password}
        if device_name is not None:
            body["device_name"] = device_name
        tokens = yield from self._exchange("/v1/auth/login", body)
        _log.debug("logged in: session %s", tokens.session_id)
        return self._keep(tokens)

    def _refresh_steps(self, refused: str | None) -> _Steps[Tokens]:
        current = self.store.load()
        if current is not None and current.access_token != refused and not current.needs_refresh(self._clock()):
            _log.debug("session %s was already refreshed by another caller", current.session_id)
            self._tokens = current
            return current
        if current is None:
            self._tokens = None
            raise InvalidGrant("There is no session in the token store: log in first.", reason="no_session")
        _log.debug("refreshing the tokens of session %s", current.session_id)
        try:
            if self._standard is not None:
                tokens = yield from self._standard.refresh(current, self._clock())
            else:
                tokens = yield from self._exchange("/v1/auth/refresh", {"refresh_token": current.refresh_token})
        except InvalidGrant:
            _log.info("session %s is over; clearing the token store", current.session_id)
            self._forget()
            raise
        return self._keep(tokens)

    def _logout_steps(self) -> _Steps[None]:
        current = self.store.load()
        if current is not None and self._standard is not None:
            yield from self._standard.revoke(current)
        elif current is not None:
            response = yield self._post("/v1/auth/logout", {"refresh_token": current.refresh_token})
            if error_code(response) != "invalid_grant":  # invalid_grant: the session had already ended
                raise_for(response)
        if current is not None:
            _log.debug("logged out: session %s", current.session_id)
        self._forget()

    def _exchange(self, path: str, body: dict[str, str]) -> _Steps[Tokens]:
        sent_at = self._clock()
        response = yield self._post(path, body)
        raise_for(response)
        try:
            return Tokens.from_response(response.json(), sent_at)
        except ValueError as exc:  # the message names a field, never a value
            raise Unavailable(f"The issuer sent an unusable token response: {exc}.", reason="bad_response") from None

    def _post(self, path: str, body: dict[str, str]) -> httpx.Request:
        return httpx.Request("POST", self.issuer + path, json=body, headers={"Accept": "application/json"})

    def _keep(self, tokens: Tokens) -> Tokens:
        self.store.save(tokens)
        self._tokens = tokens
        return tokens

    def _forget(self) -> None:
        self.store.clear()
        self._tokens = None

    def _locked(self, steps: _Steps[_T]) -> _T:
        with self._lock, self.store.lock():
            try:
                request = next(steps)
                while True:
                    request = steps.send(self._send(request))
            except StopIteration as done:
                result: _T = done.value
                return result
            finally:
                steps.close()

    async def _alocked(self, steps: _Steps[_T]) -> _T:
        async with self._async_lock(), held_async(self.store):
            try:
                request = next(steps)
                while True:
                    request = steps.send(await self._asend(request))
            except StopIteration as done:
                result: _T = done.value
                return result
            finally:
                steps.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            if self._client is not None:
                return self._client.send(request, auth=None, follow_redirects=False)
            with httpx.Client(timeout=self._timeout) as client:
                return client.send(request)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    async def _asend(self, request: httpx.Request) -> httpx.Response:
        try:
            if self._async_client is not None:
                return await self._async_client.send(request, auth=None, follow_redirects=False)
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                return await client.send(request)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError) -> Unavailable:
        return Unavailable(f"The issuer {self.issuer} cannot be reached ({type(exc).__name__}).")

    def _async_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop; a program may run several, one after another.
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            self._async_locks = {k: v for k, v in self._async_locks.items() if not k.is_closed()}
            lock = self._async_locks[loop] = asyncio.Lock()
        return lock


def _signed(request: httpx.Request, tokens: Tokens) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {tokens.access_token}"
    return request


def _refused(response: httpx.Response) -> bool:
    """A 401 whose RFC 6750 §3 challenge says the access token itself was refused."""
    return response.status_code == 401 and "invalid_token" in response.headers.get("WWW-Authenticate", "")
