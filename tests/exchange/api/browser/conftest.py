"""The browser fixtures of tests/exchange/web/browser (Playwright on Debian's Chromium), for the
API's documentation pages; these tests are marked ``browser`` like those."""

import os

import pytest

from tests.exchange.web.browser.conftest import (  # noqa: F401 (fixtures)
    chromium,
    new_page,
    screenshot,
    screenshot_dir,
)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/exchange/api/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
