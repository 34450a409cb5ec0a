"""A stub issuer on loopback for the verifier's tests: JSON documents by path (a JWKS, metadata, a
feed page), 404 for any other path; an :class:`Answer` sends another status. The query string is
not part of the path matched. Documents may be added once the URL is known (the metadata names it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Answer", "stub_issuer"]


@dataclass(frozen=True)
class Answer:
    """An answer other than 200 with a document: ``status`` with ``body`` as JSON."""

    status: int
    body: Any = None


@contextmanager
def stub_issuer(documents: dict[str, Any], hits: list[str] | None = None) -> Iterator[str]:
    """Serve ``documents`` (path: JSON value or Answer) until the block ends; yields the base URL.
    Each request's path (with its query) is appended to ``hits`` when given."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if hits is not None:
                hits.append(self.path)
            found = documents.get(urlsplit(self.path).path)
            answer = found if isinstance(found, Answer) else Answer(404, {}) if found is None else Answer(200, found)
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(answer.body).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)  # quick shutdown
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            thread.join(5)
