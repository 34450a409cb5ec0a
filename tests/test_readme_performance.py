"""Unit test (reads files only): the README's performance table says what the latest committed
benchmark run measured (``bench/results/latest.md``), figure for figure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# README row label -> the target of latest.md whose detail holds its two rates
ROWS = {
    "refresh, SQLite": "refresh sqlite ÷ reference refresh @64",
    "refresh, PostgreSQL": "refresh postgresql ÷ reference refresh @64",
    "`GET /v1/auth/me`": "me sqlite ÷ reference protected @64",
}


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    section = (ROOT / "README.md").read_text().split("## Performance", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        label = next((k for k in ROWS if line.startswith(f"| {k}")), None)
        if label is not None:
            rows[label] = (cells[1].removesuffix(" req/s"), cells[2].removesuffix(" req/s"), cells[3])
    return rows


def _latest(target: str) -> tuple[str, str, str]:
    line = next(
        ln for ln in (ROOT / "bench/results/latest.md").read_text().splitlines() if ln.startswith(f"| {target} |")
    )
    cells = [c.strip() for c in line.strip("|").split("|")]
    found = re.match(r"([\d,]+) ÷ ([\d,]+) req/s", cells[4])
    assert found, line
    return found[1], found[2], cells[2]


def test_readme_performance_table_is_the_latest_run() -> None:
    rows = _readme_rows()
    assert set(rows) == set(ROWS)
    for label, target in ROWS.items():
        assert rows[label] == _latest(target), label
