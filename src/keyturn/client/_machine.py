"""``ClientCredentialsAuth``: the ``httpx.Auth`` of a machine (a job, a service, an agent) that
holds its own OAuth client credentials.

::

    auth = ClientCredentialsAuth("https://auth.example.com", "billing-cron", secret, scope="orders:read")
    with httpx.Client(auth=auth) as http:
        http.get("https://api.example.com/orders")

It gets an access token with the ``client_credentials`` grant (RFC 6749 §4.4) at the token
endpoint named in the issuer's metadata (or ``token_endpoint=``), authenticating as registered
(``client_secret_basic`` or ``client_secret_post``), keeps it in memory, and gets a new one shortly
before it expires, or once when a server refuses it (401 ``invalid_token``: the client was
disabled and enabled again, say), then sends the request again, once. It is ``KeyturnAuth`` with a
grant in place of a refresh, so the same locks make the grant single-flight. ``close()`` revokes
the token it holds (RFC 7009; at keyturn that ends every token of the client's grant).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from ._auth import KeyturnAuth
from ._oauth import Endpoints, Secret, Standard, Steps
from ._tokenstore import Tokens

__all__ = ["ClientCredentialsAuth"]


class ClientCredentialsAuth(KeyturnAuth):
    """Sign httpx requests with access tokens this client gets for itself (``client_credentials``).

    Args:
        issuer: The authorization server's base URL (any RFC 6749 server with RFC 8414 or OpenID
            Connect discovery metadata).
        client_id: The client's id (``keyturn clients add CLIENT_ID``).
        client_secret: Its secret; sent to the token endpoint only, never logged or shown.
        scope: The scopes to ask for (space-separated); default: what the server grants the client.
        auth_method: How the secret is sent, as the client was registered: ``client_secret_basic``
            (HTTP Basic) or ``client_secret_post`` (in the form).
        token_endpoint: Use this token endpoint and read no metadata.
        revocation_endpoint: The RFC 7009 endpoint that goes with ``token_endpoint``.
        clock, timeout, client, async_client: as for ``KeyturnAuth``.

    Raises:
        TypeError: an unknown ``auth_method``, or ``revocation_endpoint`` without ``token_endpoint``.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        auth_method: str = "client_secret_basic",
        token_endpoint: str | None = None,
        revocation_endpoint: str | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
    ) -> None:
        if revocation_endpoint is not None and token_endpoint is None:
            raise TypeError("revocation_endpoint goes with token_endpoint (otherwise both come from the metadata).")
        super().__init__(issuer, clock=clock, timeout=timeout, client=client, async_client=async_client)
        endpoints = None if token_endpoint is None else Endpoints(token_endpoint, revocation_endpoint)
        self._machine = Standard(self.issuer, None, endpoints, Secret(client_id, client_secret, auth_method))
        self._standard = self._machine  # logout (close) revokes through it
        self._scope = scope
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(issuer={self.issuer!r}, client_id={self.client_id!r})"

    def login(self, username: str, password: str, *, device_name: str | None = None) -> Tokens:
        raise TypeError("a machine client gets its tokens itself: there is no password sign-in")

    async def alogin(self, username: str, password: str, *, device_name: str | None = None) -> Tokens:
        raise TypeError("a machine client gets its tokens itself: there is no password sign-in")

    def close(self) -> None:
        """Revoke the access token held (if any) and forget it."""
        self.logout()

    async def aclose(self) -> None:
        """``close`` for async code."""
        await self.alogout()

    def _refresh_steps(self, refused: str | None) -> Steps[Tokens]:
        current = self.store.load()
        if current is not None and current.access_token != refused and not current.needs_refresh(self._clock()):
            self._tokens = current  # another caller got one while this one waited for the lock
            return current
        tokens = yield from self._machine.client_credentials(self._scope, self._clock())
        return self._keep(tokens)
