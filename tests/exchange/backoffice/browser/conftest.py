"""The browser fixtures of tests/exchange/web/browser (Playwright on Debian's Chromium), for the
back office's pages. tests/conftest.py marks every test under a browser/ directory
``browser``."""

from tests.exchange.web.browser.conftest import (  # noqa: F401 (fixtures)
    chromium,
    new_page,
    screenshot,
    screenshot_dir,
)
