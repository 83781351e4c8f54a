"""Placing a batch of orders in one request: ``POST /api/v1/orders/batch/``."""

from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

import pytest
import redis

from exchange.api import throttling
from exchange.api.throttling import PerKeyRateThrottle
from exchange.models import Order, OrderRejection
from exchange.services.orders import BATCH_ORDERS_MAX
from tests.exchange.api.test_trading import (
    ORDERS,
    client_for,
    error_of,
    fee_rate,
    limit_order,
    unfunded,  # noqa: F401 (a fixture)
    usd,
)
from tests.exchange.support import matching_in_thread, place

BATCH = "/api/v1/orders/batch/"


@pytest.fixture
def api(buyer):
    return client_for(buyer)


def batch(*orders) -> dict:
    return {"orders": list(orders)}


def test_each_order_of_a_batch_is_answered_as_its_own_request_would_be(
    api, future, buyer, seller, row_counts
):
    # given 2 contracts offered at 2.500
    resting = place(seller, future, "sell", 2, "2.500")
    before = row_counts()

    # when the buyer sends a crossing bid, an unknown instrument, an off-tick price and a
    # bid that rests
    response = api.post(
        BATCH,
        batch(
            limit_order(future, quantity=5, price="2.505"),
            {**limit_order(future), "instrument": "NOPE-2099"},
            limit_order(future, price="2.453"),
            limit_order(future, quantity=1, price="2.400", client_order_id="low-bid"),
        ),
        format="json",
    )

    # then one result per order, in order: each with the status its own request would answer
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201, 404, 422, 201]
    crossing, unknown, off_tick, low = results
    assert (crossing["error"], low["error"]) == (None, None)
    assert crossing["placement"]["order"]["status"] == "partially_filled"
    assert crossing["placement"]["fills"] == [
        {
            "trade_sequence": crossing["placement"]["fills"][0]["trade_sequence"],
            "order_id": crossing["placement"]["order"]["id"],
            "instrument": future.symbol,
            "side": "buy",
            "price": "2.500000",
            "quantity": 2,
            "fee": usd(fee_rate("future", "taker") * 2),
            "liquidity": "taker",
            "executed_at": crossing["placement"]["fills"][0]["executed_at"],
        }
    ]
    assert (crossing["placement"]["resting_quantity"], low["placement"]["resting_quantity"]) == (
        3,
        1,
    )
    assert low["placement"]["order"]["client_order_id"] == "low-bid"
    assert low["placement"]["fills"] == []
    assert (unknown["placement"], off_tick["placement"]) == (None, None)
    assert unknown["error"] == {
        "code": "ORDER_UNKNOWN_INSTRUMENT",
        "message": "No instrument 'NOPE-2099'.",
        "field": "instrument",
    }
    assert (off_tick["error"]["code"], off_tick["error"]["field"]) == (
        "ORDER_PRICE_OFF_TICK",
        "price",
    )
    # the placed orders are the account's, the refused ones recorded as rejections
    placed = Order.objects.filter(account=buyer).order_by("pk")
    assert [order.pk for order in placed] == [
        crossing["placement"]["order"]["id"],
        low["placement"]["order"]["id"],
    ]
    after = row_counts()
    assert (after.orders, after.trades, after.rejections) == (
        before.orders + 2,
        before.trades + 1,
        before.rejections + 2,
    )
    resting.refresh_from_db()
    assert resting.status == Order.Status.FILLED


def test_orders_of_a_batch_match_in_the_order_given(api, future, buyer, seller):
    """The second order of the batch meets the book the first left: a sell that crosses the
    first's bid fills against it (seller's batch against the buyer's bid placed before)."""
    seller_api = client_for(seller)
    bid = api.post(ORDERS, limit_order(future, quantity=2, price="2.450"), format="json")
    assert bid.status_code == 201

    response = seller_api.post(
        BATCH,
        batch(
            limit_order(future, side="sell", quantity=1, price="2.450"),
            limit_order(future, side="sell", quantity=3, price="2.450"),
        ),
        format="json",
    )

    first, second = response.json()["results"]
    assert (
        first["placement"]["order"]["status"],
        first["placement"]["order"]["filled_quantity"],
    ) == (
        "filled",
        1,
    )
    assert second["placement"]["order"]["filled_quantity"] == 1
    assert second["placement"]["resting_quantity"] == 2


