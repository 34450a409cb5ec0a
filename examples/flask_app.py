"""A Flask resource server protected by keyturn access tokens, verified offline.

Run (with `keyturn --dev serve` running on port 8000; Flask is not part of `.[server]`):

    .venv/bin/pip install -q -c constraints.txt -e '.[flask]'
    .venv/bin/flask --app examples/flask_app.py run --port 8002     # serves http://127.0.0.1:8002

Settings: KEYTURN_ISSUER (default http://127.0.0.1:8000), KEYTURN_AUDIENCE (default: the issuer).
"""

from __future__ import annotations

import os

from flask import Flask

from keyturn.integrations.flask import Keyturn, current_claims, require_token
from keyturn.verify import Verifier

issuer = os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8000")
app = Flask(__name__)
Keyturn(app, Verifier(issuer=issuer, audience=os.environ.get("KEYTURN_AUDIENCE", issuer)))


@app.get("/public")
def public() -> dict[str, str]:
    return {"hello": "anyone"}


@app.get("/orders")
@require_token(scopes=["profile"])
def orders() -> dict[str, object]:
    claims = current_claims()
    return {"user": claims.sub, "scope": list(claims.scope), "orders": []}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8002")))
