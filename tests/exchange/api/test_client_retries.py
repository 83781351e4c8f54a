"""The typed client's opt-in retry of a 429, against a live server over HTTP: it sleeps the
answer's ``Retry-After`` (at most its bound) and sends the request again, signed afresh, up to
``rate_limit_retries`` times, then raises the 429 as ``ApiError``; it never retries another
error, and without ``rate_limit_retries`` never retries at all.

The rate-limit window's clock (``throttling``'s) is the test's: the client's sleep moves it,
so no test waits for a window to close."""

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from exchange.api import throttling
from exchange.models import Order
from exchange.services.api_keys import api_key_create
from exchange_client import ApiError, ExchangeClient
from exchange_client.client import RETRY_AFTER_DEFAULT_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)


class Clock:
    """The throttle's monotonic clock, moved only by the client's sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    # The throttle's module only: the live server's and requests' own clocks keep running.
    monkeypatch.setattr(throttling, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def rate(monkeypatch, value: str) -> None:
    monkeypatch.setitem(throttling.PerKeyRateThrottle.THROTTLE_RATES, "key", value)


OPENED: list[ExchangeClient] = []


@pytest.fixture(autouse=True)
def close_clients():
    """Close each test's clients before the database goes: a keep-alive connection keeps the
    live server's thread, and its database session, open."""
    yield
    while OPENED:
        OPENED.pop().close()


def client_of(url: str, account, clock: Clock, **options: Any) -> ExchangeClient:
    token = api_key_create(
        organization=account.organization, name="client", scopes=["read", "trade"]
    ).token
    client = ExchangeClient(url, token, sleep=clock.sleep, **options)
    OPENED.append(client)
    return client


def test_a_429_is_retried_after_its_retry_after_and_succeeds(
    live_server, buyer, clock, monkeypatch
):
    rate(monkeypatch, "2/minute")
    client = client_of(
        live_server.url, buyer, clock, rate_limit_retries=1, rate_limit_wait_max_seconds=60
    )
    client.me()
    clock.now += 15  # The window has 45 s left.
    client.me()

    # when: the third request of the minute
    me = client.me()

    # then: it slept until the window closed, once, and the retry opened a new one
    assert me.organization == buyer.organization.slug
    assert clock.slept == [45.0]
    assert client.rate_limit is not None and client.rate_limit.remaining == 1


def test_each_wait_is_at_most_the_clients_bound(live_server, buyer, clock, monkeypatch):
    rate(monkeypatch, "1/minute")
    client = client_of(live_server.url, buyer, clock, rate_limit_retries=2)  # Bound: 30 s.
    client.me()

    client.me()

    # Refused again after the first 30 s (30 left), then let in.
    assert clock.slept == [30.0, 30.0]


@pytest.mark.parametrize("sign", [False, True])
def test_past_its_retries_the_429_raises_as_before(live_server, buyer, clock, monkeypatch, sign):
    rate(monkeypatch, "1/minute")
    client = client_of(
        live_server.url,
        buyer,
        clock,
        sign=sign,
        rate_limit_retries=2,
        rate_limit_wait_max_seconds=10,
    )
    client.me()

    with pytest.raises(ApiError) as refused:
        client.me()

    # Each retry was refused for the rate, not as a replayed signature (401): signed afresh.
    assert (refused.value.status, refused.value.code) == (429, "RATE_LIMITED")
    assert refused.value.retry_after_seconds == 40
    assert clock.slept == [10.0, 10.0]


def test_without_retries_a_429_raises_at_once(live_server, buyer, clock, monkeypatch):
    rate(monkeypatch, "1/minute")
    client = client_of(live_server.url, buyer, clock)
    client.me()

    with pytest.raises(ApiError) as refused:
        client.me()

    assert (refused.value.status, refused.value.retry_after_seconds) == (429, 60)
    assert clock.slept == []


def test_no_other_error_is_retried(live_server, buyer, clock, monkeypatch):
    rate(monkeypatch, "5/minute")
    client = client_of(live_server.url, buyer, clock, rate_limit_retries=3)

    with pytest.raises(ApiError) as refused:
        client.order(999_999)

    assert (refused.value.status, refused.value.code) == (404, "NOT_FOUND")
    assert clock.slept == []
    assert client.rate_limit is not None and client.rate_limit.remaining == 4  # Sent once.


@pytest.mark.parametrize("sign", [False, True])
def test_a_rate_limited_placement_is_placed_once_when_retried(
    live_server, buyer, future, clock, monkeypatch, sign
):
    rate(monkeypatch, "1/minute")
    client = client_of(live_server.url, buyer, clock, sign=sign, rate_limit_retries=2)
    client.me()

    placed = client.place_order(
        instrument=future.symbol,
        side="buy",
        quantity=1,
        price=Decimal("2.40"),
        client_order_id="retried-1",
    )

    assert placed.created and placed.order.client_order_id == "retried-1"
    assert clock.slept == [30.0, 30.0]
    assert Order.objects.filter(account=buyer).count() == 1


class ProxyAdapter(BaseAdapter):
    """A proxy in front of the exchange: a 429 with no ``Retry-After`` in seconds (an HTTP
    date, or none), then the answer."""

    def __init__(self, retry_after: str | None) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        response = requests.Response()
        response.request, response.url = request, request.url
        if self.sent == 1:
            response.status_code, response.reason = 429, "Too Many Requests"
            response.headers = CaseInsensitiveDict(
                {} if self.retry_after is None else {"Retry-After": self.retry_after}
            )
            response._content = b"<html>slow down</html>"
        else:
            response.status_code, response.reason = 200, "OK"
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
            response._content = b'{"server_time": "2026-01-01T00:00:00Z"}'
        return response

    def close(self) -> None:
        pass


@pytest.mark.parametrize("retry_after", [None, "Wed, 21 Oct 2026 07:28:00 GMT"])
def test_a_429_without_seconds_to_wait_waits_the_default(retry_after):
    proxy, slept = ProxyAdapter(retry_after), []
    session = requests.Session()
    session.mount("http://proxy", proxy)
    client = ExchangeClient(
        "http://proxy", "gx_a_b", session=session, rate_limit_retries=1, sleep=slept.append
    )

    client.server_time()

    assert (proxy.sent, slept) == (2, [RETRY_AFTER_DEFAULT_SECONDS])


def test_retries_cannot_be_negative():
    with pytest.raises(ValueError, match="rate_limit_retries"):
        ExchangeClient("http://proxy", "gx_a_b", rate_limit_retries=-1)


class GatewayAdapter(BaseAdapter):
    """A gateway in front of the exchange answering an error of its own, JSON but not the
    exchange's envelope."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__()
        self.status, self.body = status, body

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.request, response.url = request, request.url
        response.status_code, response.reason = self.status, "Bad Gateway"
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response._content = self.body
        return response

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "upstream timed out"}', "upstream timed out"),
        (b'"Bad Gateway"', "Bad Gateway"),
        (b'["Bad Gateway"]', "Bad Gateway"),
        (b'{"error": null, "message": "Internal server error"}', "Bad Gateway"),
        (b"null", "Bad Gateway"),
    ],
)
def test_an_error_a_gateway_answers_in_json_of_its_own_is_an_api_error(body, message):
    session = requests.Session()
    session.mount("http://gateway", GatewayAdapter(502, body))
    client = ExchangeClient("http://gateway", "gx_a_b", session=session)

    with pytest.raises(ApiError) as refused:
        client.me()

    assert (refused.value.status, refused.value.code) == (502, "HTTP_ERROR")
    assert (refused.value.message, refused.value.field) == (message, None)
