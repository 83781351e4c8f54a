from decimal import Decimal

import pytest

from exchange.models import Order
from exchange.selectors.integrity import order_book_problems
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

    assert order_book_problems() == [f"order {ask.pk}: status cancelled with open quantity 5"]


def test_crossed_book_is_reported(traded, future):
    _bid, ask = traded
    Order.objects.filter(pk=ask.pk).update(price=Decimal("2.40"))

    (problem,) = order_book_problems()
    assert problem.startswith(f"instrument {future.pk}: crossed book, bid 2.45")
