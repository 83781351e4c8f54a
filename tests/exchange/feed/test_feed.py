"""The push feed end to end: a WebSocket client on the ASGI application, orders placed through
``order_place`` and matched by the inline matcher, messages through the channel layer.

Each test drives one coroutine with ``async_to_sync``: the consumers and the communicator live
in its event loop, and every ``database_sync_to_async`` call (the consumers' reads, the orders
placed) runs in the test's own thread, where the fixtures' database connection is. The inline
matcher then publishes from that thread with ``async_to_sync``, which runs the send in the
test's loop: the one the in-memory layer's queues belong to.
"""

import time
from datetime import datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework import serializers
from rest_framework.test import APIClient

from exchange.asgi import application
from exchange.feed.selectors import book_snapshot
from exchange.models import Instrument, Order, Trade
from exchange.services.api_keys import api_key_create, api_key_revoke, signature_for
from exchange.services.participants import account_main
from exchange.services.pools import (
    demand_submit,
    pool_cut_off,
    pool_member_add,
)
from tests.exchange.pools.support import sponsor_pool, startup
from tests.exchange.support import free_port, place

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS_PATH = "/ws/v1/orders/"


def instrument_path(instrument: Instrument) -> str:
    return f"/ws/v1/instruments/{instrument.symbol}/"


def token_for(account, scopes=("read",), **options) -> str:
    return api_key_create(
        organization=account.organization, name="feed", scopes=list(scopes), **options
    ).token


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def api_client_of(account) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(account)}")
    return client


def as_rest(moment) -> str:
    """A time as the REST API writes it."""
    return serializers.DateTimeField().to_representation(moment)


def order_as_pushed(order: Order) -> dict:
    order.refresh_from_db()
    return {
        "type": "order",
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "instrument": order.instrument.symbol,
        "side": order.side,
        "order_type": order.type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "self_trade_prevention": order.self_trade_prevention,
        "status": order.status,
        "price": f"{order.price:.6f}",
        "protection_price": (
            None if order.protection_price is None else f"{order.protection_price:.6f}"
        ),
        "quantity": order.quantity,
        "filled_quantity": order.filled_quantity,
        "cancelled_quantity": order.cancelled_quantity,
        "open_quantity": order.open_quantity,
        "average_price": (
            None if order.average_fill_price is None else f"{order.average_fill_price:.6f}"
        ),
        "reject_code": order.reject_code,
        "done_reason": order.done_reason,
        "reduce_only": order.reduce_only,
        "expires_at": None if order.expires_at is None else as_rest(order.expires_at),
        "created_at": as_rest(order.created_at),
        "updated_at": as_rest(order.updated_at),
    }


# The futures fee schedule (settings.EXCHANGE_FEES), USD per contract; the tests' orders are
# under the block tiers.
FUTURE_FEE_PER_CONTRACT = {"maker": Decimal("0.20"), "taker": Decimal("0.50")}


def fill_as_pushed(trade: Trade, order: Order, liquidity: str) -> dict:
    fee = FUTURE_FEE_PER_CONTRACT[liquidity] * trade.quantity
    return {
        "type": "fill",
        "trade_sequence": trade.sequence,
        "order_id": order.pk,
        "instrument": trade.instrument.symbol,
        "side": order.side,
        "price": f"{trade.price:.6f}",
        "quantity": trade.quantity,
        "fee": f"{fee:.6f}",
        "liquidity": liquidity,
        "executed_at": as_rest(trade.executed_at),
    }


async def connected(communicator: WebsocketCommunicator) -> WebsocketCommunicator:
    accepted, _ = await communicator.connect()
    assert accepted
    return communicator


async def refusal(communicator: WebsocketCommunicator) -> tuple[dict, int]:
    """The error message and the close code of a refused connection."""
    await connected(communicator)
    error = await communicator.receive_json_from()
    closing = await communicator.receive_output()
    assert closing["type"] == "websocket.close"
    await communicator.disconnect()
    return error, closing["code"]


