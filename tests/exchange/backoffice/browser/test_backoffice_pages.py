"""The back office in a real browser on the demo market: every page renders for the admin at
desktop and phone width without a script error or anything wider than the screen (screenshots
under var/screenshots/), as do the Django admin's pages staff work in (the index, the main
changelists and the daily cycle's run page with its preview), and an operations user halts and
resumes an instrument through the confirmation page, finding the form's fields by their
labels."""

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from exchange.calendar import close_at
from exchange.demo import ADMIN_PASSWORD, STAFF_PASSWORD
from exchange.models import AuditEntry, Instrument, MarginCall, Organization
from exchange.services import settlement_prices
from exchange.services.funding import withdrawal_request
from exchange.services.participants import account_main
from tests.exchange.web.browser.conftest import DESKTOP, PHONE, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    ("dashboard", "/backoffice/", "Operations dashboard"),
    ("trading-status", "/backoffice/instruments/", "Trading status"),
    ("exposure", "/backoffice/exposure/", "Open interest and exposure"),
    ("trial-balance", "/backoffice/trial-balance/", "Trial balance"),
    ("audit-log", "/backoffice/audit/", "Audit log"),
]

# The admin's pages staff work in: (screenshot name, URL name, <h1>).
ADMIN_PAGES = [
    ("index", "admin:index", "Site administration"),
    # Its superuser sets futures' position limits there: "to change".
    ("instruments", "admin:exchange_instrument_changelist", "Select instrument to change"),
    ("orders", "admin:exchange_order_changelist", "Select order to view"),
    ("withdrawals", "admin:exchange_withdrawal_changelist", "Select withdrawal to view"),
    ("margin-calls", "admin:exchange_margincall_changelist", "Select margin call to view"),
    ("cycle-run", "admin:exchange_riskcycle_run", "Run the daily cycle"),
]
# How much wider than the window the document is, in CSS pixels; the admin's result tables
# scroll inside their own container (div.results), which does not widen the document.
OVERFLOW_JS = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture
def demo_market():
    call_command("seed_demo", verbosity=0)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_back_office_page_renders_and_fits(demo_market, new_page, screenshot, viewport):
    page = new_page(viewport)
    width = "desktop" if viewport is DESKTOP else "phone"
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    sign_in(page, "admin", ADMIN_PASSWORD)

    problems = []
    for name, url, heading in PAGES:
        response = page.goto(url)
        assert response is not None
        if response.status != 200:
            problems.append(f"{url}: HTTP {response.status}")
            continue
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 1:
            problems.append(f"{url}: {overflow}px wider than the screen")
        screenshot(page, f"backoffice-{name}-{width}")

    instrument = Instrument.objects.filter(status="active").order_by("symbol").first()
    page.goto(f"/backoffice/instruments/{instrument.pk}/halt/")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"halt confirmation: {overflow}px wider than the screen")
    screenshot(page, f"backoffice-halt-confirm-{width}")

    assert not problems, problems
    assert not script_errors, script_errors


def business_days_after(day: date, count: int) -> date:
    while count:
        day += timedelta(days=1)
        count -= day.weekday() < 5
    return day


@pytest.fixture
def staff_work(demo_market):
    """A withdrawal to review and an open margin call, so their changelists have rows."""
    lumen = account_main(Organization.objects.get(slug="lumen"))
    quanta = account_main(Organization.objects.get(slug="quanta"))
    withdrawal_request(account=lumen, amount=Decimal("25000"), actor=None)
    MarginCall.objects.create(
        account=quanta,
        trading_date=timezone.now().date(),
        required=60_000_000_000,
        maintenance=45_000_000_000,
        held=40_000_000_000,
    )


