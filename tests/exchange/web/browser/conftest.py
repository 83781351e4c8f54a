"""Real-browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Playwright never downloads a browser here: it launches the system Chromium
(``EXCHANGE_CHROMIUM``, default ``/usr/bin/chromium``; ``.ci/run`` installs it with apt-get).
Without it the browser tests are skipped, unless ``EXCHANGE_REQUIRE_BROWSER=1`` (set by CI),
where a missing browser fails them.

Screenshots of the pages a test visits go to ``var/screenshots/`` (``settings.VAR_DIR``).
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = os.environ.get("EXCHANGE_CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One browser per test module. Playwright's sync API runs an event loop in this thread
    while it is open; module scope stops it before other modules' tests (async_to_sync refuses
    to run beside a live loop), and Django's ORM, used by the tests to arrange and check, is
    told the loop is not the caller's."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("EXCHANGE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium).")
        pytest.skip(f"Chromium not found at {CHROMIUM}; set EXCHANGE_CHROMIUM or install it.")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launched(sync_playwright)
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launched(sync_playwright) -> Iterator[object]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # Root (CI containers) cannot use Chromium's sandbox.
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, live_server):
    """Opens a page in a fresh browser context (its own cookies: one signed-in user each)."""
    contexts = []

    def open_page(viewport: dict[str, int] = DESKTOP):
        context = chromium.new_context(viewport=viewport, base_url=live_server.url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    directory = Path(settings.VAR_DIR) / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def screenshot(screenshot_dir):
    """``screenshot(page, "name")`` saves the full page as ``var/screenshots/<name>.png``."""

    def save(page, name: str) -> Path:
        path = screenshot_dir / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


def sign_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