def test_instrument_channel_sends_the_book_then_each_trade_and_the_new_book(
    future, buyer, seller, maker, fourth
):
    # given: a bid and two asks resting
    place(fourth, future, "buy", 4, "2.40")
    place(seller, future, "sell", 2, "2.50")
    place(maker, future, "sell", 3, "2.60")

    async def scenario():
        listener = await connected(WebsocketCommunicator(application, instrument_path(future)))
        snapshot = await listener.receive_json_from()
        # when: a buy takes the first level and one contract of the second
        taker = await database_sync_to_async(place)(buyer, future, "buy", 3, "2.60")
        pushed = [await listener.receive_json_from() for _ in range(3)]
        quiet = await listener.receive_nothing()
        await listener.disconnect()
        return snapshot, taker, pushed, quiet

    snapshot, taker, pushed, quiet = async_to_sync(scenario)()

    # then: the snapshot, the two trades in sequence order, then the book they left
    assert taker.status == Order.Status.FILLED
    assert snapshot == {
        "type": "book",
        "symbol": future.symbol,
        "sequence": 3,  # Three acceptances.
        "bids": [{"price": "2.400000", "quantity": 4, "orders": 1}],
        "asks": [
            {"price": "2.500000", "quantity": 2, "orders": 1},
            {"price": "2.600000", "quantity": 3, "orders": 1},
        ],
    }
    trades = list(Trade.objects.filter(instrument=future).order_by("sequence"))
    assert len(trades) == 2
    assert pushed[:2] == [
        {
            "type": "trade",
            "symbol": future.symbol,
            "sequence": trade.sequence,
            "price": f"{trade.price:.6f}",
            "quantity": trade.quantity,
            "taker_side": "buy",
            "executed_at": as_rest(trade.executed_at),
        }
        for trade in trades
    ]
    assert [(trade["price"], trade["quantity"]) for trade in pushed[:2]] == [
        ("2.500000", 2),
        ("2.600000", 1),
    ]
    future.refresh_from_db()
    assert pushed[2] == {
        "type": "book",
        "symbol": future.symbol,
        "sequence": future.sequence,
        "bids": [{"price": "2.400000", "quantity": 4, "orders": 1}],
        "asks": [{"price": "2.600000", "quantity": 2, "orders": 1}],
    }
    # The update comes from the matcher's book; a new listener's snapshot from the database.
    assert pushed[2] == book_snapshot(future)
    assert quiet  # One book per batch, nothing more.


