"""The feed as production serves it: uvicorn (README's production mode) on a port, and a real
WebSocket client. The other feed tests drive the ASGI application directly; this one shows the
server can upgrade the connection (uvicorn needs a WebSocket library for that) and routes it."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from django.db import connection
from websockets.sync.client import connect

from exchange.asgi import application
from exchange.feed.selectors import book_snapshot
from exchange.services.api_keys import api_key_create
from tests.exchange.support import free_port, place

# The server's threads read what the test wrote: it must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 10


@pytest.fixture(autouse=True)
def _connections_closed_after_each_use(monkeypatch):
    """The consumers' database calls run in the server's executor thread, whose connection
    would outlive the test (and keep PostgreSQL from dropping the test database): with no
    maximum age, Channels closes it after each call."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


@contextmanager
def uvicorn_serving(app: Any = application) -> Iterator[str]:
    """uvicorn serving the project's ASGI application (or ``app``) in a thread; its ws:// base
    URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT_SECONDS)


def receive(socket) -> dict:
    return json.loads(socket.recv(timeout=WAIT_SECONDS))


def test_uvicorn_serves_an_instruments_book_over_a_websocket(future, buyer):
    place(buyer, future, "buy", 3, "2.400")

    with uvicorn_serving() as base, connect(f"{base}/ws/v1/instruments/{future.symbol}/") as feed:
        snapshot = receive(feed)

    assert snapshot == json.loads(json.dumps(book_snapshot(future)))
    assert (snapshot["type"], snapshot["bids"][0]["quantity"]) == ("book", 3)


def test_uvicorn_serves_the_private_channel_to_a_key_and_refuses_without_one(buyer):
    token = api_key_create(organization=buyer.organization, name="feed", scopes=["read"]).token

    with uvicorn_serving() as base:
        with connect(
            f"{base}/ws/v1/orders/", additional_headers={"Authorization": f"Bearer {token}"}
        ) as feed:
            subscribed = receive(feed)
        with connect(f"{base}/ws/v1/orders/") as anonymous:
            anonymous.send(json.dumps({"type": "auth", "key": "gx_not-a-key"}))
            refused = receive(anonymous)

    assert subscribed == {"type": "subscribed", "organization": buyer.organization.slug}
    assert (refused["type"], refused["code"]) == ("error", "AUTH_KEY_INVALID")
