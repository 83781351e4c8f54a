from decimal import Decimal

import pytest

from exchange.models import Order, OrderHold, Trade
from exchange.selectors.integrity import collateral_problems, order_book_problems
from exchange.services.orders import order_place

pytestmark = pytest.mark.django_db


@pytest.fixture
def traded(future, buyer, seller):
    bid = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
    )
    ask = order_place(
        account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=5
    )
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.45"), quantity=2)
    return Order.objects.get(pk=bid.pk), Order.objects.get(pk=ask.pk)


def test_consistent_market_has_no_problems(traded):
    assert order_book_problems() == []


def test_fills_not_matching_trades_are_reported(traded):
    bid, _ask = traded
    Order.objects.filter(pk=bid.pk).update(filled_quantity=3)

    problems = order_book_problems()

    assert problems == [f"order {bid.pk}: filled 3 but trades sum to 2"]


def test_finished_order_with_open_quantity_is_reported(traded):
    _bid, ask = traded
    Order.objects.filter(pk=ask.pk).update(status=Order.Status.CANCELLED)

    hold = OrderHold.objects.get(order=ask).hold_id
    assert order_book_problems() == [
        f"order {ask.pk}: status cancelled with open quantity 5",
        f"order {ask.pk}: cancelled but hold {hold} pending",
    ]


def test_a_trade_without_its_ledger_entry_is_reported(traded, future):
    trade = Trade.objects.get()
    key = f"trade:{future.pk}:{trade.sequence}"
    Trade.objects.create(
        instrument=future,
        sequence=trade.sequence + 100,
        price=trade.price,
        quantity=1,
        maker_order=trade.maker_order,
        taker_order=trade.taker_order,
        taker_side=trade.taker_side,
        buyer_account=trade.buyer_account,
        seller_account=trade.seller_account,
        executed_at=trade.executed_at,
        buyer_fee=0,
        seller_fee=0,
    )

    problems = collateral_problems()

    assert key not in " ".join(problems)
    assert problems == [f"trade:{future.pk}:{trade.sequence + 100}: trade without its ledger entry"]


def test_a_trade_whose_stored_fees_are_not_its_entrys_is_reported(traded, future):
    trade = Trade.objects.get()
    assert (trade.buyer_fee, trade.seller_fee) == (2 * 200_000, 2 * 500_000)
    assert collateral_problems() == []
    Trade.objects.filter(pk=trade.pk).update(buyer_fee=2 * 160_000)

    assert collateral_problems() == [
        f"trade:{future.pk}:{trade.sequence}: the trade's fees are 1320000 micro-USD, its entry"
        " took 1400000"
    ]


def test_crossed_book_is_reported(traded, future):
    _bid, ask = traded
    Order.objects.filter(pk=ask.pk).update(price=Decimal("2.40"))

    (problem,) = order_book_problems()
    assert problem.startswith(f"instrument {future.pk}: crossed book, bid 2.45")
