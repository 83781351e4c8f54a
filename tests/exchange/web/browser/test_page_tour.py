"""Every main page of the trading UI in a real browser, signed in as a demo startup, at desktop
and phone width: each renders without a server error or a script error, nothing is wider than
the screen, and a screenshot of each is saved under var/screenshots/. The pool pages are seen
by a member (Alice, with open demand) and by the sponsor (Fiona)."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from exchange.demo import DEMO_POOL_NAME
from exchange.models import Instrument
from exchange.models.pools import Pool
from exchange.services.pools import demand_submit
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
    ("pools", "/pools/"),
]


@pytest.fixture
def demo_market():
    call_command("seed_demo", verbosity=0)


def _pool_with_open_demand() -> Pool:
    """The demo pool, with open demand of Lumen (Alice's organization) in its first H100 month."""
    pool = Pool.objects.get(name=DEMO_POOL_NAME)
    future = (
        Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE,
            status=Instrument.Status.ACTIVE,
            sku__code="H100SXM",
            region__code="USEAST",
        )
        .order_by("delivery_start")
        .first()
    )
    demand_submit(
        member=pool.members.get(organization__slug="lumen"),
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=8,
        limit_price=Decimal("2.40"),
        actor=None,
    )
    return pool


def _visit(page, url: str, name: str, problems: list[str], screenshot) -> None:
    response = page.goto(url)
    assert response is not None
    if response.status != 200:
        problems.append(f"{url}: HTTP {response.status}")
        return
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"{url}: {overflow}px wider than the screen")
    screenshot(page, name)


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
    if viewport is DESKTOP:  # A phone scrolls the table in its box; a desktop shows it whole.
        wider = page.evaluate(
            "(() => { const table = document.querySelector('table.orders');"
            " return table.scrollWidth - table.parentElement.clientWidth; })()"
        )
        if wider > 1:
            problems.append(f"hedging orders: {wider}px wider than their box on a desktop")
    screenshot(page, f"tour-hedging-result-{width}")

    # The pool: Alice's member page, then Fiona's list and sponsor's dashboard.
    pool = _pool_with_open_demand()
    _visit(page, f"/pools/{pool.pk}/", f"tour-pool-member-{width}", problems, screenshot)
    sponsor = new_page(viewport)
    sponsor.on("pageerror", lambda error: script_errors.append(str(error)))
    sign_in(sponsor, "fiona", "gpu-demo-2026")
    _visit(sponsor, "/pools/", f"tour-pools-sponsor-{width}", problems, screenshot)
    _visit(sponsor, f"/pools/{pool.pk}/", f"tour-pool-sponsor-{width}", problems, screenshot)

    assert not problems, problems
    assert not script_errors, script_errors
