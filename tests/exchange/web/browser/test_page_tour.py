"""Every main page of the trading UI in a real browser, signed in as a demo startup, at desktop
and phone width: each renders without a server error or a script error, nothing is wider than
the screen, and a screenshot of each is saved under var/screenshots/."""

import pytest
from django.core.management import call_command

from tests.exchange.web.browser.conftest import DESKTOP, PHONE, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    ("markets", "/"),
    ("options", "/?kind=option"),
    ("resale", "/?kind=resale"),
    ("portfolio", "/portfolio/"),
    ("statement", "/portfolio/statement/"),
    ("funding", "/funding/"),
    ("api-keys", "/api-keys/"),
    ("team", "/team/"),
    ("capacity", "/capacity/"),
    ("resale-listings", "/capacity/listings/"),
    ("hedging", "/hedging/"),
    ("curves", "/curves/"),
]


@pytest.fixture
def demo_market():
    call_command("seed_demo", verbosity=0)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_main_page_renders_and_fits_the_screen(demo_market, new_page, screenshot, viewport):
    page = new_page(viewport)
    width = "desktop" if viewport is DESKTOP else "phone"
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    sign_in(page, "alice", "gpu-demo-2026")

    problems = []
    for name, url in PAGES:
        response = page.goto(url)
        assert response is not None
        if response.status != 200:
            problems.append(f"{url}: HTTP {response.status}")
            continue
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 1:
            problems.append(f"{url}: {overflow}px wider than the screen")
        screenshot(page, f"tour-{name}-{width}")

    # The hedging calculator on its defaults: the recommendation and its chart.
    page.goto("/hedging/")
    page.get_by_role("button", name="Recommend a hedge").click()
    page.locator("#hedge-chart").wait_for()
    page.get_by_role("link", name="Stage in ticket").first.wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"hedging result: {overflow}px wider than the screen")
    screenshot(page, f"tour-hedging-result-{width}")

    assert not problems, problems
    assert not script_errors, script_errors