def test_orders_channel_sends_fills_and_order_changes_to_the_key_organization_only(
    future, buyer, seller, maker
):
    # given: listeners of three organizations, the seller's with its key in the query string
    buyer_token, seller_token, other_token = (
        token_for(buyer),
        token_for(seller),
        token_for(maker, scopes=("read", "trade")),
    )

    async def scenario():
        buyer_feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(buyer_token))
        )
        seller_feed = await connected(
            WebsocketCommunicator(application, f"{ORDERS_PATH}?key={seller_token}")
        )
        other_feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(other_token))
        )
        welcomes = [
            await feed.receive_json_from() for feed in (buyer_feed, seller_feed, other_feed)
        ]
        # when: the seller rests an ask, then the buyer takes it
        ask = await database_sync_to_async(place)(
            seller, future, "sell", 2, "2.50", client_order_id="ask-1"
        )
        seller_rested = await seller_feed.receive_json_from()
        buyer_quiet_before = await buyer_feed.receive_nothing()
        bid = await database_sync_to_async(place)(buyer, future, "buy", 2, "2.50")
        buyer_pushed = [await buyer_feed.receive_json_from() for _ in range(2)]
        seller_pushed = [await seller_feed.receive_json_from() for _ in range(2)]
        quiet = [await feed.receive_nothing() for feed in (buyer_feed, seller_feed, other_feed)]
        for feed in (buyer_feed, seller_feed, other_feed):
            await feed.disconnect()
        return (
            welcomes,
            ask,
            bid,
            seller_rested,
            buyer_quiet_before,
            buyer_pushed,
            seller_pushed,
            quiet,
        )

    (welcomes, ask, bid, seller_rested, buyer_quiet_before, buyer_pushed, seller_pushed, quiet) = (
        async_to_sync(scenario)()
    )

    # then
    assert welcomes == [
        {"type": "subscribed", "organization": account.organization.slug}
        for account in (buyer, seller, maker)
    ]
    assert seller_rested["type"] == "order"
    assert seller_rested["status"] == Order.Status.OPEN
    assert seller_rested["client_order_id"] == "ask-1"
    assert seller_rested["filled_quantity"] == 0
    assert buyer_quiet_before  # The seller's order is not the buyer's business.
    trade = Trade.objects.get(instrument=future)
    assert buyer_pushed == [fill_as_pushed(trade, bid, "taker"), order_as_pushed(bid)]
    assert seller_pushed == [fill_as_pushed(trade, ask, "maker"), order_as_pushed(ask)]
    assert buyer_pushed[1]["status"] == seller_pushed[1]["status"] == Order.Status.FILLED
    assert quiet == [True, True, True]  # Nothing more, and nothing at all for the third.
    # and each order message is the REST API's order, every field of it (the order's type
    # named order_type, type being the message's)
    for pushed, order in ((buyer_pushed[1], bid), (seller_pushed[1], ask)):
        rest = api_client_of(order.account).get(f"/api/v1/orders/{order.pk}/").json()
        fields = {key: value for key, value in pushed.items() if key not in {"type", "order_type"}}
        assert {**fields, "type": pushed["order_type"]} == rest
        assert (pushed["open_quantity"], pushed["average_price"]) == (0, "2.500000")


@pytest.mark.parametrize("token", ["", "gx_nonsense", "gx_0123456789ab_wrong-secret"])
def test_orders_channel_refuses_a_missing_or_bad_key_with_4401(buyer, token, settings):
    # A connection without a key is closed once its time to send one in a message is up.
    settings.EXCHANGE_FEED_AUTH_SECONDS = 0.2
    headers = bearer(token) if token else []

    error, code = async_to_sync(refusal)(
        WebsocketCommunicator(application, ORDERS_PATH, headers=headers)
    )

    assert code == 4401
    assert error["type"] == "error"
    assert error["code"] == ("AUTH_REQUIRED" if not token else "AUTH_KEY_INVALID")


def test_orders_channel_refuses_a_revoked_key_with_4401(buyer):
    created = api_key_create(organization=buyer.organization, name="old", scopes=["read"])
    api_key_revoke(key=created.key)

    error, code = async_to_sync(refusal)(
        WebsocketCommunicator(application, f"{ORDERS_PATH}?key={created.token}")
    )

    assert (error["code"], code) == ("AUTH_KEY_REVOKED", 4401)


def test_orders_channel_refuses_a_key_without_the_read_scope_with_4403(buyer):
    token = token_for(buyer, scopes=("trade",))

    error, code = async_to_sync(refusal)(
        WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
    )

    assert (error["code"], code) == ("AUTH_SCOPE_MISSING", 4403)


def test_orders_channel_checks_a_signature_over_an_empty_body(buyer):
    # given: a key that must sign
    token = token_for(buyer, require_signature=True)
    secret = token.split("_", 2)[2]
    timestamp = str(int(time.time()))
    signature = signature_for(secret, timestamp, "GET", ORDERS_PATH, b"")
    signed = [*bearer(token), (b"x-gx-timestamp", timestamp.encode())]

    async def scenario():
        good = await connected(
            WebsocketCommunicator(
                application, ORDERS_PATH, headers=[*signed, (b"x-gx-signature", signature.encode())]
            )
        )
        welcome = await good.receive_json_from()
        await good.disconnect()
        wrong = signature_for(secret, timestamp, "GET", ORDERS_PATH, b"{}")
        refused = await refusal(
            WebsocketCommunicator(
                application, ORDERS_PATH, headers=[*signed, (b"x-gx-signature", wrong.encode())]
            )
        )
        unsigned = await refusal(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        )
        return welcome, refused, unsigned

    welcome, (refused, refused_code), (unsigned, unsigned_code) = async_to_sync(scenario)()

    assert welcome["type"] == "subscribed"
    assert (refused["code"], refused_code) == ("AUTH_SIGNATURE_INVALID", 4401)
    assert (unsigned["code"], unsigned_code) == ("AUTH_SIGNATURE_REQUIRED", 4401)


