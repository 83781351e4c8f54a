"""Lost batches: every event a process sends to a group is numbered, and a connection that
sees a number skipped tells its client with a "gap" message before going on.

The events below are either the matcher's own (orders placed and matched inline) or, where a
test needs a number skipped on purpose, sent to the group through the channel layer as a
matcher sends them.
"""

import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from exchange.asgi import application
from exchange.feed import publish
from exchange.feed.messages import instrument_group, organization_group
from exchange.feed.selectors import book_snapshot
from tests.exchange.feed.test_feed import (
    ORDERS_PATH,
    bearer,
    connected,
    instrument_path,
    order_as_pushed,
    token_for,
)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db(transaction=True)


def event(source: str, sequence: int, *messages: dict) -> dict:
    return {
        "type": publish.EVENT_TYPE,
        "messages": list(messages),
        "source": source,
        "sequence": sequence,
    }


def test_a_senders_events_to_each_group_are_numbered_from_one(future, buyer, seller):
    # given: a channel listening to the buyer's organization and the instrument
    layer = get_channel_layer()

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(organization_group(buyer.organization_id), channel)
        await layer.group_add(instrument_group(future.pk), channel)
        # when: an ask rests (an instrument event), then the buyer rests a bid and takes the
        # ask (each an instrument event and an organization event)
        await database_sync_to_async(place)(seller, future, "sell", 1, "2.50")
        await database_sync_to_async(place)(buyer, future, "buy", 1, "2.40")
        await database_sync_to_async(place)(buyer, future, "buy", 1, "2.50")
        return [await layer.receive(channel) for _ in range(5)]

    events = async_to_sync(scenario)()

    # then: one source, and each group's numbers from 1 without a gap
    assert len({received["source"] for received in events}) == 1
    numbers = {}
    for received in events:
        kind = "organization" if received["messages"][-1]["type"] == "order" else "instrument"
        numbers.setdefault(kind, []).append(received["sequence"])
    assert numbers == {"instrument": [1, 2, 3], "organization": [1, 2]}


def test_numbering_spends_a_number_on_an_event_never_sent():
    first, second = publish.Numbering(), publish.Numbering()

    sent = [first.event("feed.organization.1", []) for _ in range(2)]
    first.skip(["feed.organization.1", "feed.instrument.1"])

    assert [item["sequence"] for item in sent] == [1, 2]
    assert first.event("feed.organization.1", [])["sequence"] == 4
    assert first.event("feed.instrument.1", [])["sequence"] == 2
    # A restarted sender counts from 1 again, under a name of its own.
    assert first.source != second.source
    assert second.event("feed.organization.1", [])["sequence"] == 1


def test_orders_channel_tells_the_client_how_many_batches_it_lost(buyer):
    token = token_for(buyer)
    group = organization_group(buyer.organization_id)
    layer = get_channel_layer()
    orders = [{"type": "order", "id": number} for number in range(1, 6)]

    async def scenario():
        feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        )
        await feed.receive_json_from()
        # when: a matcher's events 1 and 2, then 5 (3 and 4 lost), then another matcher's
        # first event it was heard from, at 7
        await layer.group_send(group, event("matcher-a", 1, orders[0]))
        await layer.group_send(group, event("matcher-a", 2, orders[1]))
        await layer.group_send(group, event("matcher-a", 5, orders[2], orders[3]))
        await layer.group_send(group, event("matcher-b", 7, orders[4]))
        pushed = [await feed.receive_json_from() for _ in range(6)]
        quiet = await feed.receive_nothing()
        await feed.disconnect()
        return pushed, quiet

    pushed, quiet = async_to_sync(scenario)()

    # then: the gap before the messages of the event after it; none for a new sender
    assert pushed[:2] == orders[:2]
    gap = pushed[2]
    assert gap["type"] == "gap"
    assert gap["missed_batches"] == 2
    assert gap["message"].startswith("2 batches of this channel were lost")
    assert "/api/v1/orders/?updated_since=" in gap["message"]
    assert "/api/v1/fills/?since=" in gap["message"]
    assert pushed[3:] == orders[2:]
    assert quiet


def test_orders_channel_reports_a_batch_the_sender_dropped(
    settings, redis_url, future, buyer, monkeypatch
):
    # given: the production layer, and a listener of the buyer's organization
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "exchange.feed.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    token = token_for(buyer)
    sender = publish._sender()
    group = organization_group(buyer.organization_id)

    def place_dropped():
        # The sender's queue is full: the batch is dropped, its number spent.
        monkeypatch.setattr(sender, "QUEUE_BATCHES_MAX", 0)
        before = sender.numbering.last.get(group, 0)
        dropped = place(buyer, future, "buy", 1, "2.20")
        deadline = time.monotonic() + 5
        while sender.numbering.last.get(group, 0) == before:
            assert time.monotonic() < deadline, "the sender never saw the batch"
            time.sleep(0.01)
        monkeypatch.undo()
        return dropped

    async def scenario():
        feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        )
        await feed.receive_json_from()
        first = await database_sync_to_async(place)(buyer, future, "buy", 1, "2.10")
        heard = await feed.receive_json_from(timeout=5)
        # when
        dropped = await database_sync_to_async(place_dropped)()
        third = await database_sync_to_async(place)(buyer, future, "buy", 1, "2.30")
        after = [await feed.receive_json_from(timeout=5) for _ in range(2)]
        quiet = await feed.receive_nothing()
        await feed.disconnect()
        return first, heard, dropped, third, after, quiet

    first, heard, dropped, third, after, quiet = async_to_sync(scenario)()

    # then: the first order, then the gap where the second's batch was lost, then the third
    assert heard == order_as_pushed(first)
    assert after[0]["type"] == "gap"
    assert after[0]["missed_batches"] == 1
    assert after[0]["message"].startswith("1 batch of this channel was lost")
    assert after[1] == order_as_pushed(third)
    assert dropped.pk not in {message.get("id") for message in after}
    assert quiet


def test_instrument_channel_sends_a_fresh_book_after_a_gap_unless_the_event_has_one(
    future, buyer, seller
):
    place(seller, future, "sell", 2, "2.50")
    group = instrument_group(future.pk)
    layer = get_channel_layer()
    trade = {"type": "trade", "symbol": future.symbol, "sequence": 9}
    book = {"type": "book", "symbol": future.symbol, "sequence": 9, "bids": [], "asks": []}

    async def scenario():
        listener = await connected(WebsocketCommunicator(application, instrument_path(future)))
        snapshot = await listener.receive_json_from()
        # when: a trade after a gap, without a book; later a gap before an event with its book
        await layer.group_send(group, event("matcher-a", 1, trade))
        await layer.group_send(group, event("matcher-a", 3, trade))
        first = [await listener.receive_json_from() for _ in range(4)]
        await layer.group_send(group, event("matcher-a", 6, trade, book))
        second = [await listener.receive_json_from() for _ in range(3)]
        quiet = await listener.receive_nothing()
        await listener.disconnect()
        return snapshot, first, second, quiet

    snapshot, first, second, quiet = async_to_sync(scenario)()

    # then: the gap, the event's trade, then the book as it is now
    assert first[0] == trade
    assert first[1]["type"] == "gap"
    assert first[1]["missed_batches"] == 1
    assert f"/api/v1/instruments/{future.symbol}/trades/" in first[1]["message"]
    assert first[2] == trade
    assert first[3] == book_snapshot(future) == snapshot
    # An event carrying its book needs no other.
    assert [message["type"] for message in second] == ["gap", "trade", "book"]
    assert second[0]["missed_batches"] == 2
    assert second[2] == book
    assert quiet
