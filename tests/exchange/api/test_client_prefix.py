"""The typed client at a base URL with a path: the exchange served under a prefix by a proxy
(``http://host/exchange``). Every request goes under the prefix and is signed with it, as the
exchange, told its prefix (SCRIPT_NAME), checks it; the lists' next pages stay under it."""

from decimal import Decimal

import pytest
import requests

import exchange_client.client as client_module
from exchange.services.api_keys import api_key_create
from exchange_client import ExchangeClient
from tests.exchange.api.test_client_pools import BASE_URL, DjangoAdapter
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

PREFIX = "/exchange"


def prefixed_client(organization, adapter: DjangoAdapter, *, sign: bool) -> ExchangeClient:
    token = api_key_create(organization=organization, name="proxied", scopes=["read", "trade"])
    session = requests.Session()
    session.mount(BASE_URL, adapter)
    return ExchangeClient(f"{BASE_URL}{PREFIX}/", token.token, sign=sign, session=session)


@pytest.mark.parametrize("sign", [False, True])
def test_requests_and_next_pages_keep_the_base_urls_prefix(future, seller, sign, monkeypatch):
    # given: three orders, read in pages of two, through a proxy that mounts the exchange at
    # /exchange and says so
    monkeypatch.setattr(client_module, "PAGE_ROWS", 2)
    adapter = DjangoAdapter(PREFIX)
    client = prefixed_client(seller.organization, adapter, sign=sign)
    resting = [place(seller, future, "sell", 1, "2.50") for _ in range(2)]

    # when
    placed = client.place_order(
        instrument=future.symbol, side="sell", quantity=1, price=Decimal("2.60")
    )
    orders = list(client.orders())

    # then: every request was under the prefix, once, and each was answered
    assert [order.id for order in orders] == [placed.order.id] + [o.pk for o in resting[::-1]]
    assert adapter.paths == [
        f"{PREFIX}/api/v1/orders/",
        f"{PREFIX}/api/v1/orders/",
        f"{PREFIX}/api/v1/orders/",
    ]


def test_next_pages_stay_under_the_prefix_a_proxy_strips_unsaid(future, seller, monkeypatch):
    # given: a proxy that strips the prefix without telling the exchange, whose next addresses
    # then lack it
    monkeypatch.setattr(client_module, "PAGE_ROWS", 1)
    adapter = DjangoAdapter(PREFIX, says_prefix=False)
    client = prefixed_client(seller.organization, adapter, sign=False)
    resting = [place(seller, future, "sell", 1, "2.50") for _ in range(2)]

    orders = list(client.orders())

    assert [order.id for order in orders] == [order.pk for order in resting[::-1]]
    assert adapter.paths == [f"{PREFIX}/api/v1/orders/"] * 2


def test_the_feed_address_keeps_the_prefix():
    assert ExchangeClient(f"{BASE_URL}{PREFIX}", "gx_a_b").feed_url == f"ws://testserver{PREFIX}"
    secure = ExchangeClient(f"HTTPS://exchange.example.com{PREFIX}/", "gx_a_b")
    assert secure.feed_url == f"wss://exchange.example.com{PREFIX}"