def test_instrument_channel_closes_an_unknown_symbol_with_4404(future):
    error, code = async_to_sync(refusal)(
        WebsocketCommunicator(application, "/ws/v1/instruments/H100SXM-NOWHERE-202701/")
    )

    assert (error["code"], code) == ("NOT_FOUND", 4404)


def test_a_channel_layer_that_fails_does_not_stop_matching(settings, caplog, future, buyer, seller):
    # given: a network channel layer nobody answers at
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "exchange.feed.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    place(seller, future, "sell", 1, "2.50")

    # when
    bid = place(buyer, future, "buy", 1, "2.50")

    # then: the trade is made and written; the feed's failure is logged (by its own thread)
    assert bid.status == Order.Status.FILLED
    assert Trade.objects.filter(instrument=future, quantity=1, price=Decimal("2.50")).count() == 1
    deadline = time.monotonic() + 5
    while not any(
        record.name == "exchange.feed.publish" and "failed" in record.getMessage()
        for record in caplog.records
    ):
        assert time.monotonic() < deadline, "the feed's failure was not logged"
        time.sleep(0.05)


def test_the_redis_layer_carries_the_matcher_batches(settings, redis_url, future, buyer, seller):
    # given: the production layer, and a listener of the buyer's organization
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "exchange.feed.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    token = token_for(buyer)
    place(seller, future, "sell", 1, "2.50")

    async def scenario():
        feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        )
        await feed.receive_json_from()
        # when
        bid = await database_sync_to_async(place)(buyer, future, "buy", 1, "2.50")
        pushed = [await feed.receive_json_from(timeout=5) for _ in range(2)]
        # ...and batches in quick succession (the sender may merge them)
        resting = [
            await database_sync_to_async(place)(buyer, future, "buy", 1, price)
            for price in ("2.10", "2.20", "2.30")
        ]
        pushed_after = [await feed.receive_json_from(timeout=5) for _ in resting]
        await feed.disconnect()
        return bid, pushed, resting, pushed_after

    bid, pushed, resting, pushed_after = async_to_sync(scenario)()

    # then: every message, each batch in order
    trade = Trade.objects.get(instrument=future)
    assert pushed == [fill_as_pushed(trade, bid, "taker"), order_as_pushed(bid)]
    assert pushed_after == [order_as_pushed(order) for order in resting]


def test_a_batch_in_an_outer_transaction_is_published_at_its_commit_and_never_on_rollback(
    external_matcher, future, buyer, seller
):
    # given: a listener, and two crossing orders waiting for a matcher
    from django.db import transaction

    from exchange.matcher.runtime import Matcher

    place(seller, future, "sell", 1, "2.50")
    place(buyer, future, "buy", 1, "2.50")
    outer = {}

    def match_in_transaction() -> None:
        outer["atomic"] = transaction.atomic()
        outer["atomic"].__enter__()
        Matcher().process_instrument(future.pk)

    def end_transaction(error: type[BaseException] | None) -> None:
        outer["atomic"].__exit__(error, error() if error else None, None)

    async def scenario(error: type[BaseException] | None):
        listener = await connected(WebsocketCommunicator(application, instrument_path(future)))
        await listener.receive_json_from()
        # when: the matcher's batch runs inside a transaction of the caller's
        # (sync_to_async: database_sync_to_async would close the connection, transaction open.)
        await sync_to_async(match_in_transaction)()
        quiet_inside = await listener.receive_nothing()
        await sync_to_async(end_transaction)(error)
        after = await listener.receive_nothing()
        pushed = [] if after else [await listener.receive_json_from() for _ in range(2)]
        await listener.disconnect()
        return quiet_inside, pushed

    # then: nothing while the transaction is open; nothing after a rollback...
    quiet_inside, pushed = async_to_sync(scenario)(RuntimeError)
    assert quiet_inside
    assert pushed == []
    assert not Trade.objects.exists()
    # ...and the trade and the book once it commits.
    quiet_inside, pushed = async_to_sync(scenario)(None)
    assert quiet_inside
    assert [message["type"] for message in pushed] == ["trade", "book"]
    assert Trade.objects.count() == 1


