"""Unit tests (no I/O) of keyturn.server._fields: the values of single settings (durations,
networks, origins) and what makes a secret or an issuer unacceptable."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from keyturn.server._fields import is_loopback_host, issuer_problem, networks, origins, secret_weakness
from keyturn.server.config import parse_duration
from tests.timing import cost_ratio


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("900", 900),
        ("15m", 900),
        ("7d", 7 * 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("0.5", 0.5),
        ("250ms", 0.25),
        ("30s", 30),
        ("2w", 14 * 86400),
        ("1d12h", 36 * 3600),
        (" 15M ", 900),
        ("0", 0),
        (900, 900),
        (1.5, 1.5),
        (timedelta(minutes=3), 180),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "soon", "15x", "-5", "m", ".5h", "1.h", "1,5h", "1e3", "15m and more", "h1", True, -1, "15 minutes"]
)
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_refuses_a_long_text_without_echoing_it() -> None:
    """Over 64 characters is no duration: refused as too long, and the message does not repeat it."""
    assert parse_duration(" " * 1000 + "1w 6d 23h 59m 59s 999ms") == timedelta(weeks=2, milliseconds=-1)
    with pytest.raises(ValueError, match="at most 64 characters") as excinfo:
        parse_duration("1" * 65)
    assert "1" * 65 not in str(excinfo.value)


LONGEST_BODY = 64 * 1024  # KEYTURN_MAX_BODY_BYTES: the "delay" of POST /v1/admin/keys/rotate can be nearly as long


def test_parse_duration_is_linear_on_its_worst_case() -> None:
    """64 Ki digits and no unit cost a small multiple of a duration padded to the same size (findall
    retried its pattern from every digit: minutes for this one request body)."""
    worst, benign = "1" * (LONGEST_BODY - 1) + "x", " " * (LONGEST_BODY - 5) + "1h30m"

    def parse(text: str) -> None:
        with contextlib.suppress(ValueError):
            parse_duration(text)

    assert cost_ratio(parse, worst, benign, bound=10) < 10


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.8.9.10", True), ("[::1]", True),
     ("::1", True), ("10.0.0.1", False), ("example.com", False), ("localhost.example.com", False)],
)  # fmt: skip
def test_is_loopback_host_resolves_no_name_but_localhost(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_issuer_problem_names_what_is_wrong() -> None:
    assert issuer_problem("https://auth.example.com", production=True) is None
    assert issuer_problem("http://127.0.0.1:8000", production=True) is None
    assert "https://" in (issuer_problem("http://auth.example.com", production=True) or "")
    assert issuer_problem("http://auth.example.com", production=False) is None
    assert "required" in (issuer_problem("", production=True) or "")
    assert "not a URL" in (issuer_problem("https://auth.example.com/?q=1", production=False) or "")


def test_secret_weakness_says_why() -> None:
    assert "at least" in (secret_weakness("short") or "")
    assert "distinct" in (secret_weakness("ab" * 32) or "")
    assert "placeholder" in (secret_weakness("changeme-Aa1Bb2Cc3Dd4Ee5-changeme") or "")
    assert secret_weakness("Zq8Kd2Lp0Xv7TODOn4Rb1Ws9Yc6Hj3Mf5Ga0Et8Uo2Ik7Ql") is None


def test_networks_and_origins_split_and_check_lists() -> None:
    assert networks("10.0.0.0/8, 192.0.2.1 ,") == ("10.0.0.0/8", "192.0.2.1")
    assert origins("https://app.example.com/, http://localhost:3000") == (
        "https://app.example.com",
        "http://localhost:3000",
    )
    with pytest.raises(ValueError, match="not an IP address"):
        networks("10.0.0.0/33")
    with pytest.raises(ValueError, match="no '\\*'"):
        origins("*")
