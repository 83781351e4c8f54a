"""The back office in a real browser on the demo market: every page renders for the admin at
desktop and phone width without a script error or anything wider than the screen (screenshots
under var/screenshots/), and an operations user halts and resumes an instrument through the
confirmation page, finding the form's fields by their labels."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from exchange.demo import ADMIN_PASSWORD, STAFF_PASSWORD
from exchange.models import AuditEntry, Instrument
from tests.exchange.web.browser.conftest import DESKTOP, PHONE, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    ("dashboard", "/backoffice/", "Operations dashboard"),
    ("trading-status", "/backoffice/instruments/", "Trading status"),
    ("exposure", "/backoffice/exposure/", "Open interest and exposure"),
    ("trial-balance", "/backoffice/trial-balance/", "Trial balance"),
    ("audit-log", "/backoffice/audit/", "Audit log"),
]


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
