"""Fixtures of the `keyturn` command's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.cli.runner import Cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> Cli:
    """The CLI in production mode, run in an empty temp directory with only its own settings."""
    monkeypatch.chdir(tmp_path)
    return Cli(tmp_path)
