"""The trial balance: every ledger account's debits, credits and balance per commodity, each
commodity netting to zero, and the same figures as CSV."""

import csv
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from django.db.models import F
from django.urls import reverse

from exchange.services.funding import deposit_test_funds, withdrawal_request
from ledger.models import Account as LedgerAccount
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def activity(futures, buyer, seller, maker):
    """Deposits (the fixtures' and one more), trades with fees, a resting order and a
    withdrawal request holding cash."""
    deposit_test_funds(account=maker, amount=Decimal("1234.56"), actor=None)
    front = futures[0]
    place(seller, front, "sell", 3, "2.50")
    place(buyer, front, "buy", 3, "2.50")
    place(maker, front, "buy", 2, "2.45")
    withdrawal_request(account=seller, amount=Decimal("500"), actor=None)
    return front


def test_every_commodity_nets_to_zero(client, finance, activity):
    client.force_login(finance)

    response = client.get(reverse("backoffice:trial_balance"))

    assert response.status_code == 200
    assert response.context["balanced"] is True
    groups = {group["commodity"].code: group for group in response.context["groups"]}
    assert {"USD", activity.symbol} <= set(groups)
    for group in groups.values():
        assert group["balance"] == 0
        assert group["debits"] == group["credits"] == sum(line["debits"] for line in group["lines"])
        assert sum(line["balance"] for line in group["lines"]) == 0
    assert groups["USD"]["debits"] > Decimal("1234.56")
    codes = {line["code"] for group in groups.values() for line in group["lines"]}
    assert codes == set(LedgerAccount.objects.values_list("code", flat=True))
    assert "Every commodity's accounts sum to zero." in response.content.decode()


def test_cash_held_for_orders_and_withdrawals_shows_as_pending(client, finance, activity, seller):
    client.force_login(finance)

    response = client.get(reverse("backoffice:trial_balance"))

    usd = next(g for g in response.context["groups"] if g["commodity"].code == "USD")
    cash = next(line for line in usd["lines"] if line["code"] == f"trading:{seller.pk}:cash:USD")
    assert cash["pending"] >= Decimal("500")


def test_the_csv_parses_and_matches_the_page(client, finance, activity):
    client.force_login(finance)

    page = client.get(reverse("backoffice:trial_balance"))
    download = client.get(reverse("backoffice:trial_balance_csv"))

    assert download["Content-Type"] == "text/csv"
    assert download["Content-Disposition"].startswith('attachment; filename="trial-balance-')
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert set(rows[0]) == {
        "commodity",
        "account",
        "type",
        "debits",
        "credits",
        "balance",
        "pending",
    }
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        balance = Decimal(row["balance"])
        assert Decimal(row["debits"]) - Decimal(row["credits"]) == balance
        totals[row["commodity"]] += balance
    assert totals and all(total == 0 for total in totals.values())
    on_page = {
        (group["commodity"].code, line["code"], line["balance"])
        for group in page.context["groups"]
        for line in group["lines"]
    }
    assert {(r["commodity"], r["account"], Decimal(r["balance"])) for r in rows} == on_page


def test_an_unbalanced_ledger_is_flagged(client, finance, activity):
    # A cached total corrupted behind the ledger's back (what ledger_check finds).
    LedgerAccount.objects.filter(code="exchange:test-funds:USD").update(
        debits_posted=F("debits_posted") + 1
    )
    client.force_login(finance)

    response = client.get(reverse("backoffice:trial_balance"))

    assert response.context["balanced"] is False
    assert "ledger_check" in response.content.decode()


def test_the_page_writes_amounts_with_separators_and_cents_when_exact(client, finance, activity):
    client.force_login(finance)

    response = client.get(reverse("backoffice:trial_balance"))

    usd = next(g for g in response.context["groups"] if g["commodity"].code == "USD")
    maker_cash = next(line for line in usd["lines"] if line["code"].endswith(":cash:USD"))
    assert maker_cash["shown"]["debits"] == f"{maker_cash['debits'].quantize(Decimal('0.01')):,}"
    page = response.content.decode()
    assert f">{usd['shown']['debits']}<" in page
    assert ".000000<" not in page  # No amount in six decimals where cents say it all.
    future = next(g for g in response.context["groups"] if g["commodity"].code == activity.symbol)
    assert all("." not in line["shown"]["balance"] for line in future["lines"])  # Contracts.


@pytest.mark.parametrize(
    ("amount", "scale", "shown"),
    [
        (1_234_560_000, 6, "1,234.56"),
        (-1_234_560_000, 6, "-1,234.56"),
        (1_924_432_168_000, 6, "1,924,432.168000"),  # Not whole cents: nothing rounded.
        (5, 6, "0.000005"),
        (0, 6, "0.00"),
        (12_000, 0, "12,000"),
        (-3, 0, "-3"),
        (1_250, 2, "12.50"),
    ],
)
def test_an_amount_is_written_in_cents_when_exact_else_in_full(amount, scale, shown):
    from exchange.backoffice.views import _amount_text

    assert _amount_text(amount, scale) == shown
