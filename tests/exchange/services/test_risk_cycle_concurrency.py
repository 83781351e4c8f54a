"""The daily cycle while traders keep trading (PostgreSQL only): the cycle locks the books it
settles and the cash it moves in the ledger's order, so neither side deadlocks or posts on a
stale position, and the matchers reload the margin the cycle set."""

import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from exchange.models import Order, RiskCycle, SettlementPrice
from exchange.selectors.integrity import collateral_problems, order_book_problems
from exchange.services.orders import order_place
from exchange.services.risk_cycle import daily_settlement_run
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from ledger.selectors import ledger_problems
from tests.exchange.matcher.test_concurrency import run_threads

# The days settled here are after today: the exchange's calendar is moved on for them.
pytestmark = pytest.mark.usefixtures("calendar_ahead")

TRADERS = 3
ORDERS_PER_TRADER = 40


@pytest.mark.django_db(transaction=True)
def test_a_daily_cycle_runs_while_orders_trade(
    postgres_only, futures, buyer, seller, maker, fourth
):
    # given positions in both futures, and a day priced by override
    accounts = [buyer, seller, maker, fourth]
    for future in futures:
        order_place(
            account=seller, instrument=future, side="sell", price=Decimal("2.45"), quantity=20
        )
        order_place(
            account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=20
        )
    day = futures[0].last_trading_day - timedelta(days=5)
    for future in futures:
        SettlementPrice.objects.create(
            instrument=future, trading_date=day, price=Decimal("2.50"), source="override"
        )
    started = threading.Event()

    def work(index: int) -> None:
        if index == TRADERS:  # The last thread settles the day once the traders are going.
            started.wait(timeout=30)
            daily_settlement_run(trading_date=day)
            return
        rng = random.Random(index)
        for count in range(ORDERS_PER_TRADER):
            if count == 5:
                started.set()
            order_place(
                account=accounts[index + 1],
                instrument=rng.choice(futures),
                side=rng.choice(("buy", "sell")),
                price=Decimal("0.005") * (500 + rng.randint(-3, 3)),
                quantity=rng.choice((1, 2, 3)),
                time_in_force=rng.choice(("gtc", "ioc")),
            )

    # when the cycle runs among the traders
    errors = run_threads(work, TRADERS + 1)

    # then nothing failed, the day is settled, and books, collateral and ledger agree
    assert errors == []
    assert RiskCycle.objects.get(trading_date=day).status == RiskCycle.Status.SETTLED
    assert Entry.objects.filter(idempotency_key__startswith=f"variation:{day}:").exists()
    assert Order.objects.filter(status=Order.Status.NEW).count() == 0
    assert order_book_problems() == []
    assert collateral_problems() == []
    assert ledger_problems() == []
    # and no margin account went negative (a matcher releasing stale margin would overdraw it)
    margins = LedgerAccount.objects.filter(code__contains=":margin:")
    assert all(account.balance <= 0 for account in margins)
    connection.close()
