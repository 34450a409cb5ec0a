"""A FastAPI resource server protected by keyturn access tokens, verified offline.

Run (with `keyturn --dev serve` running on port 8000):

    .venv/bin/python examples/fastapi_app.py            # serves http://127.0.0.1:8001

Settings: KEYTURN_ISSUER (default http://127.0.0.1:8000), KEYTURN_AUDIENCE (default: the issuer), PORT.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from keyturn import AccessClaims
from keyturn.integrations.fastapi import require_token, setup
from keyturn.verify import Verifier

issuer = os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8000")
app = FastAPI(title="Orders API")
verifier = Verifier(issuer=issuer, audience=os.environ.get("KEYTURN_AUDIENCE", issuer))
setup(app, verifier)


@app.get("/public")
async def public() -> dict[str, str]:
    return {"hello": "anyone"}


@app.get("/orders")
async def orders(claims: AccessClaims = Depends(require_token(scopes=["profile"]))) -> dict[str, object]:  # noqa: B008
    return {"user": claims.sub, "scope": list(claims.scope), "orders": []}


@app.get("/reports")
async def reports(claims: AccessClaims = Depends(require_token(scopes=["orders:read"]))) -> dict[str, object]:  # noqa: B008
    """For machines: a token of a client registered with the orders:read scope (examples/machine_client.py)."""
    return {"client": claims.client_id, "scope": list(claims.scope), "reports": []}


@app.get("/healthz")
async def healthz() -> JSONResponse:
    """Ready unless the revocation feed is stale (every token is refused with 503 then)."""
    feed = verifier.status()
    body = {"revocation_feed": "off" if feed is None else feed.state}
    return JSONResponse(body, status_code=200 if feed is None or feed.healthy else 503)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