def test_a_client_order_id_repeated_in_a_batch_repeats_or_conflicts(api, future, buyer):
    body = limit_order(future, client_order_id="mm:0001")

    response = api.post(BATCH, batch(body, body, {**body, "price": "2.440"}), format="json")

    first, again, different = response.json()["results"]
    assert [first["status"], again["status"], different["status"]] == [201, 200, 409]
    assert again["placement"]["order"]["id"] == first["placement"]["order"]["id"]
    assert different["error"]["code"] == "ORDER_CLIENT_ORDER_ID_CONFLICT"
    assert Order.objects.filter(account=buyer).count() == 1


def test_a_batch_without_the_funds_answers_each_refusal(unfunded, future, row_counts):  # noqa: F811
    before = row_counts()

    response = client_for(unfunded).post(
        BATCH, batch(limit_order(future), limit_order(future, side="sell")), format="json"
    )

    assert response.status_code == 200
    assert [
        (result["status"], result["error"]["code"]) for result in response.json()["results"]
    ] == [(422, "RISK_INSUFFICIENT_FUNDS")] * 2
    assert row_counts() == replace(before, rejections=before.rejections + 2)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"orders": []}, "orders"),
        ({"orders": "buy"}, "orders"),
        ({}, "orders"),
        ({"orders": [{"side": "buy"}]}, "orders.0.instrument"),
        ({"orders": "many"}, "orders"),
    ],
)
def test_a_malformed_batch_is_refused_whole(api, future, row_counts, body, field):
    before = row_counts()

    response = api.post(BATCH, body, format="json")

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)
    assert row_counts() == before


@pytest.mark.parametrize("value", ["true", "false", "1"])
def test_a_batch_asked_as_a_dry_run_is_refused_and_places_nothing(api, future, row_counts, value):
    before = row_counts()

    response = api.post(f"{BATCH}?dry_run={value}", batch(limit_order(future)), format="json")

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", "dry_run")
    assert row_counts() == before


def test_one_malformed_order_refuses_the_batch_and_places_nothing(api, future, row_counts):
    before = row_counts()

    response = api.post(
        BATCH,
        batch(limit_order(future), limit_order(future), limit_order(future, side="hold")),
        format="json",
    )

    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "INVALID_INPUT",
        "orders.2.side",
    )
    assert row_counts() == before


def test_a_batch_holds_at_most_its_maximum(api, future, row_counts):
    before = row_counts()
    orders = [limit_order(future, quantity=1) for _ in range(BATCH_ORDERS_MAX + 1)]

    refused = api.post(BATCH, batch(*orders), format="json")
    accepted = api.post(BATCH, batch(*orders[:BATCH_ORDERS_MAX]), format="json")

    assert refused.status_code == 400
    assert (error_of(refused)["field"], error_of(refused)["message"]) == (
        "orders",
        f"Ensure this field has no more than {BATCH_ORDERS_MAX} elements.",
    )
    assert accepted.status_code == 200
    assert [result["status"] for result in accepted.json()["results"]] == [201] * BATCH_ORDERS_MAX
    assert row_counts().orders == before.orders + BATCH_ORDERS_MAX


def test_a_batch_counts_one_request_per_order_against_the_rate_limit(
    api, future, buyer, monkeypatch
):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")

    first = api.post(BATCH, batch(*[limit_order(future, quantity=1)] * 4), format="json")
    refused = api.post(BATCH, batch(*[limit_order(future, quantity=1)] * 2), format="json")

    assert first.status_code == 200
    assert first["RateLimit-Remaining"] == "1"
    assert error_of(refused)["code"] == "RATE_LIMITED"
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Order.objects.filter(account=buyer).count() == 4


@pytest.mark.parametrize("path", [BATCH, "/api/v1/orders/batch/cancel/"])
def test_a_batch_body_that_cannot_be_weighed_is_counted_and_tells_the_standing(
    api, monkeypatch, settings, path
):
    """A batch is weighed by its list before it is counted: a body that cannot be read (bad
    JSON, not JSON, over the size limit) was refused there, before the count, without the
    key's RateLimit-* standing. It counts one request, as at any endpoint, and tells it."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "4/minute")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000

    malformed = api.post(path, "{", content_type="application/json")
    form = api.post(path, "orders=1", content_type="application/x-www-form-urlencoded")
    large = api.post(path, '{"orders": ["' + "x" * 2_000 + '"]}', content_type="application/json")
    api.get("/api/v1/me/")
    limited = api.post(path, "{", content_type="application/json")

    answers = [
        (response.status_code, error_of(response)["code"], response["RateLimit-Remaining"])
        for response in (malformed, form, large, limited)
    ]
    assert answers == [
        (400, "INVALID_JSON", "3"),
        (415, "UNSUPPORTED_MEDIA_TYPE", "2"),
        (413, "PAYLOAD_TOO_LARGE", "1"),
        (429, "RATE_LIMITED", "0"),
    ]
    assert not Order.objects.exists()


@pytest.fixture(params=["in memory", "redis"])
def rate_counter(request, settings):
    """Each way the rate limit counts: this process's memory (embedded) and Redis."""
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
        yield
        throttling._clients.clear()
    else:
        yield


