"""Fuzz tests of the token parsers (unit level, no I/O but a subprocess): ``tests/fuzz_tokens.py``.

The coverage-guided run uses atheris in a child process (libFuzzer owns the process it runs in,
and stops on the first crash), bounded by run count and time. The same target also runs under
hypothesis, so it is exercised where atheris is not installed and a failure shrinks to a
small input.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_tokens

ROOT = Path(__file__).resolve().parent.parent
RUNS = 1_000_000
SECONDS = 15


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    """libFuzzer runs the token parsers for 15 s: only the documented errors ever escape."""
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz_tokens",
        f"-atheris_runs={RUNS}",
        f"-max_total_time={SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        "-rss_limit_mb=1024",
        "-print_final_stats=1",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 60, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = re.search(r"^Done (\d+) (?:runs )?in (\d+) second", done.stderr, re.MULTILINE)
    assert runs is not None, done.stderr[-2000:]
    print(f"atheris: {runs[1]} executions in {runs[2]} s")
    assert int(runs[1]) > 1000


@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_hypothesis_feeds_the_same_target(data: bytes) -> None:
    """The fuzz target under hypothesis: only InvalidToken, InvalidGrant or ValueError escape."""
    fuzz_tokens.check(data)


@pytest.mark.parametrize("check", fuzz_tokens.CHECKS, ids=lambda c: c.__name__)
@settings(max_examples=1000, deadline=None, database=None)
@given(data=st.binary(max_size=400))
def test_each_target(check: object, data: bytes) -> None:
    """Each target on its own, so hypothesis spends examples evenly between them."""
    check(fuzz_tokens.Bytes(data))  # type: ignore[operator]