def test_a_ping_is_answered_and_a_frame_that_is_not_json_does_not_end_the_feed(future):
    async def scenario():
        feed = await connected(WebsocketCommunicator(application, instrument_path(future)))
        await feed.receive_json_from()  # The book snapshot.
        await feed.send_json_to({"type": "ping", "id": 7})
        pong = await feed.receive_json_from()
        await feed.send_to(text_data="not json {")
        error = await feed.receive_json_from()
        await feed.send_json_to({"type": "subscribe", "anything": "else"})
        ignored = await feed.receive_nothing()
        await feed.send_json_to({"type": "ping"})
        still_open = await feed.receive_json_from()
        await feed.disconnect()
        return pong, error, ignored, still_open

    pong, error, ignored, still_open = async_to_sync(scenario)()

    assert (pong["type"], pong["id"]) == ("pong", 7)
    assert datetime.fromisoformat(pong["server_time"]).tzinfo is not None
    assert pong["server_time"].endswith("Z")  # UTC written as the REST API writes it.
    assert (error["type"], error["code"]) == ("error", "INVALID_JSON")
    assert ignored
    assert (still_open["type"], still_open["id"]) == ("pong", None)


@pytest.mark.parametrize("path", ["/ws/v1/nothing/", "/ws/v1/instruments/H100%00SXM/", "/"])
def test_a_path_no_channel_has_is_closed_with_4404(db, path):
    error, code = async_to_sync(refusal)(WebsocketCommunicator(application, path))

    assert (error["code"], code) == ("NOT_FOUND", 4404)


def test_orders_channel_takes_the_key_in_a_first_message_instead_of_the_url(buyer, seller, future):
    token = token_for(buyer)

    async def scenario():
        feed = await connected(WebsocketCommunicator(application, ORDERS_PATH))
        await feed.send_json_to({"type": "ping", "id": 1})
        pong = await feed.receive_json_from()  # Pings work before the key.
        await feed.send_json_to({"type": "auth", "key": token})
        welcome = await feed.receive_json_from()
        bid = await database_sync_to_async(place)(buyer, future, "buy", 1, "2.10")
        pushed = await feed.receive_json_from(timeout=5)
        await feed.send_json_to({"type": "auth", "key": token})
        again = await feed.receive_json_from()
        await feed.disconnect()
        return pong, welcome, bid, pushed, again

    pong, welcome, bid, pushed, again = async_to_sync(scenario)()

    assert pong["type"] == "pong"
    assert welcome == {"type": "subscribed", "organization": buyer.organization.slug}
    assert pushed == order_as_pushed(bid)
    assert again["code"] == "ALREADY_AUTHENTICATED"


@pytest.mark.parametrize(
    ("message", "code", "close_code"),
    [
        ({"type": "auth", "key": "gx_0123456789ab_wrong-secret"}, "AUTH_KEY_INVALID", 4401),
        ({"type": "auth"}, "AUTH_REQUIRED", 4401),
        ({"type": "auth", "key": ["not", "text"]}, "AUTH_REQUIRED", 4401),
        ({"type": "auth", "key": "trade-only"}, "AUTH_SCOPE_MISSING", 4403),
    ],
)
def test_orders_channel_closes_on_a_bad_auth_message(buyer, message, code, close_code):
    if message.get("key") == "trade-only":
        message = {**message, "key": token_for(buyer, scopes=("trade",))}

    async def scenario():
        feed = await connected(WebsocketCommunicator(application, ORDERS_PATH))
        await feed.send_json_to(message)
        error = await feed.receive_json_from()
        closing = await feed.receive_output()
        await feed.disconnect()
        return error, closing

    error, closing = async_to_sync(scenario)()

    assert (error["type"], error["code"]) == ("error", code)
    assert (closing["type"], closing["code"]) == ("websocket.close", close_code)


