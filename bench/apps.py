"""The apps the HTTP benchmark serves next to keyturn, each with uvicorn as keyturn serves itself.

- ``bare``: the stack's ceiling, a few lines of ASGI with no framework answering a fixed JSON body.
- ``starlette_plain``: Starlette with one unprotected route answering the same body with a
  ``JSONResponse``; the framework's share of what ``resource`` costs over ``bare``.
- ``resource``: an API protected by keyturn's own Starlette adapter; it verifies access tokens
  offline with the keys it fetched once from ``BENCH_ISSUER``'s JWKS (no database), and follows
  the issuer's revocation feed as every verifier does by default (``BENCH_FEED=off``: it does not).

    uvicorn bench.apps:bare
    uvicorn --factory bench.apps:starlette_plain
    BENCH_ISSUER=http://127.0.0.1:8000 uvicorn --factory bench.apps:resource
    BENCH_ISSUER=http://127.0.0.1:8000 BENCH_FEED=off uvicorn --factory bench.apps:resource
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keyturn.integrations.starlette import keyturn_middleware, requires
from keyturn.verify import Verifier

BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


@requires("profile")
async def profile(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.claims.sub, "scope": " ".join(request.user.claims.scope)})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def starlette_plain() -> Starlette:
    return Starlette(routes=[Route("/orders", healthz), Route("/healthz", healthz)])


def resource() -> Starlette:
    issuer = os.environ["BENCH_ISSUER"]
    feed = os.environ.get("BENCH_FEED", "on") != "off"
    verifier = Verifier(issuer=issuer, audience=os.environ.get("BENCH_AUDIENCE", issuer), revocations=feed)
    routes = [Route("/orders", profile), Route("/healthz", healthz)]
    return Starlette(routes=routes, middleware=[keyturn_middleware(verifier)])
