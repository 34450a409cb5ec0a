"""Worst-case request data for the tests that tell linear checks from quadratic ones (see
``tests/timing.py``), each with a benign counterpart of the same size."""

from __future__ import annotations

from collections.abc import Mapping

MAX_BODY = 64 * 1024  # KEYTURN_MAX_BODY_BYTES's default: the largest body that reaches the parser


def ids(cases: Mapping[str, object]) -> list[str]:
    """Test ids from the cases' names: words joined by hyphens (easy to pass to -k)."""
    return [name.replace(" ", "-").replace(",", "").replace("'", "").replace("/", "") for name in cases]


def fill(head: bytes, unit: bytes, tail: bytes = b"", size: int = MAX_BODY) -> bytes:
    """``head``, then ``unit`` as often as fits, then spaces, then ``tail``: a body of ``size`` bytes."""
    return (head + unit * ((size - len(head) - len(tail)) // len(unit))).ljust(size - len(tail)) + tail


# The worst cases of each step: string scanning (the unterminated string of escaped quotes that made
# the old pre-check quadratic), the C decoder's recursion, one Python callback per object, the
# depth passes (brackets nested just below the limit, over and over), and the duplicate check.
WORST_BODIES = {
    "unterminated string of escaped quotes": fill(b'{"a":"', b'\\"'),
    "escaped backslashes and quotes": fill(b'{"a":"', b'\\\\\\"', b'"}'),
    "brackets 64 Ki deep": b"[" * MAX_BODY,
    "brackets 16 deep, over and over": fill(b"[", b"[" * 15 + b"]" * 15 + b",", b"0]"),
    "empty objects": fill(b"[", b"{},", b"{}]"),
    "empty arrays": fill(b"[", b"[],", b"[]]"),
    "a member named twice, last": fill(b"{", b'"k":0,', b'"k":1}'),
    "long integers": fill(b"[", b"9" * 4000 + b",", b"0]"),
}


def members(size: int = MAX_BODY) -> bytes:
    """What a large body of ours looks like: one object of members with short names and string values."""
    count = (size - 2) // len(b'"m00000":"a value",')
    return b"{" + b",".join(b'"m%05d":"a value"' % i for i in range(count)).ljust(size - 2, b" ") + b"}"


BENIGN_BODY = members()


COOKIE_HEADER = 16 * 1024  # KEYTURN_MAX_HEADER_BYTES's default bounds one Cookie header
REFRESH = "__Secure-keyturn-refresh"


def _cookie(head: str, unit: str, tail: str = "", size: int = COOKIE_HEADER) -> str:
    return (head + unit * ((size - len(head) - len(tail)) // len(unit))).ljust(size - len(tail)) + tail


def quoted_escapes_cookie(size: int = COOKIE_HEADER) -> str:
    """The refresh cookie as a quoted value of backslash escapes, ``size`` characters in all."""
    return _cookie(f'{REFRESH}="', "\\a", '"', size)


def benign_cookie(size: int = COOKIE_HEADER) -> str:
    """What a large Cookie header looks like: the refresh cookie among ordinary ones."""
    return _cookie(f"{REFRESH}=kt_rt_{'A' * 80}", "; pref_0000=a-usual-value-here", "; last=1", size)


# The worst cases of finding one cookie in a Cookie header: a quoted value of backslash escapes
# (quadratic in http.cookies._unquote before Python 3.11.10, CVE-2024-7592, which
# request.cookies runs on every cookie), and as many pairs, names or separators as fit.
WORST_COOKIES = {
    "quoted value of backslash escapes": quoted_escapes_cookie(),
    "another cookie's quoted escapes": _cookie('other="', "\\a", f'"; {REFRESH}=kt_rt_x'),
    "empty pairs": _cookie(f"{REFRESH}=kt_rt_x;", "a=;"),
    "separators": _cookie(f"{REFRESH}=kt_rt_x", ";"),
    "the name, over and over": _cookie("", f"{REFRESH}=;"),
    "the name without a value": _cookie("", f"; {REFRESH}"),
    "spaces after a separator": _cookie(";", " ", f"{REFRESH}=kt_rt_x"),
}
BENIGN_COOKIE = benign_cookie()
# A large body of the realistic kind: a sign-in whose password is far too long (refused unhashed).
BENIGN_LOGIN = fill(b'{"username":"alice","password":"', b"a", b'"}')
