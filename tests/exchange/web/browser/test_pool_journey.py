"""The portfolio pool of issue 7 in a real browser, on the demo market.

Alice (Lumen Labs) and Quinn (Quanta Bio), members of Foundry Ventures' pool, submit demand for
the same H100 SXM US East month with a limit above the demo's best ask; Fiona (Foundry) cuts
off and closes the round from her dashboard; both members see their allocations and report,
and the sponsor sees the allocation table and the pool's report. Screenshots of the sponsor's
dashboard and a member's page go to var/screenshots/.
"""

import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from exchange.demo import DEMO_PASSWORD, DEMO_POOL_NAME
from exchange.models import Instrument
from exchange.models.pools import Pool, PoolAllocation, PoolRound
from exchange.selectors.market import instruments_listed, quotes_for
from tests.exchange.web.browser.conftest import PHONE, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

GPUS = {"alice": 30, "quinn": 20}
ORGANIZATIONS = {"alice": "Lumen Labs", "quinn": "Quanta Bio"}
LIMIT_ABOVE_ASK = Decimal("0.05")


@pytest.fixture
def demo_market():
    call_command("seed_demo", verbosity=0)


def _month_with_an_ask() -> tuple[Instrument, Decimal]:
    """The first H100 SXM US East month whose best ask can fill both members' demand, and a
    limit above that ask."""
    futures = list(
        instruments_listed(
            kind=Instrument.Kind.FUTURE,
            sku="H100SXM",
            region="USEAST",
            status=Instrument.Status.ACTIVE,
        ).order_by("delivery_start")
    )
    quotes = quotes_for(futures)
    for future in futures:
        ask = quotes[future.pk].best_ask
        if ask is not None and ask.quantity >= sum(GPUS.values()):
            return future, ask.price + LIMIT_ABOVE_ASK
    raise AssertionError("The demo quotes no H100 SXM US East month deep enough.")


def test_members_demand_the_sponsor_cuts_off_and_everyone_sees_the_allocation(
    demo_market, new_page, screenshot
):
    problems: list[str] = []

    def watched(page):
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "response",
            lambda r: r.status >= 400 and problems.append(f"HTTP {r.status} {r.url}"),
        )
        page.on("dialog", lambda dialog: dialog.accept())  # The confirm steps: yes.
        return page

    pool = Pool.objects.get(name=DEMO_POOL_NAME)
    future, limit = _month_with_an_ask()
    month_label = f"{future.delivery_start:%b %Y}"
    rounds_before = PoolRound.objects.filter(pool=pool).count()

    # Alice and Quinn each submit demand for the month from the pool's page.
    members = {}
    for username, gpus in GPUS.items():
        page = watched(new_page())
        sign_in(page, username, DEMO_PASSWORD)
        page.goto("/pools/")
        page.get_by_role("link", name=DEMO_POOL_NAME).click()
        expect(page.get_by_role("heading", name="Submit demand")).to_be_visible()
        page.get_by_label("SKU").select_option("H100SXM")
        page.get_by_label("Region").select_option("USEAST")
        page.get_by_label(month_label, exact=True).check()
        page.get_by_label("GPUs per month", exact=True).fill(str(gpus))
        page.get_by_label("Limit price ($/GPU-hr)").fill(str(limit))
        page.get_by_role("button", name="Submit demand").click()
        expect(page.locator(".messages")).to_contain_text(f"Demand submitted for {month_label}")
        expect(page.locator("table.demand")).to_contain_text(future.symbol)
        members[username] = page

    # Fiona sees the aggregated demand, cuts off and closes the round.
    fiona = watched(new_page())
    sign_in(fiona, "fiona", DEMO_PASSWORD)
    fiona.goto("/pools/")
    fiona.get_by_role("link", name=DEMO_POOL_NAME).click()
    open_demand = fiona.locator("table.open-demand")
    expect(open_demand).to_contain_text(future.symbol)
    expect(open_demand).to_contain_text(f"{sum(GPUS.values()) * future.gpu_hours_per_contract:,}")
    fiona.get_by_role("button", name="Cut off now").click()
    expect(fiona.locator(".messages")).to_contain_text(re.compile(r"Round \d+ cut off"))
    fiona.get_by_role("button", name="Close round and allocate").click()
    expect(fiona.locator(".messages")).to_contain_text("closed and allocated")
    allocations = fiona.locator("table.allocations").first
    for organization in ORGANIZATIONS.values():
        expect(allocations).to_contain_text(organization)
    expect(fiona.locator("#report-filled")).not_to_have_text("0")
    screenshot(fiona, "pool-sponsor-dashboard")

    round_ = PoolRound.objects.filter(pool=pool).order_by("-number").first()
    assert PoolRound.objects.filter(pool=pool).count() == rounds_before + 1
    assert round_.status == PoolRound.Status.ALLOCATED
    settled = {
        a.member.organization.name: a
        for a in PoolAllocation.objects.filter(round=round_).select_related("member__organization")
    }
    for username, gpus in GPUS.items():
        allocation = settled[ORGANIZATIONS[username]]
        assert (allocation.status, allocation.quantity) == (PoolAllocation.Status.SETTLED, gpus)

    # Each member sees its own allocation, and not the other's.
    for username, page in members.items():
        page.reload()
        own = page.locator(f"#allocation-{settled[ORGANIZATIONS[username]].pk}")
        expect(own).to_contain_text("Settled")
        expect(own).to_contain_text(future.symbol)
        other = next(name for name in ORGANIZATIONS if name != username)
        expect(page.locator(f"#allocation-{settled[ORGANIZATIONS[other]].pk}")).to_have_count(0)
        hours = GPUS[username] * future.gpu_hours_per_contract
        expect(page.locator("#report-filled")).to_have_text(f"{hours:,}")
        screenshot(page, f"pool-member-{username}")

    # The member's page at phone width.
    phone = watched(new_page(PHONE))
    sign_in(phone, "alice", DEMO_PASSWORD)
    phone.goto(f"/pools/{pool.pk}/")
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{overflow}px wider than the screen"
    screenshot(phone, "pool-member-alice-phone")

    call_command("ledger_check", verbosity=0)
    assert not problems, problems