def test_orders_channel_reads_the_bearer_scheme_in_any_case(buyer):
    """An authentication scheme's name is case-insensitive: "bearer" was read as no key."""
    headers = [(b"authorization", f"bearer {token_for(buyer)}".encode())]

    async def scenario():
        feed = await connected(WebsocketCommunicator(application, ORDERS_PATH, headers=headers))
        welcome = await feed.receive_json_from()
        await feed.disconnect()
        return welcome

    welcome = async_to_sync(scenario)()

    assert welcome == {"type": "subscribed", "organization": buyer.organization.slug}


def test_orders_channel_checks_the_signature_of_an_auth_message(buyer):
    token = token_for(buyer, require_signature=True)
    secret = token.split("_", 2)[2]
    timestamp = str(int(time.time()))

    def auth(body: bytes) -> dict:
        signature = signature_for(secret, timestamp, "GET", ORDERS_PATH, body)
        return {"type": "auth", "key": token, "timestamp": timestamp, "signature": signature}

    async def first_answer(message: dict) -> dict:
        feed = await connected(WebsocketCommunicator(application, ORDERS_PATH))
        await feed.send_json_to(message)
        answer = await feed.receive_json_from()
        await feed.disconnect()
        return answer

    welcome = async_to_sync(first_answer)(auth(b""))
    wrong = async_to_sync(first_answer)(auth(b"{}"))
    unsigned = async_to_sync(first_answer)({"type": "auth", "key": token})
    # A signature holding a character beyond ASCII made the comparison raise (no answer).
    not_ascii = async_to_sync(first_answer)({**auth(b""), "signature": "\u00e9" * 64})

    assert welcome["type"] == "subscribed"
    assert wrong["code"] == "AUTH_SIGNATURE_INVALID"
    assert unsigned["code"] == "AUTH_SIGNATURE_REQUIRED"
    assert not_ascii["code"] == "AUTH_SIGNATURE_INVALID"


def test_orders_channel_refuses_an_auth_message_with_a_timestamp_and_no_signature(buyer):
    """As an API request: a key that does not require signing took a timestamp without its
    signature as an unsigned auth message, and the client never learnt it signed nothing."""
    token = token_for(buyer)

    async def first_answer(message: dict) -> dict:
        feed = await connected(WebsocketCommunicator(application, ORDERS_PATH))
        await feed.send_json_to(message)
        answer = await feed.receive_json_from()
        await feed.disconnect()
        return answer

    half = {"type": "auth", "key": token, "timestamp": str(int(time.time()))}
    refused = async_to_sync(first_answer)(half)
    unsigned = async_to_sync(first_answer)({"type": "auth", "key": token})

    assert (refused["type"], refused["code"]) == ("error", "AUTH_SIGNATURE_INVALID")
    assert refused["message"].startswith("X-GX-Signature is missing")
    assert unsigned["type"] == "subscribed"


