"""The typed client's lists follow the API's cursors to the end, signed or not, with the
filters that put a time (``+00:00``) in each page's ``next`` address; they ask for the largest
page the API gives."""

from datetime import UTC, datetime, timedelta

import pytest

import exchange_client.client as client_module
from exchange.api import throttling
from exchange.api.pagination import NewestFirst
from exchange.models import Order, Trade
from tests.exchange.api.test_client_pools import client_of
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

PAGE_ROWS_DEFAULT = 100  # The API's page without ?limit= (docs/API.md).


def test_the_lists_ask_for_the_largest_page_the_api_gives():
    # The client does not import the server's code (it is usable without Django).
    assert NewestFirst.max_page_size == client_module.PAGE_ROWS
    assert NewestFirst.page_size_query_param == "limit"


def test_a_list_longer_than_the_apis_default_page_takes_one_request(future, seller, monkeypatch):
    monkeypatch.setitem(throttling.PerKeyRateThrottle.THROTTLE_RATES, "key", "1000/minute")
    for _ in range(PAGE_ROWS_DEFAULT + 1):
        place(seller, future, "sell", 1, "2.50")
    client = client_of(seller.organization)

    orders = list(client.orders())

    assert len(orders) == PAGE_ROWS_DEFAULT + 1
    assert client.rate_limit is not None and client.rate_limit.remaining == 999


@pytest.mark.parametrize("sign", [False, True])
def test_orders_and_fills_are_followed_past_the_first_page(
    future, buyer, seller, sign, monkeypatch
):
    # given: pages of 50 rows, and more asks than two hold, each of one contract, all taken by
    # one bid
    page_rows = 50
    monkeypatch.setattr(client_module, "PAGE_ROWS", page_rows)
    asks = 2 * page_rows + 21
    before = datetime.now(UTC) - timedelta(seconds=5)
    for _ in range(asks):
        place(seller, future, "sell", 1, "2.50")
    place(buyer, future, "buy", asks, "2.50")
    client = client_of(seller.organization, sign=sign)

    # when
    orders = list(client.orders())
    changed = list(client.orders(updated_since=before, status="done"))
    fills = list(client.fills(since=before))

    # then: every row once, newest first
    stored = list(Order.objects.filter(account=seller).order_by("-id").values_list("pk", flat=True))
    assert len(stored) == asks
    assert [order.id for order in orders] == stored
    assert [order.id for order in changed] == stored
    trades = Trade.objects.filter(instrument=future).order_by("-sequence")
    assert [(fill.order_id, fill.trade_sequence) for fill in fills] == [
        (trade.maker_order_id, trade.sequence) for trade in trades
    ]


def test_a_list_longer_than_the_clients_bound_is_refused_not_cut_short(future, seller, monkeypatch):
    # given: a list one row longer than the pages the client follows hold
    pages_max, page_rows = 1, 2
    monkeypatch.setattr(client_module, "PAGES_MAX", pages_max)
    monkeypatch.setattr(client_module, "PAGE_ROWS", page_rows)
    for _ in range(page_rows * pages_max + 1):
        place(seller, future, "sell", 1, "2.50")
    client = client_of(seller.organization)

    # when / then: reading it whole raises, rather than answering the first rows as all of them
    with pytest.raises(RuntimeError, match="more than 1 page"):
        list(client.orders())
