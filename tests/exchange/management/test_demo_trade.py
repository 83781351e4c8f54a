"""One trade on the demo market changes exactly the balances it should."""

from decimal import Decimal
from io import StringIO

from django.core.management import call_command

from exchange.models import Account, Instrument, Order
from exchange.selectors.market import quotes_for
from exchange.services.orders import order_place
from ledger.models import Account as LedgerAccount
from ledger.selectors import ledger_problems

MICROS = 10**6


def balances() -> dict[str, int]:
    return {row.code: row.balance for row in LedgerAccount.objects.all()}


def test_one_demo_trade_moves_exactly_the_expected_balances(db):
    # given the demo market: quanta (a startup) lifts the best ask of a quoted future
    call_command("seed_demo", stdout=StringIO())
    future = (
        Instrument.objects.filter(kind=Instrument.Kind.FUTURE, orders__status="open")
        .order_by("delivery_start", "symbol")
        .first()
    )
    ask = quotes_for([future])[future.pk].best_ask
    maker = Order.objects.filter(
        instrument=future, side="sell", status__in=["open", "partially_filled"], price=ask.price
    ).order_by("priority_sequence")[0]
    quanta = Account.objects.get(organization__slug="quanta")
    before = balances()

    # when it buys one contract at that price
    order = order_place(account=quanta, instrument=future, side="buy", quantity=1, price=ask.price)

    # then: a contract long and short, the traded value in the cost memos, 15% margin moved out
    # of both cashes, fees of 0.50 (taker) and 0.20 (maker) to the exchange; nothing else
    hours = future.gpu_hours_per_contract
    value = int(ask.price * hours * MICROS)
    margin_buy = int(
        (Decimal("0.15") * ask.price * hours * MICROS).to_integral_value("ROUND_CEILING")
    )
    margin_sell = maker.margin_per_contract
    b, s, symbol = quanta.pk, maker.account_id, future.symbol
    after = balances()
    moved = {
        code: after[code] - before.get(code, 0)
        for code in after
        if after[code] != before.get(code, 0)
    }
    assert order.status == Order.Status.FILLED
    assert moved == {
        f"trading:{b}:position:{symbol}": 1,
        f"trading:{s}:position:{symbol}": -1,
        f"trading:{b}:cost:{symbol}:USD": value,
        f"trading:{s}:cost:{symbol}:USD": -value,
        f"trading:{b}:margin:{symbol}:USD": -margin_buy,
        f"trading:{s}:margin:{symbol}:USD": -margin_sell,
        f"trading:{b}:cash:USD": margin_buy + 500_000,
        f"trading:{s}:cash:USD": margin_sell + 200_000,
        "exchange:fees:USD": -700_000,
    }
    assert ledger_problems() == []
