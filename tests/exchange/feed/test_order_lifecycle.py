"""A market maker keeps its own orders from the private channel: every change the matcher makes
to an order reaches its organization's listeners (accepted, partly filled, filled, replaced,
cancelled with why, expired, rejected), each fill with the price, quantity and fee the trade
stored, and nothing of another organization's.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from exchange.asgi import application
from exchange.matcher import inline
from exchange.models import CancelReason, Order, Trade
from exchange.services.orders import order_cancel, order_replace, orders_cancel
from tests.exchange.feed.test_feed import (
    ORDERS_PATH,
    as_rest,
    bearer,
    connected,
    order_as_pushed,
    token_for,
)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db(transaction=True)

MICROS_PER_USD = 1_000_000  # The ledger keeps USD in micro-USD.


def fill_as_stored(trade: Trade, order: Order) -> dict:
    """The fill of ``order`` in ``trade`` from the trade's stored fee of ``order``'s side."""
    fee_micros = trade.buyer_fee if order.side == "buy" else trade.seller_fee
    return {
        "type": "fill",
        "trade_sequence": trade.sequence,
        "order_id": order.pk,
        "instrument": trade.instrument.symbol,
        "side": order.side,
        "price": f"{trade.price:.6f}",
        "quantity": trade.quantity,
        "fee": f"{Decimal(fee_micros) / MICROS_PER_USD:.6f}",
        "liquidity": "maker" if trade.maker_order_id == order.pk else "taker",
        "executed_at": as_rest(trade.executed_at),
    }


def test_every_change_of_an_order_reaches_its_organization_and_no_other(
    future, buyer, seller, maker
):
    # given: listeners of the buyer's and the seller's organizations, and of a third
    tokens = [token_for(account) for account in (buyer, seller, maker)]
    expires_at = timezone.now() + timedelta(seconds=1.5)
    made: dict[str, Order] = {}

    def rest_bid():
        made["bid"] = place(buyer, future, "buy", 5, "2.40", client_order_id="bid-1")

    def take(quantity):
        return lambda: place(seller, future, "sell", quantity, "2.40")

    def rest_second():
        made["second"] = place(buyer, future, "buy", 4, "2.30")

    def rest_third():
        made["third"] = place(buyer, future, "buy", 1, "2.20")

    def rest_gtd():
        made["gtd"] = place(
            buyer, future, "buy", 1, "2.10", time_in_force="gtd", expires_at=expires_at
        )

    def post_only_crossing():
        place(seller, future, "sell", 1, "2.60")
        made["post_only"] = place(buyer, future, "buy", 1, "2.60", post_only=True)

    def expire():
        time.sleep(max((expires_at - timezone.now()).total_seconds() + 0.05, 0))
        inline.process_pending()

    # (step, messages the buyer's listener gets, statuses of its order messages)
    steps = [
        (rest_bid, 1),
        (take(2), 2),  # fill, order partially filled
        (take(3), 2),  # fill, order filled
        (rest_second, 1),
        (lambda: order_replace(order=made["second"], price=Decimal("2.31"), quantity=3), 1),
        (lambda: order_cancel(order=made["second"]), 1),
        (rest_third, 1),
        (lambda: orders_cancel(orders=[made["third"]], reason=CancelReason.CANCEL_ALL), 1),
        (rest_gtd, 1),
        (expire, 1),
        (post_only_crossing, 1),
    ]

    async def scenario():
        feeds = [
            await connected(WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(t)))
            for t in tokens
        ]
        for feed in feeds:
            await feed.receive_json_from()  # subscribed
        buyer_feed, seller_feed, other_feed = feeds
        pushed = []
        for step, count in steps:
            await database_sync_to_async(step)()
            pushed.append([await buyer_feed.receive_json_from() for _ in range(count)])
        buyer_quiet = await buyer_feed.receive_nothing()
        seller_pushed = []
        while not await seller_feed.receive_nothing():
            seller_pushed.append(await seller_feed.receive_json_from())
        other_quiet = await other_feed.receive_nothing()
        for feed in feeds:
            await feed.disconnect()
        return pushed, buyer_quiet, seller_pushed, other_quiet

    pushed, buyer_quiet, seller_pushed, other_quiet = async_to_sync(scenario)()

    # then: each step's messages, as the database holds the order and the trade
    order_states = [
        (message["id"], message["status"], message["done_reason"], message["reject_code"])
        for step in pushed
        for message in step
        if message["type"] == "order"
    ]
    bid, second, third, gtd, post_only = (
        made[name] for name in ("bid", "second", "third", "gtd", "post_only")
    )
    assert order_states == [
        (bid.pk, "open", "", ""),
        (bid.pk, "partially_filled", "", ""),
        (bid.pk, "filled", "filled", ""),
        (second.pk, "open", "", ""),
        (second.pk, "open", "", ""),  # replaced
        (second.pk, "cancelled", "user", ""),
        (third.pk, "open", "", ""),
        (third.pk, "cancelled", "cancel_all", ""),
        (gtd.pk, "open", "", ""),
        (gtd.pk, "expired", "expired", ""),
        (
            post_only.pk,
            "rejected",
            "MATCHING_POST_ONLY_WOULD_CROSS",
            "MATCHING_POST_ONLY_WOULD_CROSS",
        ),
    ]
    replaced = pushed[4][0]
    assert (replaced["price"], replaced["quantity"]) == ("2.310000", 3)
    assert pushed[0][0]["client_order_id"] == "bid-1"
    # The last message of each order is the order as stored.
    last_of = {
        message["id"]: message for step in pushed for message in step if message["type"] == "order"
    }
    assert list(last_of.values()) == [
        order_as_pushed(order) for order in (bid, second, third, gtd, post_only)
    ]
    # The fills: the trades' stored price, quantity and fee, the bid the maker.
    trades = list(Trade.objects.filter(instrument=future).order_by("sequence"))
    assert [trade.quantity for trade in trades] == [2, 3]
    assert [pushed[1][0], pushed[2][0]] == [fill_as_stored(trade, bid) for trade in trades]
    assert all(trade.buyer_fee > 0 for trade in trades)
    # The seller saw its own side of those fills, and nothing of the buyer's other orders.
    seller_fills = [message for message in seller_pushed if message["type"] == "fill"]
    assert seller_fills == [fill_as_stored(trade, trade.taker_order) for trade in trades]
    seller_order_ids = set(Order.objects.filter(account=seller).values_list("pk", flat=True))
    assert {message.get("order_id", message.get("id")) for message in seller_pushed} <= (
        seller_order_ids
    )
    assert buyer_quiet
    assert other_quiet


def test_a_replace_the_matcher_refuses_is_pushed_as_replace_rejected(future, buyer, seller):
    from exchange.errors import OrderRejected

    # given a listener of the buyer's organization, its post-only bid at 2.40 under an ask at
    # 2.50
    token = token_for(buyer)
    place(seller, future, "sell", 1, "2.50")
    bid = place(buyer, future, "buy", 2, "2.40", post_only=True, client_order_id="pb-1")
    refused = {}

    def replace_across():
        try:
            order_replace(order=bid, price=Decimal("2.50"), quantity=2)
        except OrderRejected as error:
            refused["code"] = str(error.code)

    async def scenario():
        feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        )
        await feed.receive_json_from()  # subscribed
        # when it replaces the bid to 2.50, where it would take the ask
        await database_sync_to_async(replace_across)()
        message = await feed.receive_json_from()
        quiet = await feed.receive_nothing()
        await feed.disconnect()
        return message, quiet

    message, quiet = async_to_sync(scenario)()

    # then the matcher refuses it (the order unchanged) and the listener hears so: no order
    # message would, as the order did not change
    assert refused == {"code": "MATCHING_POST_ONLY_WOULD_CROSS"}
    bid.refresh_from_db()
    assert (bid.price, bid.quantity, bid.status) == (Decimal("2.40"), 2, "open")
    command = bid.commands.get(kind="replace")
    assert message == {
        "type": "replace_rejected",
        "order_id": bid.pk,
        "client_order_id": "pb-1",
        "instrument": future.symbol,
        "price": "2.500000",
        "quantity": 2,
        "reject_code": "MATCHING_POST_ONLY_WOULD_CROSS",
        "rejected_at": as_rest(command.processed_at),
    }
    assert quiet
