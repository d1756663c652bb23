"""Debian's Chromium for the web app's end-to-end tests, driven by Playwright (no browser download).

A test module calls :func:`require_chromium` at import: without Chromium the module is skipped on a
developer's machine and fails in CI (``.ci/run`` installs it), so CI never passes by skipping.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

CHROMIUM = os.environ.get("VISCURATE_CHROMIUM", "/usr/bin/chromium")


def require_chromium() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            raise RuntimeError(f"the web tests need Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


@contextlib.contextmanager
def chromium_browser() -> Iterator["object"]:
    """A headless Chromium for the duration of the block."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