def test_orders_channel_closes_an_open_connection_when_its_key_is_revoked(buyer, seller, future):
    # given: two listeners of the buyer's organization, each with its own key
    revoked = api_key_create(organization=buyer.organization, name="leaked", scopes=["read"])
    kept = token_for(buyer)

    async def scenario():
        doomed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(revoked.token))
        )
        other = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(kept))
        )
        await doomed.receive_json_from()
        await other.receive_json_from()
        # when: the first key is revoked
        await database_sync_to_async(api_key_revoke)(key=revoked.key)
        error = await doomed.receive_json_from(timeout=5)
        closing = await doomed.receive_output(timeout=5)
        # ...and the organization's orders change afterwards
        bid = await database_sync_to_async(place)(buyer, future, "buy", 1, "2.10")
        pushed = await other.receive_json_from(timeout=5)
        await other.disconnect()
        return error, closing, bid, pushed

    error, closing, bid, pushed = async_to_sync(scenario)()

    # then: the revoked key's connection is told why and closed as a revoked key is refused;
    # the other key's goes on
    assert (error["type"], error["code"]) == ("error", "AUTH_KEY_REVOKED")
    assert (closing["type"], closing["code"]) == ("websocket.close", 4401)
    assert pushed == order_as_pushed(bid)


def test_orders_channel_closes_a_revoked_keys_connection_whose_message_was_lost(
    buyer, settings, monkeypatch
):
    # given: a subscribed connection, and a revocation whose message never reaches it
    settings.EXCHANGE_FEED_KEY_CHECK_SECONDS = 0.2
    created = api_key_create(organization=buyer.organization, name="leaked", scopes=["read"])
    monkeypatch.setattr("exchange.feed.publish.key_revoked", lambda key_id: None)

    async def scenario():
        feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(created.token))
        )
        await feed.receive_json_from()
        # when
        await database_sync_to_async(api_key_revoke)(key=created.key)
        error = await feed.receive_json_from(timeout=5)
        closing = await feed.receive_output(timeout=5)
        return error, closing

    error, closing = async_to_sync(scenario)()

    # then: the connection found its key revoked on its next check
    assert (error["code"], closing["code"]) == ("AUTH_KEY_REVOKED", 4401)


def test_orders_channel_refuses_an_address_the_keys_allowlist_refuses_with_4403(buyer):
    token = token_for(buyer, ip_allowlist=["203.0.113.0/24"])

    def from_address(address: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        communicator.scope["client"] = (address, 50000)
        return communicator

    async def allowed():
        feed = await connected(from_address("203.0.113.5"))
        welcome = await feed.receive_json_from()
        await feed.disconnect()
        return welcome

    welcome = async_to_sync(allowed)()
    error, code = async_to_sync(refusal)(from_address("198.51.100.1"))

    assert welcome["type"] == "subscribed"
    assert (error["code"], code) == ("AUTH_IP_NOT_ALLOWED", 4403)


def test_orders_channel_carries_the_main_accounts_orders_not_a_pools(future, seller):
    # given a sponsor listening to its orders channel, whose pool has a member's demand
    sponsor, sam, pool = sponsor_pool()
    main = account_main(sponsor)
    ada = pool_member_add(pool=pool, organization=startup("ada", "200000"), priority=10, actor=sam)
    demand_submit(
        member=ada,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=2,
        limit_price=Decimal("2.50"),
        actor=None,
    )
    place(seller, future, "sell", 3, "2.45")
    token = token_for(main)

    async def scenario():
        feed = await connected(
            WebsocketCommunicator(application, ORDERS_PATH, headers=bearer(token))
        )
        await feed.receive_json_from()  # subscribed
        # when the pool's cut-off buys on the pool's account, then the sponsor's main account
        # buys the rest for itself
        await database_sync_to_async(pool_cut_off)(pool=pool, actor=None)
        own = await database_sync_to_async(place)(main, future, "buy", 1, "2.45")
        pushed = [await feed.receive_json_from() for _ in range(2)]
        quiet = await feed.receive_nothing()
        await feed.disconnect()
        return own, pushed, quiet

    own, pushed, quiet = async_to_sync(scenario)()

    # then the channel said only what the REST API's orders and fills say: the main account's
    pool_orders = Order.objects.exclude(account=main).filter(account__organization=sponsor)
    assert pool_orders.exists()
    assert [
        (message["type"], message.get("order_id", message.get("id"))) for message in pushed
    ] == [
        ("fill", own.pk),
        ("order", own.pk),
    ]
    assert quiet
