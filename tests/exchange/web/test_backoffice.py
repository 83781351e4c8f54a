"""The operations dashboard and the trial balance: staff only; figures read from the market
and the ledger."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from exchange.models import SettlementPrice
from exchange.services.orders import order_place
from exchange.services.participants import member_add

pytestmark = pytest.mark.django_db

PAGES = ["backoffice:dashboard", "backoffice:trial_balance", "backoffice:trial_balance_csv"]


@pytest.fixture
def staff():
    return get_user_model().objects.create_user(
        username="ops", password="ops-pass-2026", is_staff=True
    )


@pytest.fixture
def traded(future, buyer, seller):
    """Buyer long 3, seller short 3 at 2.50; settled at 2.60 yesterday."""
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=timezone.now().date(),
        price=Decimal("2.60"),
        source=SettlementPrice.Source.MID,
    )
    return future


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_and_members_are_sent_to_the_staff_sign_in(client, buyer, name):
    trader = member_add(
        organization=buyer.organization, username="alice", email="a@l.example", password="x-2026"
    ).user

    anonymous = client.get(reverse(name))
    client.force_login(trader)
    member = client.get(reverse(name))

    for response in (anonymous, member):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_dashboard_shows_the_market_open_interest_and_exposure(client, staff, traded, buyer):
    client.force_login(staff)

    response = client.get(reverse("backoffice:dashboard"))

    assert response.status_code == 200
    today = response.context["today"]
    assert (today.trades_today, today.contracts_today) == (1, 3)
    (interest,) = response.context["open_interest"]
    assert (interest.instrument, interest.contracts, interest.holders) == (traded, 3, 2)
    hours = traded.gpu_hours_per_contract
    assert interest.notional == Decimal("2.60") * 3 * hours
    by_account = {row.account: row for row in response.context["exposures"]}
    assert (by_account[buyer].long_contracts, by_account[buyer].short_contracts) == (3, 0)
    assert by_account[buyer].gross_notional == Decimal("2.60") * 3 * hours
    page = response.content.decode()
    assert reverse("admin:exchange_riskcycle_run") in page
    assert reverse("admin:exchange_withdrawal_changelist") in page


def test_trial_balance_nets_to_zero_and_its_csv_matches(client, staff, traded):
    client.force_login(staff)

    page = client.get(reverse("backoffice:trial_balance"))
    download = client.get(reverse("backoffice:trial_balance_csv"))

    assert page.context["balanced"] is True
    groups = {group["commodity"].code: group for group in page.context["groups"]}
    assert groups["USD"]["balance"] == 0
    assert groups["USD"]["debits"] > 0
    assert download["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    usd = [row for row in rows if row["commodity"] == "USD"]
    assert sum(Decimal(row["balance"]) for row in usd) == 0
    assert {row["account"] for row in usd} == {line["code"] for line in groups["USD"]["lines"]}