def test_a_batch_refused_by_the_rate_limit_counts_nothing(
    api, future, buyer, monkeypatch, rate_counter
):
    """A batch over what the window has left is refused whole, and what was left stays left:
    it used to be counted, so the key's next single request was refused too."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "5/minute")

    # given a window with 2 requests left
    first = api.post(BATCH, batch(*[limit_order(future, quantity=1)] * 3), format="json")

    # when a batch of 3 is refused
    refused = api.post(BATCH, batch(*[limit_order(future, quantity=1)] * 3), format="json")

    # then nothing of it is placed nor counted: the key's next requests use the 2 left
    assert (first.status_code, first["RateLimit-Remaining"]) == (200, "2")
    assert (refused.status_code, error_of(refused)["code"]) == (429, "RATE_LIMITED")
    assert refused["RateLimit-Remaining"] == "2"
    assert Order.objects.filter(account=buyer).count() == 3
    me = api.get("/api/v1/me/")
    assert (me.status_code, me["RateLimit-Remaining"]) == (200, "1")
    last = api.post(BATCH, batch(limit_order(future, quantity=1)), format="json")
    assert (last.status_code, last["RateLimit-Remaining"]) == (200, "0")
    assert api.get("/api/v1/me/").status_code == 429


def test_a_batch_is_counted_by_its_orders_if_it_fits(settings, rate_counter):
    def hit(weight: int) -> throttling.WindowHit:
        return throttling.window_hit("key:batch", 60, limit=10, weight=weight)

    too_big = hit(11)
    opened = throttling.window_hit("key:batch", 60, limit=10, weight=0)
    hits = [hit(weight) for weight in (3, 1, 20)]
    read = hit(0)

    # a refusal opens no window (the next request opens it for the whole period); a batch
    # that does not fit counts nothing; weight 0 reads
    assert (too_big.requests, too_big.allowed, too_big.seconds_left) == (0, False, 60)
    assert (opened.requests, opened.seconds_left) == (0, 60)
    assert [(hit.requests, hit.allowed) for hit in hits] == [(3, True), (4, True), (4, False)]
    assert (read.requests, read.allowed) == (4, True)
    assert 0 < read.seconds_left <= 60
    if settings.REDIS_URL:
        server = redis.Redis.from_url(settings.REDIS_URL)
        try:
            assert int(server.get(throttling.KEY_PREFIX + "key:batch")) == 4
            assert 0 < server.ttl(throttling.KEY_PREFIX + "key:batch") <= 60
        finally:
            server.close()


def test_placing_a_batch_needs_the_trade_scope(buyer, future):
    reader = client_for(buyer, scopes=("read",))

    response = reader.post(BATCH, batch(limit_order(future)), format="json")

    assert response.status_code == 403
    assert error_of(response)["code"] == "AUTH_SCOPE_MISSING"
    assert not Order.objects.filter(account=buyer).exists()
    assert not OrderRejection.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_a_batch_waits_for_the_outcome_of_every_order(
    future, buyer, seller, matcher
):
    from exchange.services.orders import order_place

    order_place(account=seller, instrument=future, side="sell", quantity=2, price=Decimal("2.50"))
    order_place(account=seller, instrument=future, side="sell", quantity=2, price=Decimal("2.55"))
    matcher.process_pending()
    with matching_in_thread(matcher):
        response = client_for(buyer).post(
            BATCH,
            batch(
                limit_order(future, quantity=2, price="2.500"),
                limit_order(future, quantity=3, price="2.550"),
            ),
            format="json",
        )

    assert response.status_code == 200
    first, second = (result["placement"] for result in response.json()["results"])
    assert first["order"]["status"] == "filled"
    assert [(fill["price"], fill["quantity"]) for fill in first["fills"]] == [("2.500000", 2)]
    assert second["order"]["status"] == "partially_filled"
    assert [(fill["price"], fill["quantity"]) for fill in second["fills"]] == [("2.550000", 2)]
    assert second["resting_quantity"] == 1


def test_a_batch_that_is_not_json_is_refused_and_places_nothing(api, future, row_counts):
    before = row_counts()

    broken = api.post(BATCH, data='{"orders": [', content_type="application/json")
    form = api.post(BATCH, data="orders=1", content_type="application/x-www-form-urlencoded")

    assert (broken.status_code, error_of(broken)["code"]) == (400, "INVALID_JSON")
    assert (form.status_code, error_of(form)["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert row_counts() == before


# Cancelling by id ------------------------------------------------------------------------

CANCEL_BATCH = "/api/v1/orders/batch/cancel/"


def test_each_order_of_a_cancel_batch_is_answered_as_its_own_cancel_would_be(
    api, future, buyer, seller
):
    # given two live bids of the buyer's, one it cancelled already, and one of the seller's
    live = [place(buyer, future, "buy", 1, price) for price in ("2.400", "2.405")]
    done = place(buyer, future, "buy", 1, "2.410")
    api.delete(f"{ORDERS}{done.pk}/")
    theirs = place(seller, future, "sell", 1, "2.600")

    response = api.post(
        CANCEL_BATCH,
        {"order_ids": [live[0].pk, theirs.pk, done.pk, live[1].pk, 10**12]},
        format="json",
    )

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(result["order_id"], result["status"]) for result in results] == [
        (live[0].pk, 200),
        (theirs.pk, 404),
        (done.pk, 409),
        (live[1].pk, 200),
        (10**12, 404),
    ]
    assert [results[0]["order"]["status"], results[3]["order"]["status"]] == ["cancelled"] * 2
    assert results[1]["error"] == {
        "code": "NOT_FOUND",
        "message": "Not found.",
        "field": "order_ids",
    }
    assert results[2]["error"]["code"] == "ORDER_NOT_LIVE"
    assert {result["client_order_id"] for result in results} == {None}
    assert [order.status for order in Order.objects.filter(pk__in=[o.pk for o in live])] == [
        Order.Status.CANCELLED
    ] * 2
    theirs.refresh_from_db()
    assert theirs.status == Order.Status.OPEN


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_a_cancel_batch_answers_what_the_matcher_did(
    future, buyer, seller, matcher
):
    """Each order answered as its own DELETE would be: after the matcher's pass, cancelled
    (the batch used to answer at once, the orders still open), or 409 for one that traded
    away before the matcher reached its cancel."""
    bids = [place(buyer, future, "buy", 1, price) for price in ("2.400", "2.405")]
    matcher.process_pending()
    place(seller, future, "sell", 1, "2.405")  # Fills the second bid at the matcher's next pass.

    with matching_in_thread(matcher, delay_seconds=0.3):
        response = client_for(buyer).post(
            CANCEL_BATCH, {"order_ids": [bid.pk for bid in bids]}, format="json"
        )

    assert response.status_code == 200, response.content
    cancelled, filled = response.json()["results"]
    assert (cancelled["status"], cancelled["order"]["status"]) == (200, "cancelled")
    assert cancelled["order"]["done_reason"] == "user"
    assert (filled["status"], filled["error"]["code"]) == (409, "ORDER_NOT_LIVE")


def test_a_cancel_batch_by_client_order_ids_answers_each_as_asked(api, future, buyer, seller):
    # given the buyer's orders named q-1 (live), q-2 (cancelled already) and q-3 (live), and
    # the seller's own q-4
    live = place(buyer, future, "buy", 1, "2.400", client_order_id="q-1")
    done = place(buyer, future, "buy", 1, "2.405", client_order_id="q-2")
    api.delete(f"{ORDERS}{done.pk}/")
    other = place(buyer, future, "buy", 1, "2.410", client_order_id="q-3")
    theirs = place(seller, future, "sell", 1, "2.600", client_order_id="q-4")

    response = api.post(
        CANCEL_BATCH, {"client_order_ids": ["q-3", "q-4", "q-2", "nope", "q-1"]}, format="json"
    )

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["client_order_id"], r["order_id"], r["status"]) for r in results] == [
        ("q-3", other.pk, 200),
        ("q-4", None, 404),  # Another organization's: as if no order had that id.
        ("q-2", done.pk, 409),
        ("nope", None, 404),
        ("q-1", live.pk, 200),
    ]
    assert (results[0]["order"]["status"], results[0]["order"]["done_reason"]) == (
        "cancelled",
        "user",
    )
    assert results[1]["error"] == {
        "code": "NOT_FOUND",
        "message": "Not found.",
        "field": "client_order_ids",
    }
    assert results[2]["error"]["code"] == "ORDER_NOT_LIVE"
    assert Order.objects.get(pk=live.pk).status == Order.Status.CANCELLED
    assert Order.objects.get(pk=theirs.pk).status == Order.Status.OPEN


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"order_ids": []}, "order_ids"),
        ({"order_ids": [1, 1]}, "order_ids"),
        ({"order_ids": [0]}, "order_ids.0"),
        ({"order_ids": ["x"]}, "order_ids.0"),
        ({"order_ids": [1.0]}, "order_ids.0"),  # ids are JSON integers
        ({"order_ids": ["1"]}, "order_ids.0"),
        ({"order_ids": list(range(1, 102))}, "order_ids"),
        ({}, "order_ids"),
        ({"order_ids": [1], "client_order_ids": ["q-1"]}, "order_ids"),
        ({"client_order_ids": []}, "client_order_ids"),
        ({"client_order_ids": ["q-1", "q-1"]}, "client_order_ids"),
        ({"client_order_ids": [""]}, "client_order_ids.0"),
        ({"client_order_ids": ["x" * 65]}, "client_order_ids.0"),
        ({"client_order_ids": ["a\x00b"]}, "client_order_ids.0"),
        ({"client_order_ids": [f"q-{n}" for n in range(101)]}, "client_order_ids"),
    ],
)
def test_a_malformed_cancel_batch_is_refused_whole(api, future, buyer, body, field):
    bid = place(buyer, future, "buy", 1, "2.400")

    response = api.post(CANCEL_BATCH, body, format="json")

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)
    bid.refresh_from_db()
    assert bid.status == Order.Status.OPEN


def test_a_cancel_batch_counts_one_request_per_order(api, future, buyer, monkeypatch):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "3/minute")
    bids = [place(buyer, future, "buy", 1, price) for price in ("2.400", "2.405", "2.410")]

    first = api.post(CANCEL_BATCH, {"order_ids": [bid.pk for bid in bids]}, format="json")
    again = api.post(CANCEL_BATCH, {"order_ids": [bids[0].pk]}, format="json")

    assert (first.status_code, first["RateLimit-Remaining"]) == (200, "0")  # 3 of 3
    assert (again.status_code, error_of(again)["code"]) == (429, "RATE_LIMITED")


def test_a_cancel_batch_by_client_order_ids_counts_one_request_per_id(
    api, future, buyer, monkeypatch
):
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "3/minute")

    first = api.post(CANCEL_BATCH, {"client_order_ids": ["a", "b"]}, format="json")

    assert (first.status_code, first["RateLimit-Remaining"]) == (200, "1")  # 2 of 3


def test_a_batch_heavier_than_the_whole_window_counts_as_the_whole_window(
    api, future, buyer, monkeypatch, rate_counter
):
    """With a rate below a batch's size, the batch never fitted any window: it was refused
    with 429 and a Retry-After for ever, and a client retrying after it waited in vain."""
    monkeypatch.setitem(PerKeyRateThrottle.THROTTLE_RATES, "key", "4/minute")
    orders = batch(*[limit_order(future, quantity=1)] * 6)

    # when a batch of 6 is sent in an untouched window of 4, then another in the used one
    placed = api.post(BATCH, orders, format="json")
    refused = api.post(BATCH, orders, format="json")

    # then the first is placed whole and takes the window, the second waits for the next
    assert (placed.status_code, placed["RateLimit-Remaining"]) == (200, "0")
    assert [result["status"] for result in placed.json()["results"]] == [201] * 6
    assert (refused.status_code, error_of(refused)["code"]) == (429, "RATE_LIMITED")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert Order.objects.filter(account=buyer).count() == 6


@pytest.mark.parametrize("now", [1000.1, 107.07835250545195])
def test_a_window_not_open_yet_has_exactly_its_period_left(monkeypatch, now):
    """(now + 60) - now is 59.999999999999886 or 60.000000000000014 at these clocks: the
    second made the headers' ceiling say 61 seconds of a 60 s window."""
    monkeypatch.setattr(throttling, "time", SimpleNamespace(monotonic=lambda: now))

    refused = throttling.window_hit("key:clock", 60, limit=1, weight=2)
    opened = throttling.window_hit("key:clock", 60, limit=1, weight=1)

    assert (refused.seconds_left, refused.allowed) == (60, False)
    assert (opened.seconds_left, opened.allowed) == (60, True)
