"""The typed client's push feed (``exchange_client.Feed``) against the feed as production serves
it: uvicorn on a port, the Redis channel layer, orders matched by the inline matcher."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from exchange.asgi import application
from exchange.feed import publish
from exchange.feed.messages import organization_group
from exchange.feed.selectors import book_snapshot
from exchange.models import Trade
from exchange.services.api_keys import api_key_create, api_key_revoke
from exchange_client import ExchangeClient, FeedError
from tests.exchange.feed.test_feed import order_as_pushed
from tests.exchange.feed.test_feed_server import (
    WAIT_SECONDS,
    _connections_closed_after_each_use,  # noqa: F401  (an autouse fixture of these tests too)
    uvicorn_serving,
)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _redis_layer(settings, redis_url):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "exchange.feed.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }


def client_of(base: str, account, *, sign=False, scopes=("read",)) -> ExchangeClient:
    token = api_key_create(
        organization=account.organization,
        name="client feed",
        scopes=list(scopes),
        require_signature=sign,
    ).token
    http = base.replace("ws://", "http://")
    return ExchangeClient(http, token, sign=sign, timeout_seconds=WAIT_SECONDS)


@pytest.mark.parametrize("sign", [False, True])
def test_the_orders_feed_yields_the_organizations_fills_and_orders(future, buyer, seller, sign):
    with uvicorn_serving() as base:
        client = client_of(base, buyer, sign=sign)
        assert client.feed_url == base  # ws:// of the server's own address.
        with client.orders_feed() as feed:
            place(seller, future, "sell", 2, "2.50")
            bid = place(buyer, future, "buy", 2, "2.50")
            pushed = [feed.receive(WAIT_SECONDS) for _ in range(2)]
            feed.ping(7)
            pong = feed.receive(WAIT_SECONDS)

    trade = Trade.objects.get(instrument=future)
    assert pushed[0]["type"] == "fill"
    assert (pushed[0]["order_id"], pushed[0]["trade_sequence"]) == (bid.pk, trade.sequence)
    assert pushed[1] == order_as_pushed(bid)
    assert (pong["type"], pong["id"]) == ("pong", 7)


def mounted_at(prefix: str, app: Any) -> Any:
    """The ASGI application as a proxy serving it under ``prefix`` passes it on (uvicorn's
    ``--root-path``): the path keeps the prefix, and the root path says what it is."""

    async def proxied(scope: dict, receive: Any, send: Any) -> None:
        await app({**scope, "root_path": prefix}, receive, send)

    return proxied


def test_a_signed_orders_feed_under_a_base_urls_prefix(future, buyer, seller):
    # given: the exchange behind a proxy at /exchange, and a client whose key must sign
    with uvicorn_serving(mounted_at("/exchange", application)) as base:
        client = client_of(f"{base}/exchange", buyer, sign=True)
        assert client.feed_url == f"{base}/exchange"

        # when: it opens its organization's feed, signed over the path the feed sees
        with client.orders_feed() as feed:
            place(seller, future, "sell", 1, "2.50")
            bid = place(buyer, future, "buy", 1, "2.50")
            pushed = [feed.receive(WAIT_SECONDS) for _ in range(2)]

    # then: subscribed, it hears its fill and its order
    assert [message["type"] for message in pushed] == ["fill", "order"]
    assert pushed[1] == order_as_pushed(bid)


def test_the_instrument_feed_yields_the_snapshot_then_trades_and_books(future, buyer, seller):
    place(seller, future, "sell", 3, "2.50")

    with uvicorn_serving() as base:
        client = client_of(base, buyer)
        with client.instrument_feed(future.symbol) as feed:
            snapshot = next(feed)
            place(buyer, future, "buy", 1, "2.50")
            after = [next(feed) for _ in range(2)]

    assert snapshot["type"] == "book"
    assert snapshot["asks"][0]["quantity"] == 3
    assert [message["type"] for message in after] == ["trade", "book"]
    assert after[1] == book_snapshot(future)


def test_a_refused_feed_raises_its_code_and_close_code(future, buyer):
    with uvicorn_serving() as base:
        revoked = client_of(base, buyer)
        api_key_revoke(key=buyer.organization.api_keys.get(), actor=None)
        without_read = client_of(base, buyer, scopes=("trade",))
        refusals = []
        for open_feed in (
            revoked.orders_feed,
            without_read.orders_feed,
            lambda: next(without_read.instrument_feed("H100SXM-NOWHERE-202701")),
        ):
            with pytest.raises(FeedError) as refused:
                open_feed()
            refusals.append((refused.value.code, refused.value.close_code))

    assert refusals == [
        ("AUTH_KEY_REVOKED", 4401),
        ("AUTH_SCOPE_MISSING", 4403),
        ("NOT_FOUND", 4404),
    ]


def test_an_error_the_feed_goes_on_after_loses_no_message(future, buyer):
    with uvicorn_serving() as base, client_of(base, buyer).instrument_feed(future.symbol) as feed:
        snapshot = next(feed)
        # given: a frame the feed answers with an error without closing, then a ping
        feed.connection.send("not json")
        feed.ping(8)

        # when: the error is read, then the next message
        with pytest.raises(FeedError) as refused:
            feed.receive(WAIT_SECONDS)
        after = feed.receive(WAIT_SECONDS)

    # then: the error raised without a close code, and the pong that came after it is the
    # next message, not swallowed while waiting for a close
    assert snapshot["type"] == "book"
    assert (refused.value.code, refused.value.close_code) == ("INVALID_JSON", None)
    assert (after["type"], after["id"]) == ("pong", 8)


class NotFound(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_server_without_the_feed_is_a_feed_error():
    # An HTTP server that answers /ws/ with 404, as gunicorn (which serves no feed) does.
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = ExchangeClient(f"http://127.0.0.1:{server.server_port}", "gx_x_y")
        with pytest.raises(FeedError) as refused:
            client.orders_feed()
    finally:
        server.shutdown()
        server.server_close()

    assert (refused.value.code, refused.value.message) == (
        "HTTP_ERROR",
        "The server answered 404.",
    )


def test_a_server_going_away_ends_the_feed_with_a_feed_error(future, buyer):
    with uvicorn_serving() as base:
        feed = client_of(base, buyer).instrument_feed(future.symbol)
        snapshot = next(feed)
    # uvicorn has stopped, closing the connection as a restart (1012).

    with pytest.raises(FeedError) as ended:
        next(feed)

    assert snapshot["type"] == "book"
    assert (ended.value.code, ended.value.close_code) == ("CLOSED", 1012)


def test_the_feed_example_of_the_api_guide_runs(future, buyer, seller, redis_url):
    # given the guide's feed example, pointed at this test's server, key and instrument, its
    # lines printed into a list
    guide = (Path(settings.BASE_DIR) / "docs" / "API.md").read_text()
    client_part = guide.split("## The Python client", 1)[1]
    example = next(
        block.split("```")[0]
        for block in client_part.split("```python\n")[1:]
        if "orders_feed()" in block
    )
    connect = 'client = ExchangeClient("http://127.0.0.1:8000", "gx_...")'
    assert connect in example and "H100SXM-USEAST-202701" in example
    example = example.replace(connect, "client = connect()").replace(
        "H100SXM-USEAST-202701", future.symbol
    )
    place(buyer, future, "buy", 2, "2.40")
    group = organization_group(buyer.organization_id)
    sender = publish._sender()
    lines: list[str] = []

    def printed(*parts: object) -> None:
        lines.append(" ".join(str(part) for part in parts))

    with uvicorn_serving() as base:
        client = client_of(base, buyer)
        running = threading.Thread(
            target=exec,
            args=(
                compile(example, "docs/API.md", "exec"),
                {"connect": lambda: client, "print": printed},
            ),
        )
        running.start()
        listeners = redis.Redis.from_url(redis_url)
        _until(lambda: listeners.zcard(f"asgi:group:{group}") > 0)  # Subscribed.
        # when: a trade fills the buyer, the feed loses the next batch, another trade fills it
        place(seller, future, "sell", 1, "2.40")
        _until(lambda: len(lines) == 2, what=lines)  # The fill arrived: its batch was numbered.
        sender.loop.call_soon_threadsafe(sender.numbering.skip, [group])
        place(seller, future, "sell", 1, "2.40")
        _until(lambda: len(lines) >= 4, what=lines)
    # ...and the server stops.
    running.join(WAIT_SECONDS)

    # then it printed the book, the fills, the catching up after the gap, and the feed's end
    assert not running.is_alive()
    assert lines == [
        "bids [('2.400000', 2)]",
        "filled 1 @ 2.400000",
        "caught up: 1 orders, 2 fills",
        "filled 1 @ 2.400000",
        "feed ended: CLOSED 1012",
    ]


def _until(condition, seconds: float = WAIT_SECONDS, what: object = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited in vain: {what}"
        time.sleep(0.02)


def test_an_open_orders_feed_ends_with_a_feed_error_when_its_key_is_revoked(future, buyer):
    # given: the client reading its organization's orders through uvicorn and Redis
    with uvicorn_serving() as base:
        client = client_of(base, buyer)
        with client.orders_feed() as feed:
            # when: its key is revoked (through the API, as a trader would on a leak)
            revoker = client_of(base, buyer, scopes=("read", "trade"))
            prefix = client.key.split("_")[1]
            revoker.request("DELETE", f"keys/{prefix}/")
            with pytest.raises(FeedError) as ended:
                feed.receive(WAIT_SECONDS)

    # then: the feed says why, with the close code of a revoked key
    assert (ended.value.code, ended.value.close_code) == ("AUTH_KEY_REVOKED", 4401)
