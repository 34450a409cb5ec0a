"""An ``httpx.Auth`` for programs that call APIs protected by keyturn access tokens.

::

    auth = KeyturnAuth("https://auth.example.com", FileTokenStore("~/.config/myapp/tokens.json"))
    auth.login("alice", password)  # once; later runs start from the stored tokens
    with httpx.Client(auth=auth) as http:
        http.get("https://api.example.com/things")

Each request carries ``Authorization: Bearer <access token>``. The token is refreshed shortly
before it expires, and once more if a server refuses it (401 ``invalid_token``), after which the
request is sent again, once. Refreshes are single-flight: callers in one process queue on a lock
(``threading.Lock`` for sync, ``asyncio.Lock`` for async), then on the store's own lock, which
for a ``FileTokenStore`` excludes every process sharing the file. Whoever holds the locks reloads
the store first and uses tokens someone else already refreshed, so a refresh token is never
presented twice (which the server would take for theft, ending the session).

By default it speaks keyturn's JSON API (``/v1/auth/login``, ``/refresh``, ``/logout``). With
``oauth=True`` it refreshes at the standard RFC 6749 token endpoint and logs out by RFC 7009
revocation, both found in the issuer's RFC 8414 metadata (or given as ``token_endpoint=`` and
``revocation_endpoint=``), as a public client (``client_id=``), so it works with any OAuth 2.0
server that issues refresh tokens; ``login`` remains keyturn's password sign-in, and with another
server the first tokens are saved in the store by the program::

    auth = KeyturnAuth("https://idp.example.com", store, oauth=True, client_id="my-cli")

A machine with its own client credentials uses ``ClientCredentialsAuth`` instead: it gets tokens
with the ``client_credentials`` grant and renews them by itself::

    auth = ClientCredentialsAuth("https://auth.example.com", "billing-cron", secret, scope="orders:read")

Tokens, secrets and passwords are never logged, and never appear in a ``repr`` or an error message.
"""

from ._auth import KeyturnAuth as KeyturnAuth
from ._filestore import FileTokenStore as FileTokenStore
from ._machine import ClientCredentialsAuth as ClientCredentialsAuth
from ._tokenstore import MemoryTokenStore as MemoryTokenStore
from ._tokenstore import Tokens as Tokens
from ._tokenstore import TokenStore as TokenStore

__all__ = ["ClientCredentialsAuth", "FileTokenStore", "KeyturnAuth", "MemoryTokenStore", "TokenStore", "Tokens"]
