"""The public market pages in a real browser, on the demo market, at desktop and phone width."""

import pytest
from django.core.management import call_command

from exchange.models import Instrument
from tests.exchange.web.browser.conftest import DESKTOP, PHONE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_market():
    call_command("seed_demo", verbosity=0)


def _front_future() -> Instrument:
    return (
        Instrument.objects.filter(kind=Instrument.Kind.FUTURE, sku__code="H100SXM")
        .order_by("delivery_start", "region__code")
        .first()
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_markets_and_an_instrument_render_for_a_visitor(
    demo_market, new_page, screenshot, viewport
):
    page = new_page(viewport)
    width = "desktop" if viewport is DESKTOP else "phone"

    page.goto("/")
    page.get_by_role("heading", name="Markets").wait_for()
    assert page.locator("table.grid tbody tr").count() >= 10  # Demo: 5 SKUs x 3 regions.
    screenshot(page, f"markets-{width}")

    future = _front_future()
    page.locator(f'a[href="/instruments/{future.symbol}/"]').first.click()
    page.get_by_role("heading", name=future.symbol).wait_for()
    assert page.locator("table.book tr.bid").count() > 0
    # Nothing wider than the screen: the page scrolls vertically only (wide tables scroll inside).
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    screenshot(page, f"instrument-{width}")
