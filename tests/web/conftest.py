"""The headless browser the status page's tests drive: Debian's chromium through Playwright
for Python, launched by its executable path (no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._peers import peer_unavailable, require_module

CHROMIUM = "/usr/bin/chromium"


def need_chromium() -> None:
    """Skip (or, in CI, fail) without Playwright or Debian's chromium."""
    require_module("playwright.sync_api", "Playwright for Python (pip install playwright)")
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        peer_unavailable("Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
