"""Integration tests against real `keyturn --dev serve` processes on loopback: hostile request data
(worst-case bodies and cookies, oversized header blocks) neither stalls the server nor gets read.

Responsiveness is measured, never bounded by the clock: the longest /healthz answer while a hostile
request is being handled, over the same with a benign request of the same size.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.hostile import BENIGN_LOGIN, WORST_BODIES, benign_cookie, ids, quoted_escapes_cookie
from tests.servers import Server, dev_workers, keyturn_fixture

pytestmark = pytest.mark.server

ONE_MIB = 1024 * 1024
COOKIE = 15 * 1024  # the cookie header a request head of at most 16 KiB has room for


# `keyturn --dev serve` with its default bounds (rate limits off: the same client asks many times).
server = keyturn_fixture("--dev", own_issuer=False, rate_limit_enabled="false")


def request(path: str, body: bytes = b"", *headers: str) -> bytes:
    """A POST of ``body`` as one HTTP/1.1 message that closes its connection."""
    head = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", "content-type: application/json"]
    head += [f"content-length: {len(body)}", "connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def stall(server: Server, hostile: bytes, deadline: float = 60.0) -> float:
    """The longest /healthz answer, asked again and again on a kept-alive connection, while the
    server handles ``hostile`` (sent in full first); until its answer arrives."""
    probe = http.client.HTTPConnection("127.0.0.1", server.port, timeout=deadline)
    probe.request("GET", "/healthz")
    assert probe.getresponse().read() == b'{"status":"ok"}'
    longest = 0.0
    with socket.create_connection(("127.0.0.1", server.port), timeout=deadline) as conn:
        conn.sendall(hostile)
        while True:
            start = time.perf_counter()
            probe.request("GET", "/healthz")
            assert probe.getresponse().read() == b'{"status":"ok"}'
            longest = max(longest, time.perf_counter() - start)
            if select.select([conn], [], [], 0)[0]:
                break
        answer = _read_all(conn)
    probe.close()
    assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 4")), answer[:200]
    return longest


def worst_stall_ratio(server: Server, hostile: bytes, benign: bytes, bound: float) -> float:
    """Stall with ``hostile`` over stall with ``benign``: the best of three rounds, and of up to five
    for the hostile one (again only while over ``bound``, and not after a stall of a second)."""
    base = min(stall(server, benign) for _ in range(3))
    best = float("inf")
    for _ in range(5):
        this = stall(server, hostile)
        best = min(best, this)
        if best <= bound * base or this > 1.0:
            break
    return best / base


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: 127.0.0.1", "connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def login(body: bytes) -> bytes:
    return request("/v1/auth/login", body)


def refresh_with(cookie: str) -> bytes:
    return request("/v1/auth/refresh", b"{}", f"cookie: {cookie}", "origin: http://127.0.0.1:8000")


def healthz_with(cookie: str) -> bytes:
    return get("/healthz", f"cookie: {cookie}")


# Each hostile request, and a benign one of the same size to the same route.
HOSTILE = {
    "unterminated string of escaped quotes": (WORST_BODIES["unterminated string of escaped quotes"], BENIGN_LOGIN),
    "brackets 16 deep, over and over": (WORST_BODIES["brackets 16 deep, over and over"], BENIGN_LOGIN),
    "empty objects": (WORST_BODIES["empty objects"], BENIGN_LOGIN),
}
PAIRS = {name: (login(worst), login(benign)) for name, (worst, benign) in HOSTILE.items()}
PAIRS["quoted cookie of escapes, on /refresh"] = (
    refresh_with(quoted_escapes_cookie(COOKIE)),
    refresh_with(benign_cookie(COOKIE)),
)
PAIRS["quoted cookie of escapes, on /healthz"] = (
    healthz_with(quoted_escapes_cookie(COOKIE)),
    healthz_with(benign_cookie(COOKIE)),
)


# The bound each case must stay under: a body of 21,000 tiny objects costs a few milliseconds to
# parse (typically 5 times a benign body's stall, tens of times on a loaded machine), where the
# quadratic check stalled the server 3,500 times longer; the cookie costs nothing now, and 260
# to 600 times the benign stall before.
BOUNDS = dict.fromkeys(HOSTILE, 300.0) | {name: 100.0 for name in PAIRS if "cookie" in name}


@pytest.mark.parametrize("case", list(PAIRS), ids=ids(PAIRS))
def test_healthz_stays_responsive_while_a_worst_case_request_is_handled(server: Server, case: str) -> None:
    """The worst 64 KiB bodies and the worst cookie a 16 KiB head can carry delay /healthz by a small
    multiple of what a benign request of the same size does, where the quadratic body check stalled
    it 17 s, and the cookie a quarter of a second."""
    hostile, benign = PAIRS[case]
    assert abs(len(hostile) - len(benign)) < 16
    bound = BOUNDS[case]
    assert worst_stall_ratio(server, hostile, benign, bound=bound) < bound


def _read_all(conn: socket.socket) -> bytes:
    """Everything the server sends before it closes (or resets) the connection."""
    received = bytearray()
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return bytes(received)


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` (in a thread: the server may close before reading it all) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:

        def send() -> None:
            with contextlib.suppress(OSError):  # refused mid-way: the server closed, which is the point
                conn.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        answer = _read_all(conn)
        sender.join(timeout=30)
    return answer


OVERSIZED = {
    "one 1 MiB header": get("/v1/auth/me", "x-big: " + "a" * ONE_MIB),
    "13,000 small headers": get("/v1/auth/me", *(f"x-h{i}: v" for i in range(13_000))),
    "150 tiny fields in 2 KB": get("/v1/auth/me", *(f"x{i}: v" for i in range(150))),
    "a 1 MiB request line": get("/v1/auth/me?" + "q=1&" * (ONE_MIB // 4)),
}


def assert_431(answer: bytes) -> None:
    top, _, body = answer.partition(b"\r\n\r\n")
    assert top.startswith(b"HTTP/1.1 431 "), answer[:300]
    assert json.loads(body)["error"] == "request_headers_too_large"


def test_real_server_answers_431_to_oversized_header_blocks_and_serves_on(server: Server) -> None:
    """A 1 MiB header, 13,000 small ones, 150 fields or a 1 MiB URL: 431, before the app runs (today's
    main read them and answered 401); normal requests are still answered."""
    for data in OVERSIZED.values():
        assert_431(exchange(server.port, data))
    ordinary = exchange(server.port, get("/healthz", *(f"x-h{i}: {'v' * 100}" for i in range(90))))
    assert ordinary.startswith(b"HTTP/1.1 200 "), ordinary[:300]


def test_multi_worker_serve_bounds_the_header_block_too(tmp_path: Path) -> None:
    """`keyturn serve --workers 2` runs the same bounded protocol in every worker process."""
    with dev_workers(tmp_path) as running:
        for _ in range(4):  # connections go to either worker
            assert_431(exchange(running.port, OVERSIZED["one 1 MiB header"]))
            assert_431(exchange(running.port, OVERSIZED["150 tiny fields in 2 KB"]))
        assert exchange(running.port, get("/healthz")).startswith(b"HTTP/1.1 200 ")
