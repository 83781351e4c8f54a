"""An order reads the same through the REST API, the push feed's ``order`` message and the
typed client's ``Order``: every field the API gives, in all three."""

from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.feed.messages import order_message
from exchange.models import MarginCall, Order
from tests.exchange.api.test_client_pools import client_of
from tests.exchange.conftest import _account
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _long_under_a_margin_call(future, seller):
    """A long of 10 whose account is under a call: its sells are accepted as reducing."""
    long = _account("quill", "startup")
    place(seller, future, "sell", 10, "2.50")
    place(long, future, "buy", 10, "2.50")
    MarginCall.objects.create(
        account=long,
        trading_date=timezone.localdate(),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=0,
    )
    return long


def test_a_reducing_order_says_so_in_the_api_the_feed_and_the_client(future, seller, buyer):
    # given a long under a margin call, and an ordinary bidder
    long = _long_under_a_margin_call(future, seller)
    long_client, buyer_client = client_of(long.organization), client_of(buyer.organization)

    # when the long offers its contracts (reducing) and the bidder bids (not)
    reducing = long_client.place_order(
        instrument=future.symbol, side="sell", quantity=4, price=Decimal("2.70")
    ).order
    ordinary = buyer_client.place_order(
        instrument=future.symbol, side="buy", quantity=1, price=Decimal("2.40")
    ).order

    # then each reads as what it is, wherever it is read
    assert Order.objects.get(pk=reducing.id).reduce_only
    assert (reducing.reduce_only, ordinary.reduce_only) == (True, False)
    assert long_client.order(reducing.id).reduce_only
    assert [order.reduce_only for order in long_client.orders(status="live")] == [True]
    rest = long_client.request("GET", f"orders/{reducing.id}/")[1]
    assert rest["reduce_only"] is True
    pushed = order_message(future.symbol, Order.objects.get(pk=reducing.id))
    assert pushed["reduce_only"] is True
    assert order_message(future.symbol, Order.objects.get(pk=ordinary.id))["reduce_only"] is False
