"""A market maker's local book from the public channel: the snapshot, then each "book" message
replacing it, must be the book ``GET /api/v1/instruments/<symbol>/book/`` answers after every
kind of change (a partial fill, a cancel, a replace of price or size, a GTD expiry), with the
sequence only going up.
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from rest_framework.test import APIClient

from exchange.asgi import application
from exchange.matcher import inline
from exchange.models import Order
from exchange.services.orders import order_cancel, order_replace
from tests.exchange.feed.test_feed import connected, instrument_path
from tests.exchange.support import place

pytestmark = pytest.mark.django_db(transaction=True)


def rest_book(symbol: str) -> dict:
    answer = APIClient().get(f"/api/v1/instruments/{symbol}/book/")
    assert answer.status_code == 200
    return {"bids": answer.json()["bids"], "asks": answer.json()["asks"]}


def levels(message: dict) -> dict:
    """The book a client keeps from a "book" message: price -> (contracts, orders) per side."""
    return {
        side: [(level["price"], level["quantity"], level["orders"]) for level in message[side]]
        for side in ("bids", "asks")
    }


def rest_levels(book: dict) -> dict:
    return {
        side: [
            (f"{Decimal(level['price']):.6f}", level["quantity"], level["orders"])
            for level in book[side]
        ]
        for side in ("bids", "asks")
    }


def test_snapshot_and_updates_are_the_rest_book_after_every_kind_of_change(
    future, buyer, seller, maker, fourth
):
    # given: two asks at 2.50 (5 then 3), one at 2.60, a bid at 2.40 and a GTD bid at 2.35
    first_ask = place(seller, future, "sell", 5, "2.50")
    second_ask = place(maker, future, "sell", 3, "2.50")
    high_ask = place(maker, future, "sell", 4, "2.60")
    place(fourth, future, "buy", 6, "2.40")
    # Long enough for the four steps below on a loaded machine: a step reaching the matcher
    # after the expiry would expire the bid itself, leaving the sweep nothing to send.
    expiry_seconds = 4
    expiring = place(
        fourth,
        future,
        "buy",
        2,
        "2.35",
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(seconds=expiry_seconds),
    )
    steps = [
        # A partial fill of the first ask: 2 of its 5.
        ("partial fill", lambda: place(buyer, future, "buy", 2, "2.50")),
        ("cancel", lambda: order_cancel(order=high_ask)),
        # The first ask (3 open) down to 1, its price kept.
        ("size down", lambda: order_replace(order=first_ask, price=Decimal("2.50"), quantity=1)),
        (
            "price change",
            lambda: order_replace(order=second_ask, price=Decimal("2.55"), quantity=3),
        ),
    ]
    # What each step leaves, from the rules: a fill takes from the first order at the level, a
    # cancel removes the order, a replace sets the order's open quantity (and price).
    expected = [
        {
            "bids": [("2.400000", 6, 1), ("2.350000", 2, 1)],
            "asks": [("2.500000", 6, 2), ("2.600000", 4, 1)],
        },
        {"bids": [("2.400000", 6, 1), ("2.350000", 2, 1)], "asks": [("2.500000", 6, 2)]},
        {"bids": [("2.400000", 6, 1), ("2.350000", 2, 1)], "asks": [("2.500000", 4, 2)]},
        {
            "bids": [("2.400000", 6, 1), ("2.350000", 2, 1)],
            "asks": [("2.500000", 1, 1), ("2.550000", 3, 1)],
        },
        {"bids": [("2.400000", 6, 1)], "asks": [("2.500000", 1, 1), ("2.550000", 3, 1)]},
    ]

    async def scenario():
        listener = await connected(WebsocketCommunicator(application, instrument_path(future)))
        snapshot = await listener.receive_json_from()
        rest_at_snapshot = await database_sync_to_async(rest_book)(future.symbol)
        books, rest_books = [], []
        for _name, step in steps:
            await database_sync_to_async(step)()
            message = await listener.receive_json_from()
            while message["type"] != "book":
                message = await listener.receive_json_from()
            books.append(message)
            rest_books.append(await database_sync_to_async(rest_book)(future.symbol))
        # when the GTD bid's time has come, the scheduled sweep expires it
        deadline = expiring.expires_at + timedelta(seconds=0.05)
        time.sleep(max((deadline - timezone.now()).total_seconds(), 0))
        await database_sync_to_async(inline.process_pending)()
        books.append(await listener.receive_json_from())
        rest_books.append(await database_sync_to_async(rest_book)(future.symbol))
        quiet = await listener.receive_nothing()
        await listener.disconnect()
        return snapshot, rest_at_snapshot, books, rest_books, quiet

    snapshot, rest_at_snapshot, books, rest_books, quiet = async_to_sync(scenario)()

    # then: the snapshot is the REST book, and so is every update
    assert levels(snapshot) == rest_levels(rest_at_snapshot)
    assert levels(snapshot) == {
        "bids": [("2.400000", 6, 1), ("2.350000", 2, 1)],
        "asks": [("2.500000", 8, 2), ("2.600000", 4, 1)],
    }
    assert [levels(book) for book in books] == expected
    assert [levels(book) for book in books] == [rest_levels(book) for book in rest_books]
    # The sequences go up from the snapshot's, one update per change.
    sequences = [snapshot["sequence"], *(book["sequence"] for book in books)]
    assert sequences == sorted(set(sequences))
    future.refresh_from_db()
    assert books[-1]["sequence"] == future.sequence
    assert Order.objects.get(pk=expiring.pk).status == Order.Status.EXPIRED
    assert quiet
