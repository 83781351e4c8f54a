"""An order reads the same through the REST API, the push feed's ``order`` message and the
typed client's ``Order``: every field the API gives, in all three; and the client's other
records (an instrument, a book) carry every field of the API's answer too."""

from dataclasses import fields
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.feed.messages import order_message
from exchange.models import MarginCall, Order
from exchange_client import ApiError
from exchange_client import Book as ClientBook
from exchange_client import Instrument as ClientInstrument
from exchange_client import Order as ClientOrder
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


def test_the_client_order_and_the_feed_message_carry_every_field_of_the_api_order(
    future, buyer, seller
):
    # given a GTD bid and a market buy that takes an ask, each placed through the client
    client = client_of(buyer.organization)
    expires_at = timezone.now() + timedelta(days=2)
    gtd = client.place_order(
        instrument=future.symbol,
        side="buy",
        quantity=2,
        price=Decimal("2.40"),
        time_in_force="gtd",
        expires_at=expires_at,
        post_only=True,
        self_trade_prevention="cancel_oldest",
        client_order_id="gtd-1",
    ).order
    place(seller, future, "sell", 1, "2.50")
    market = client.place_order(instrument=future.symbol, side="buy", quantity=1, type="market")
    market_order = market.order

    for order in (gtd, market_order):
        # when the order is read over REST, and as the feed pushes it
        rest = client.request("GET", f"orders/{order.id}/")[1]
        pushed = order_message(future.symbol, Order.objects.get(pk=order.id))

        # then the client's Order has a field for each of the API's, and the feed's message
        # carries each of them too, read back to the same Order
        assert {field.name for field in fields(ClientOrder)} == set(rest)
        assert set(pushed) - {"type", "order_type"} == set(rest) - {"type"}
        assert ClientOrder.of_message(pushed) == ClientOrder.of(rest) == client.order(order.id)
    assert (gtd.post_only, gtd.self_trade_prevention) == (True, "cancel_oldest")
    assert gtd.expires_at == expires_at
    assert gtd.created_at is not None and gtd.updated_at is not None
    assert (market_order.type, market_order.protection_price) == ("market", Decimal("2.75"))


def test_the_clients_instrument_and_book_carry_every_field_the_api_gives(future, buyer):
    # given an instrument with a bid
    client = client_of(buyer.organization)
    place(buyer, future, "buy", 1, "2.40")

    # when the client reads it and its book
    rest = client.request("GET", f"instruments/{future.symbol}/")[1]
    rest_book = client.request("GET", f"instruments/{future.symbol}/book/")[1]
    (instrument,) = [row for row in client.instruments() if row.symbol == future.symbol]
    book = client.book(future.symbol)

    # then nothing the API says of them is lost on the way
    assert {field.name for field in fields(ClientInstrument)} == set(rest)
    assert (instrument.price_max, instrument.quantity_max) == (
        future.price_max,
        future.quantity_max,
    )
    assert (instrument.delivery_end, instrument.settlement) == (
        future.delivery_end.isoformat(),
        future.settlement,
    )
    assert {field.name for field in fields(ClientBook)} == set(rest_book)
    assert book.as_of is not None and book.best_bid == Decimal("2.40")


def test_the_clients_dry_run_reports_what_placing_the_order_then_holds(future, buyer, seller):
    # given an ask to take, and a bid that would rest
    client = client_of(buyer.organization)
    place(seller, future, "sell", 5, "2.60")
    bid = {"instrument": future.symbol, "side": "buy", "quantity": 3, "price": Decimal("2.40")}

    # when a program checks the bid and a market buy through the client, then places the bid
    checked = client.dry_run(**bid)
    market = client.dry_run(instrument=future.symbol, side="buy", quantity=2, type="market")
    with pytest.raises(ApiError) as refused:
        client.dry_run(**{**bid, "price": Decimal("2.4001")})
    pending_before = client.balances()[0].pending
    client.place_order(**bid)
    pending_after = client.balances()[0].pending

    # then the check placed nothing, and said what the placement then held
    assert checked.collateral == {"USD": pending_after - pending_before}
    assert checked.instrument == future.symbol and checked.protection_price is None
    assert market.protection_price is not None and market.collateral["USD"] > 0
    assert (refused.value.status, refused.value.code) == (422, "ORDER_PRICE_OFF_TICK")
    assert Order.objects.filter(account__organization=buyer.organization).count() == 1


def test_the_clients_fills_of_one_order(future, buyer, seller):
    # given two bids of the buyer, each filled by an ask
    client = client_of(buyer.organization)
    first, second = (place(buyer, future, "buy", 1, price) for price in ("2.40", "2.45"))
    place(seller, future, "sell", 2, "2.40")

    # when the client reads the fills of each order
    of_first = list(client.fills(order_id=first.pk))
    of_second = list(client.fills(order_id=second.pk))

    # then each has its own, as GET /api/v1/fills/?order= answers
    assert [(fill.order_id, fill.price) for fill in of_first] == [(first.pk, Decimal("2.40"))]
    assert [(fill.order_id, fill.price) for fill in of_second] == [(second.pk, Decimal("2.45"))]
    assert len(list(client.fills())) == 2
