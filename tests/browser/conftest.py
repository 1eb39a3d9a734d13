"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright (no browser download).

``bash deploy/install.sh --dev`` installs both (``apt-get install chromium``, ``playwright`` in the dev
extras). Without them these tests fail, naming that command: they never skip. ``MEDSEG_CHROMIUM`` names
another Chromium binary. Screenshots go to ``$MEDSEG_TEST_ARTIFACTS/browser`` (default: ``tests-artifacts/``
in the checkout, ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_tab import Tab

REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = "run `bash deploy/install.sh --dev` (installs Debian's chromium and the playwright package)"


def chromium_path() -> str:
    """The Chromium binary: ``$MEDSEG_CHROMIUM``, else ``chromium`` on PATH, else /usr/bin/chromium."""
    configured = os.environ.get("MEDSEG_CHROMIUM")
    found = configured or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).is_file():
        pytest.fail(f"no Chromium at {found} for the browser tests: {INSTALL_HINT}", pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (Playwright's sync API); closed when the module is done."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is missing for the browser tests: {INSTALL_HINT}", pytrace=False)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where the browser tests keep their screenshots (test artifacts of a CI run)."""
    root = Path(os.environ.get("MEDSEG_TEST_ARTIFACTS") or REPO / "tests-artifacts")
    out = root / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture()
def tab(browser: Any) -> Iterator[Tab]:
    """A fresh page that reaches nothing but 127.0.0.1 and files: the tests stay offline (the Prefect UI
    would call an analytics host)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.route("**/*", _local_only)
    found = Tab(context.new_page())
    found.page.on("console", lambda msg: found.console_errors.append(msg.text) if msg.type == "error" else None)
    found.page.on("pageerror", lambda exc: found.page_errors.append(str(exc)))
    try:
        yield found
    finally:
        context.close()


def _local_only(route: Any) -> None:
    url = route.request.url
    if url.startswith(("file:", "data:", "http://127.0.0.1:", "about:")):
        route.continue_()
    else:
        route.abort()
