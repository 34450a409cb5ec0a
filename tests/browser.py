"""Headless Chromium for the browser tests: the one place that finds and starts it.

Debian's ``chromium`` package (``./scripts/test`` installs it; Playwright never downloads a
browser here). A module calls ``require_chromium()`` before importing Playwright, then uses the
module-scoped fixture ``browser = chromium_fixture()`` makes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["ARGS", "CHROMIUM", "chromium_fixture", "require_chromium"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def require_chromium() -> None:
    """Skip the calling module when Chromium is missing (in CI, fail: it must be there)."""
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI"):  # pragma: no cover - the test command installs it
        raise RuntimeError("Chromium is missing; ./scripts/test installs Debian's chromium package")
    pytest.skip("Chromium is not installed (./scripts/test installs it)", allow_module_level=True)  # pragma: no cover


def chromium_fixture() -> Any:
    """A module-scoped fixture: one headless Chromium for the module's tests."""

    @pytest.fixture(scope="module")
    def browser() -> Iterator[Browser]:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield launched
            launched.close()

    return browser