@pytest.fixture
def first_day_to_settle(monkeypatch):
    """The demo's instruments were listed just now, so they settle from the first business day
    whose close is still to come: the risk cycle's clock is moved past that close (the live
    server runs in this process), where the run page offers that day."""
    now = timezone.now()
    day = now.date()
    if day.weekday() >= 5 or now >= close_at(day):
        day = business_days_after(day, 1)
    after_close = close_at(day) + timedelta(minutes=10)
    monkeypatch.setattr(settlement_prices, "now", lambda: after_close)
    return day


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_admin_pages_render_and_fit(
    staff_work, first_day_to_settle, new_page, screenshot, viewport
):
    page = new_page(viewport)
    width = "desktop" if viewport is DESKTOP else "phone"
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(f"{page.url}: {error}"))
    page.on(
        "console",
        lambda message: (
            script_errors.append(f"{page.url}: {message.text}") if message.type == "error" else None
        ),
    )
    sign_in(page, "admin", ADMIN_PASSWORD)

    problems = []
    for name, url_name, heading in ADMIN_PAGES:
        url = reverse(url_name)
        response = page.goto(url)
        assert response is not None
        if response.status != 200:
            problems.append(f"{url}: HTTP {response.status}")
            continue
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        if url_name.endswith("_changelist") and not page.locator("#result_list tbody tr").count():
            problems.append(f"{url}: no rows, so its table's width went unchecked")
        overflow = page.evaluate(OVERFLOW_JS)
        if overflow > 1:
            problems.append(f"{url}: {overflow}px wider than the screen")
        screenshot(page, f"admin-{name}-{width}")

    # The run page's preview: today's settlement prices and variation margin, not yet settled.
    page.get_by_role("button", name="Preview prices and variation margin").click()
    expect(page.get_by_role("heading", name="Settlement prices", level=3)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^Confirm: settle"))).to_be_visible()
    overflow = page.evaluate(OVERFLOW_JS)
    if overflow > 1:
        problems.append(f"cycle preview: {overflow}px wider than the screen")
    screenshot(page, f"admin-cycle-preview-{width}")

    assert not problems, problems
    assert not script_errors, script_errors


def test_operations_halt_and_resume_through_the_confirmation(demo_market, new_page, screenshot):
    instrument = Instrument.objects.filter(kind="future", status="active").order_by("symbol")[0]
    page = new_page()
    sign_in(page, "olivia", STAFF_PASSWORD)

    page.goto("/backoffice/")
    page.get_by_role("link", name="Trading status").first.click()
    page.get_by_label("Symbol contains").fill(instrument.symbol)
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Halt…").click()

    # The confirmation page: nothing happens until a reason is given and confirmed.
    confirm = page.get_by_role("button", name=re.compile(r"^Confirm: halt trading"))
    confirm.click()
    assert Instrument.objects.get(pk=instrument.pk).status == "active"
    page.get_by_label("Reason").fill("Browser test: feed incident")
    screenshot(page, "backoffice-halt-reason")
    page.get_by_role("button", name=re.compile(r"^Confirm: halt trading")).click()

    expect(page.get_by_text(f"Trading in {instrument.symbol} halted.")).to_be_visible()
    assert Instrument.objects.get(pk=instrument.pk).status == "halted"
    page.get_by_role("link", name="Resume…").click()
    page.get_by_label("Reason").fill("Feed restored")
    page.get_by_role("button", name=re.compile(r"^Confirm: resume trading")).click()
    expect(page.get_by_text(f"Trading in {instrument.symbol} resumed.")).to_be_visible()
    assert Instrument.objects.get(pk=instrument.pk).status == "active"

    page.goto(f"/backoffice/audit/?target_type=Instrument&target_id={instrument.pk}")
    expect(page.get_by_text("Browser test: feed incident")).to_be_visible()
    screenshot(page, "backoffice-audit-filtered")
    actors = set(
        AuditEntry.objects.filter(
            action__in=["instrument.halted", "instrument.active"]
        ).values_list("actor_label", flat=True)
    )
    assert actors == {"olivia"}
    assert page.goto("/backoffice/trial-balance/").status == 403
