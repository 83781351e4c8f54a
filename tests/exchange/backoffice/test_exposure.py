"""Open interest per instrument and exposure per account: positions from the ledger, marked at
their mark (``selectors.marks``: the newer of the latest settlement and the last trade, as the
holders' portfolios show it), with margin, cash and open margin calls."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from exchange.models import MarginCall, RiskCycle, SettlementPrice, Trade
from exchange.selectors.funding import cash_balance
from exchange.selectors.positions import portfolio_totals, positions_of
from exchange.services.ledger_accounts import position_account_code
from ledger.models import Account as LedgerAccount
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(futures, buyer, seller, maker, fourth):
    """Front month: buyer long 3, maker long 2 then short 1 of it back (long 1), seller short
    4; fourth has a resting order only, all traded yesterday. Second month: maker long 2,
    seller short 2, unsettled and last traded at 2.30. The front month settled at 2.60 today."""
    front, second = futures
    place(seller, front, "sell", 3, "2.50")
    place(buyer, front, "buy", 3, "2.50")
    place(seller, front, "sell", 2, "2.52")
    place(maker, front, "buy", 2, "2.52")
    place(maker, front, "sell", 1, "2.55")
    place(seller, front, "buy", 1, "2.55")
    place(seller, second, "sell", 2, "2.30")
    place(maker, second, "buy", 2, "2.30")
    place(fourth, front, "buy", 1, "2.00")
    Trade.objects.update(executed_at=F("executed_at") - timedelta(days=1))
    SettlementPrice.objects.create(
        instrument=front,
        trading_date=timezone.now().date(),
        price=Decimal("2.60"),
        source=SettlementPrice.Source.MID,
    )
    return front, second


def _ledger_positions(instrument, accounts):
    rows = LedgerAccount.objects.filter(
        code__in=[position_account_code(a, instrument.symbol) for a in accounts]
    )
    return [row.balance for row in rows]


def test_open_interest_is_the_sum_of_the_long_positions(client, risk, book, buyer, seller, maker):
    client.force_login(risk)

    response = client.get(reverse("backoffice:exposure"))

    assert response.status_code == 200
    interest = {row.instrument: row for row in response.context["open_interest"]}
    for instrument in book:
        balances = _ledger_positions(instrument, [buyer, seller, maker])
        longs = sum(b for b in balances if b > 0)
        assert interest[instrument].contracts == longs == -sum(b for b in balances if b < 0)
    front, second = book
    assert (interest[front].contracts, interest[front].holders) == (4, 3)
    hours = front.gpu_hours_per_contract
    assert interest[front].notional == Decimal("2.60") * 4 * hours
    assert (interest[second].mark, interest[second].contracts) == (Decimal("2.30"), 2)


def test_a_trade_since_the_close_marks_positions_as_their_portfolios_do(
    client, risk, book, buyer, seller
):
    # given today's close has passed and the front month trades at 2.70 since
    front, _ = book
    RiskCycle.objects.create(
        trading_date=timezone.now().date(), close_at=timezone.now() - timedelta(minutes=1)
    )
    place(seller, front, "sell", 1, "2.70")
    place(buyer, front, "buy", 1, "2.70")
    client.force_login(risk)

    response = client.get(reverse("backoffice:exposure"))

    # then staff see the front month at the trade, the mark the buyer's portfolio shows
    interest = {row.instrument: row for row in response.context["open_interest"]}
    [held] = [p for p in positions_of(buyer) if p.instrument == front]
    assert interest[front].mark == held.mark_price == Decimal("2.70")
    assert interest[front].notional == Decimal("2.70") * 5 * front.gpu_hours_per_contract


def test_exposure_per_account(client, risk, book, buyer, seller, maker, fourth):
    front, second = book
    hours = front.gpu_hours_per_contract
    call = MarginCall.objects.create(
        account=maker, trading_date=timezone.now().date(), required=10, maintenance=8, held=5
    )
    client.force_login(risk)

    response = client.get(reverse("backoffice:exposure"))

    rows = {row.account: row for row in response.context["exposures"]}
    assert set(rows) == {buyer, seller, maker}  # The fourth has no position and no call.
    assert [(p.symbol, p.contracts) for p in rows[seller].positions] == [
        (front.symbol, -4),
        (second.symbol, -2),
    ]
    assert (rows[seller].long_contracts, rows[seller].short_contracts) == (0, 6)
    assert rows[seller].gross_notional == (
        Decimal("2.60") * 4 * hours + Decimal("2.30") * 2 * second.gpu_hours_per_contract
    )
    assert rows[buyer].gross_notional == Decimal("2.60") * 3 * hours
    for account, row in rows.items():
        assert row.cash == cash_balance(account).posted
        assert row.held == cash_balance(account).pending
        assert row.margin == portfolio_totals(positions_of(account))[0]
        assert row.margin > 0
    assert rows[maker].margin_call == call
    assert rows[buyer].margin_call is None
    page = response.content.decode()
    assert reverse("admin:exchange_margincall_change", args=[call.pk]) in page
    assert f"{front.symbol} -4" in page
    # Largest gross notional first.
    notionals = [row.gross_notional for row in response.context["exposures"]]
    assert notionals == sorted(notionals, reverse=True)


def test_an_account_owing_a_deficit_shows_what_it_owes(client, risk, book, maker):
    from exchange.services.ledger_accounts import cash_account, deficit_account
    from ledger.services import entry_post

    # given the maker owes 1,234.56 USD of losses its cash could not pay (the cycle's posting)
    owed = 1_234_560_000
    entry_post(
        key="test:deficit",
        description="Variation margin beyond cash",
        postings=[(deficit_account(maker), owed), (cash_account(maker), -owed)],
    )
    client.force_login(risk)

    response = client.get(reverse("backoffice:exposure"))

    # then staff see it owed, and nothing owed by the others
    rows = {row.account: row for row in response.context["exposures"]}
    assert rows[maker].deficit == Decimal("1234.56")
    assert all(row.deficit == 0 for account, row in rows.items() if account != maker)
    assert '<td class="num ask">1,234.56</td>' in response.content.decode()


def test_what_is_owed_reads_as_the_ledger_holds_it(client, risk, book, maker):
    from exchange.services.ledger_accounts import cash_account, deficit_account
    from ledger.services import entry_post

    # given the maker owes a sum in micro-dollars, as variation margin leaves it
    owed = 1_234_567_891
    entry_post(
        key="test:deficit",
        description="Variation margin beyond cash",
        postings=[(deficit_account(maker), owed), (cash_account(maker), -owed)],
    )
    client.force_login(risk)

    response = client.get(reverse("backoffice:exposure"))

    # then staff read the amount that clears the debt, not one rounded to cents
    page = response.content.decode()
    assert '<td class="num ask">1,234.567891</td>' in page
    assert "1,234.57" not in page


def test_no_positions_no_rows(client, risk, futures):
    client.force_login(risk)

    response = client.get(reverse("backoffice:exposure"))

    assert response.context["open_interest"] == [] and response.context["exposures"] == []
    assert "No open positions." in response.content.decode()
