"""A real browser (Debian's Chromium, driven by Playwright) against one console site."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.site import Site, console_site

CHROMIUM = os.environ.get("DONJON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Nothing the browser does may reach the network: no updates, no sync, no first-run pings.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _need_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    if os.environ.get("CI"):  # CI installs it (.ci/run): missing there is a failure
        pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs the chromium package")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with console_site(tmp_path_factory.mktemp("console")) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots go: ``DONJON_CONSOLE_SHOTS`` (the docs' images) or a temp dir."""
    folder = os.environ.get("DONJON_CONSOLE_SHOTS")
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
