"""Unit tests (no I/O) of keyturn.verify's FeedStatus: the health of a verifier's revocation feed,
as a health check reads it (``healthy``) and as Prometheus scrapes it (``prometheus()``)."""

from __future__ import annotations

import pytest

from keyturn.verify import FeedStatus

METRICS = ("up", "stale", "fail_open", "staleness_seconds", "ended_sessions", "refused_total", "failures")


def status(state: str = "following", **overrides: object) -> FeedStatus:
    values: dict[str, object] = {
        "state": state, "fail_open": False, "staleness": 1.23456, "ended_sessions": 7, "refused": 3,
        "failures": 0, "last_error": None,
    }  # fmt: skip
    values.update(overrides)
    return FeedStatus(**values)  # type: ignore[arg-type]


def samples(text: str) -> dict[str, str]:
    """The ``name value`` lines of a Prometheus text, by name (comments skipped)."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split(" ") for line in lines)


@pytest.mark.parametrize(
    ("state", "healthy"), [("following", True), ("off", True), ("starting", True), ("stale", False)]
)
def test_unhealthy_only_when_stale(state: str, healthy: bool) -> None:
    """Healthy unless stale: following, off (no feed published), or starting (nothing verified yet)."""
    assert status(state).healthy is healthy


def test_prometheus_gauges_of_a_following_feed() -> None:
    """Following: up 1, stale 0, the staleness rounded to ms, the counts as given."""
    assert samples(status().prometheus()) == {
        "keyturn_verify_feed_up": "1",
        "keyturn_verify_feed_stale": "0",
        "keyturn_verify_feed_fail_open": "0",
        "keyturn_verify_feed_staleness_seconds": "1.235",
        "keyturn_verify_feed_ended_sessions": "7",
        "keyturn_verify_feed_refused_total": "3",
        "keyturn_verify_feed_failures": "0",
    }


def test_prometheus_of_a_stale_fail_open_feed() -> None:
    """Stale and failing open: up 0, stale 1, fail_open 1, and the failures in a row."""
    found = samples(status("stale", fail_open=True, staleness=75.0, failures=4, last_error="ConnectError").prometheus())
    assert found["keyturn_verify_feed_up"] == "0"
    assert found["keyturn_verify_feed_stale"] == "1"
    assert found["keyturn_verify_feed_fail_open"] == "1"
    assert found["keyturn_verify_feed_staleness_seconds"] == "75.0"
    assert found["keyturn_verify_feed_failures"] == "4"


def test_prometheus_staleness_before_any_answer_is_minus_one() -> None:
    """Starting (never answered): staleness -1; the feed is up (not stale)."""
    found = samples(status("starting", staleness=None).prometheus())
    assert found["keyturn_verify_feed_staleness_seconds"] == "-1"
    assert (found["keyturn_verify_feed_up"], found["keyturn_verify_feed_stale"]) == ("1", "0")


def test_prometheus_text_declares_every_metric() -> None:
    """Each metric has HELP and TYPE (refused_total a counter, the rest gauges); the text ends in a newline."""
    text = status().prometheus()
    assert text.endswith("\n")
    for name in METRICS:
        kind = "counter" if name == "refused_total" else "gauge"
        assert f"# TYPE keyturn_verify_feed_{name} {kind}\n" in text
        assert f"# HELP keyturn_verify_feed_{name} " in text
    assert len(samples(text)) == len(METRICS)
