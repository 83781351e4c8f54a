"""The trading journey of issue 6 in a real browser, on the demo market.

Alice (Lumen Labs, startup) signs in, adds test funds and places a limit buy that rests in the
book; Quinn (Quanta Bio, startup) sells into it from another browser; both see the trade, their
positions and balances change; the staff user runs the daily settlement from the back office.
Screenshots of each page go to var/screenshots/.
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone
from playwright.sync_api import expect

from exchange.calendar import close_at
from exchange.models import Instrument, Organization, RiskCycle, Trade
from exchange.selectors.funding import cash_balance
from exchange.selectors.positions import contracts_in
from exchange.services import settlement_prices
from exchange.services.participants import account_main
from exchange.templatetags.money import usd_exact
from tests.exchange.web.browser.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_PASSWORD = "gpu-demo-2026"
ADMIN_PASSWORD = "admin-demo-2026"
PRICE = "2.300"


@pytest.fixture
def demo_market():
    call_command("seed_demo", verbosity=0)


def _quiet_future() -> Instrument:
    """An H100 US East future nobody quotes in the demo: the test's orders meet only each other."""
    return (
        Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE, sku__code="H100SXM", region__code="USEAST"
        )
        .annotate(orders_count=Count("orders"))
        .filter(orders_count=0)
        .order_by("delivery_start")
        .first()
    )


def _account(slug: str):
    return account_main(Organization.objects.get(slug=slug))


def test_two_startups_trade_in_the_browser_and_staff_settle_the_day(
    demo_market, new_page, screenshot, monkeypatch
):
    console_errors: list[str] = []

    def watched(page):
        page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.on(
            "response",
            lambda r: r.status >= 400 and console_errors.append(f"HTTP {r.status} {r.url}"),
        )
        return page

    future = _quiet_future()
    assert future is not None
    lumen, quanta = _account("lumen"), _account("quanta")

    # Alice adds test funds.
    alice = watched(new_page())
    sign_in(alice, "alice", DEMO_PASSWORD)
    before_deposit = cash_balance(lumen).posted
    alice.goto("/funding/")
    alice.get_by_label("Test funds amount (USD)").fill("25000")
    alice.get_by_role("button", name="Add test funds").click()
    # The page shows the new balance as the portfolio shows money: with separators, whole cents
    # when exact, else every micro-dollar (the demo's trades left micro-dollars in it).
    after_deposit = usd_exact(before_deposit + Decimal("25000"))
    expect(alice.locator("#cash-posted")).to_have_text(after_deposit)
    assert cash_balance(lumen).posted == before_deposit + Decimal("25000")
    screenshot(alice, "funding")

    # Alice places a limit buy: the ticket shows the collateral first, then the bid rests.
    alice.goto(f"/instruments/{future.symbol}/")
    alice.get_by_label("Quantity", exact=True).fill("3")
    alice.get_by_label("Price", exact=True).fill(PRICE)
    expect(alice.locator("#ticket-preview")).to_contain_text("USD")
    screenshot(alice, "ticket-preview")
    alice.get_by_role("button", name="Buy", exact=True).click()
    expect(alice.locator("table.book tr.bid").first).to_contain_text(PRICE)
    expect(alice.locator("#my-orders")).to_contain_text(PRICE)
    lumen_cash = cash_balance(lumen)
    assert lumen_cash.pending > 0  # Margin and fee held for the resting bid.
    screenshot(alice, "instrument-bid-resting")

    # Quinn, in another browser, sees the bid and sells two contracts into it.
    quinn = watched(new_page())
    sign_in(quinn, "quinn", DEMO_PASSWORD)
    quanta_before = cash_balance(quanta)
    quinn.goto(f"/instruments/{future.symbol}/")
    expect(quinn.locator("table.book tr.bid").first).to_contain_text(PRICE)
    quinn.get_by_label("Quantity", exact=True).fill("2")
    quinn.get_by_label("Price", exact=True).fill(PRICE)
    quinn.get_by_role("button", name="Sell", exact=True).click()
    expect(quinn.locator("table.tape")).to_contain_text(PRICE)
    screenshot(quinn, "instrument-after-trade")

    # Alice's page refreshes by itself (htmx, every 2 s): the trade and her remaining bid.
    expect(alice.locator("table.tape")).to_contain_text(PRICE, timeout=6_000)
    expect(alice.locator("table.book tr.bid").first).to_contain_text("1")
    trade = Trade.objects.get(instrument=future)
    assert (trade.quantity, trade.price) == (2, Decimal(PRICE))

    # Both portfolios show the position; balances moved by the fees and margin.
    assert contracts_in(lumen, future) == 2
    assert contracts_in(quanta, future) == -2
    for page, name in [(alice, "alice"), (quinn, "quinn")]:
        page.goto("/portfolio/")
        expect(page.get_by_role("link", name=future.symbol).first).to_be_visible()
        screenshot(page, f"portfolio-{name}")
    quanta_after = cash_balance(quanta)
    assert quanta_after.available < quanta_before.available  # Margin held, fee paid.

    # Staff run the day's settlement from the back office: preview, then confirm.
    staff = watched(new_page())
    staff.goto("/admin/login/")
    staff.get_by_label("Username").fill("admin")
    staff.get_by_label("Password").fill(ADMIN_PASSWORD)
    staff.get_by_role("button", name="Log in").click()
    staff.goto("/backoffice/")
    expect(staff.get_by_role("heading", name="Operations dashboard")).to_be_visible()
    expect(staff.get_by_role("link", name=future.symbol)).to_be_visible()  # Open interest.
    screenshot(staff, "backoffice-dashboard")
    staff.get_by_role("link", name="Run the daily settlement").click()
    # The day whose close is still to come: instruments listed after a day's close (the demo
    # was loaded just now) settle from the next trading day on: today before its close, else
    # tomorrow. The cycle refuses a day until its close has passed: the staff user runs it
    # after that close (the cycle's clock moved there; the live server runs in this process).
    today = timezone.now().date()
    if timezone.now() >= close_at(today):
        today += timedelta(days=1)
    after_close = close_at(today) + timedelta(minutes=10)
    monkeypatch.setattr(settlement_prices, "now", lambda: after_close)
    staff.get_by_label("Trading date").fill(today.isoformat())
    staff.get_by_role("button", name="Preview prices and variation margin").click()
    expect(staff.get_by_text(future.symbol).first).to_be_visible()
    screenshot(staff, "backoffice-settlement-preview")
    staff.get_by_role("button", name=re.compile(r"^Confirm: settle")).click()
    expect(staff.get_by_text(f"{today.isoformat()} settled")).to_be_visible()
    screenshot(staff, "backoffice-settled")
    assert RiskCycle.objects.get(trading_date=today).status == RiskCycle.Status.SETTLED
    assert not console_errors, console_errors
