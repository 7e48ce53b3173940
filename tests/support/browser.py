"""A real headless browser for the dashboard's tests: Debian's chromium, driven by
Playwright (which downloads no browser of its own when given the executable). Tests that
take `browser` skip, saying why, where no chromium is installed (fail, in CI); `./dev
test` installs it where apt-get works. Screenshots go to `screenshot_dir()`."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_VARIABLE = "NGPU_TEST_CHROMIUM"
"""The chromium executable to drive, when not `chromium` on the PATH."""
REQUIRE_VARIABLE = "NGPU_REQUIRE_BROWSER"
"""Set (CI sets it): no chromium fails the browser tests instead of skipping them."""
SCREENSHOTS_VARIABLE = "NGPU_SCREENSHOTS_DIR"
"""Where the dashboard's tests save their screenshots (default `.screenshots/`, ignored by
git; `docs/screenshots` refreshes the copies README shows)."""
REPO = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    configured = os.environ.get(CHROMIUM_VARIABLE, "")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot_dir() -> Path:
    configured = os.environ.get(SCREENSHOTS_VARIABLE, "")
    directory = Path(configured) if configured else REPO / ".screenshots"
    if not directory.is_absolute():
        directory = REPO / directory
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless chromium for the module; skips the test when there is none."""
    executable = chromium_path()
    if executable is None:
        why = (
            "no chromium to drive: install Debian's (`apt-get install chromium`; `./dev test` "
            f"does when run as root) or set {CHROMIUM_VARIABLE} to an executable"
        )
        if os.environ.get(REQUIRE_VARIABLE):
            pytest.fail(f"{why} ({REQUIRE_VARIABLE} is set)")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable)
        try:
            yield instance
        finally:
            instance.close()


def save_screenshot(page: Page, name: str) -> Path:
    """The whole page as `<name>.png` in `screenshot_dir()`; checks a PNG of the viewport's
    width was written."""
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    assert width == VIEWPORT["width"] and height >= VIEWPORT["height"], (width, height)
    return path
