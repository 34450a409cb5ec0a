"""A command-line client of a keyturn server: log in once, then call protected URLs.

    .venv/bin/python examples/cli_client.py login --username alice   # asks for the password
    .venv/bin/python examples/cli_client.py call                     # GET <issuer>/v1/auth/me
    .venv/bin/python examples/cli_client.py call --url http://127.0.0.1:8001/orders
    .venv/bin/python examples/cli_client.py logout

The tokens live in ~/.config/keyturn-example/tokens.json (mode 0600; ``--store`` to change it).
The access token is refreshed when it is about to expire, safely even when several copies of
this program run at once. The issuer is ``--issuer``, else ``$KEYTURN_ISSUER``, else
http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

import httpx

from keyturn import KeyturnError
from keyturn.client import FileTokenStore, KeyturnAuth

DEFAULT_STORE = "~/.config/keyturn-example/tokens.json"


def login(auth: KeyturnAuth, args: argparse.Namespace) -> int:
    """Sign in and store the session's tokens."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.username}: ")
    tokens = auth.login(args.username, password, device_name=args.device_name)
    print(f"Logged in as {args.username} (session {tokens.session_id}); tokens in {args.store}")
    return 0


def call(auth: KeyturnAuth, args: argparse.Namespace) -> int:
    """GET a protected URL with the stored session and print its answer."""
    with httpx.Client(auth=auth, timeout=10) as http:
        response = http.get(args.url or f"{auth.issuer}/v1/auth/me")
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)
    return 0 if response.is_success else 1


def logout(auth: KeyturnAuth, args: argparse.Namespace) -> int:
    """End the stored session and delete the tokens."""
    auth.logout()
    print("Logged out.")
    return 0


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(description="Log in to a keyturn server and call protected URLs.")
    cli.add_argument("--issuer", default=os.environ.get("KEYTURN_ISSUER", "http://127.0.0.1:8000"))
    cli.add_argument("--store", default=DEFAULT_STORE, help=f"token file (default {DEFAULT_STORE})")
    commands = cli.add_subparsers(required=True, metavar="{login,call,logout}")
    sign_in = commands.add_parser("login", help="sign in and store the tokens")
    sign_in.add_argument("--username", required=True)
    sign_in.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sign_in.add_argument("--device-name", default="keyturn example CLI")
    sign_in.set_defaults(run=login)
    get = commands.add_parser("call", help="GET a protected URL (default <issuer>/v1/auth/me)")
    get.add_argument("--url")
    get.set_defaults(run=call)
    commands.add_parser("logout", help="end the session and delete the tokens").set_defaults(run=logout)
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    auth = KeyturnAuth(args.issuer, FileTokenStore(args.store))
    try:
        status: int = args.run(auth, args)
    except (KeyturnError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
