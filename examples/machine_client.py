"""A machine-to-machine client: a nightly job that calls the Orders API (examples/fastapi_app.py,
protected by keyturn.verify) with its own OAuth client credentials, no user involved.

Register the client once (the secret is printed once), then run the job:

    SECRET=$(.venv/bin/keyturn --dev clients add nightly-report --scope orders:read | tail -1)
    KEYTURN_CLIENT_ID=nightly-report KEYTURN_CLIENT_SECRET=$SECRET .venv/bin/python examples/machine_client.py

Settings: KEYTURN_ISSUER (default http://127.0.0.1:8000), API_URL (default http://127.0.0.1:8001).
"""

from __future__ import annotations

import json
import os
import sys

import httpx

from keyturn import KeyturnError
from keyturn.client import ClientCredentialsAuth


def main() -> int:
    issuer = os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8000")
    api = os.environ.get("API_URL", "http://127.0.0.1:8001")
    try:
        client_id, secret = os.environ["KEYTURN_CLIENT_ID"], os.environ["KEYTURN_CLIENT_SECRET"]
    except KeyError as missing:
        print(f"set {missing.args[0]} (see this file's docstring)", file=sys.stderr)
        return 2
    # Gets a token with the client_credentials grant, keeps it until shortly before it expires,
    # and gets a new one by itself: the job never handles a token.
    auth = ClientCredentialsAuth(issuer, client_id, secret, scope="orders:read")
    try:
        with httpx.Client(auth=auth, timeout=10) as http:
            response = http.get(f"{api}/reports")
    except KeyturnError as exc:  # the client is unknown, disabled, or its secret wrong; keyturn is down
        print(f"no token: {exc.description}", file=sys.stderr)
        return 1
    print(response.status_code, json.dumps(response.json()))
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
