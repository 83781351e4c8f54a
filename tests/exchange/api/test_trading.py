"""The trading endpoints: orders (place, dry run, list, get, cancel, replace, cancel-all) and
fills, through HTTP with API keys.

Expected collateral and fees are computed here from the settings' rules (fee schedule, price
scan, market protection), independently of ``exchange.services.collateral``.
"""

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal

import pytest
from django.conf import settings
from django.utils import timezone as django_timezone
from rest_framework.test import APIClient

from exchange.models import ApiKey, Instrument, Order, Organization, Trade
from exchange.services.api_keys import api_key_create
from exchange.services.cancel_after import cancel_all_after_fire_due
from exchange.services.capacity import capacity_register, hours_by_month
from exchange.services.funding import deposit_test_funds
from exchange.services.instruments import instrument_halt
from exchange.services.orders import order_cancel
from exchange.services.participants import account_main, organization_create
from exchange.tasks import orders_expire_due
from ledger.models import Account as LedgerAccount
from ledger.models import Entry, Hold
from tests.exchange.support import matching_in_thread, place, statements

ORDERS = "/api/v1/orders/"
FILLS = "/api/v1/fills/"
CANCEL_ALL = "/api/v1/orders/cancel-all/"
READ, TRADE = ApiKey.Scope.READ, ApiKey.Scope.TRADE
MICRO = Decimal("0.000001")


def order_url(order_id: int) -> str:
    return f"{ORDERS}{order_id}/"


def client_for(account, scopes=(READ, TRADE)) -> APIClient:
    created = api_key_create(organization=account.organization, name="tests", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.token}")
    return client


@pytest.fixture
def api(buyer) -> APIClient:
    return client_for(buyer)


@pytest.fixture
def seller_api(seller) -> APIClient:
    return client_for(seller)


@pytest.fixture
def unfunded(db):
    return account_main(
        organization_create(slug="pauper", name="Pauper", kind=Organization.Kind.STARTUP)
    )


def usd(amount: Decimal) -> str:
    """USD as the API writes it: six decimals."""
    return str(amount.quantize(MICRO))


def usd_figure(amount: Decimal) -> str:
    """USD as a refusal writes it: thousands separators, cents when exact, else micro-dollars."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents if cents == amount else amount.quantize(MICRO):,}"


def up_to_micro(amount: Decimal) -> Decimal:
    return amount.quantize(MICRO, rounding=ROUND_CEILING)


def fee_rate(kind: str, liquidity: str) -> Decimal:
    return Decimal(settings.EXCHANGE_FEES[kind][liquidity])


def future_margin(price: str, hours: int) -> Decimal:
    """A future's margin per contract: the full price scan of one contract's notional (the
    extreme scenarios, two scans weighted 35%, lose less), rounded up to the micro-dollar."""
    return up_to_micro(Decimal(settings.EXCHANGE_PRICE_SCAN) * Decimal(price) * hours)


def ledger_rows() -> tuple[int, int, int]:
    return (Hold.objects.count(), Entry.objects.count(), LedgerAccount.objects.count())


def fees_collected() -> int:
    account = LedgerAccount.objects.filter(code="exchange:fees:USD").first()
    return account.credits_posted - account.debits_posted if account else 0


def error_of(response) -> dict:
    return response.json()["error"]


def limit_order(instrument, side="buy", quantity=3, price="2.450", **extra) -> dict:
    return {
        "instrument": instrument.symbol,
        "side": side,
        "quantity": quantity,
        "price": price,
        **extra,
    }


# Placing orders --------------------------------------------------------------------------


def test_a_limit_order_that_does_not_cross_rests_and_is_created(api, future, buyer):
    # when
    response = api.post(ORDERS, limit_order(future), format="json")

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get(account=buyer)
    assert body["order"] == {
        "id": order.pk,
        "client_order_id": None,
        "instrument": future.symbol,
        "side": "buy",
        "type": "limit",
        "time_in_force": "gtc",
        "post_only": False,
        "self_trade_prevention": "cancel_newest",
        "price": "2.450000",
        "protection_price": None,
        "quantity": 3,
        "filled_quantity": 0,
        "cancelled_quantity": 0,
        "open_quantity": 3,
        "average_price": None,
        "status": "open",
        "reject_code": "",
        "done_reason": "",
        "reduce_only": False,
        "expires_at": None,
        "created_at": body["order"]["created_at"],
        "updated_at": body["order"]["updated_at"],
    }
    assert (body["fills"], body["resting_quantity"], body["market_remainder"]) == ([], 3, 0)
    assert order.status == Order.Status.OPEN and order.price == Decimal("2.45")


def test_a_crossing_order_reports_its_fills_with_the_taker_fee(api, future, buyer, seller):
    # given 2 contracts offered at 2.500
    resting = place(seller, future, "sell", 2, "2.500")
    fees_before = fees_collected()

    # when the buyer bids 2.505 for 5
    response = api.post(ORDERS, limit_order(future, quantity=5, price="2.505"), format="json")

    # then 2 filled at the resting price, 3 rest, and the taker fee is the schedule's per
    # contract
    assert response.status_code == 201, response.content
    body = response.json()
    taker_fee = fee_rate("future", "taker") * 2
    maker_fee = fee_rate("future", "maker") * 2
    order = body["order"]
    assert (order["status"], order["filled_quantity"], order["open_quantity"]) == (
        "partially_filled",
        2,
        3,
    )
    assert order["average_price"] == "2.500000"
    assert body["fills"] == [
        {
            "trade_sequence": body["fills"][0]["trade_sequence"],
            "order_id": order["id"],
            "instrument": future.symbol,
            "side": "buy",
            "price": "2.500000",
            "quantity": 2,
            "fee": usd(taker_fee),
            "liquidity": "taker",
            "executed_at": body["fills"][0]["executed_at"],
        }
    ]
    assert (body["resting_quantity"], body["market_remainder"]) == (3, 0)
    # the ledger took the fees the fills show (the resting seller paid the maker rate)
    assert Decimal(fees_collected() - fees_before) * MICRO == taker_fee + maker_fee
    resting.refresh_from_db()
    assert resting.status == Order.Status.FILLED


def test_a_good_till_date_order_keeps_its_expiry_given_in_any_time_zone(api, future):
    expiry = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    in_berlin = expiry.astimezone(timezone(timedelta(hours=2))).isoformat()
    body = limit_order(future, time_in_force="gtd", expires_at=in_berlin, client_order_id="gtd")

    first = api.post(ORDERS, body, format="json")
    # the same instant written in UTC is the same request
    again = api.post(ORDERS, {**body, "expires_at": expiry.isoformat()}, format="json")

    assert first.status_code == 201, first.content
    order = first.json()["order"]
    assert datetime.fromisoformat(order["expires_at"]) == expiry
    assert (order["time_in_force"], order["status"]) == ("gtd", "open")
    assert (again.status_code, again.json()["order"]["id"]) == (200, order["id"])


def test_a_gtd_order_whose_time_has_come_reads_expired_before_the_sweep_as_after_it(
    api, future, buyer, seller, monkeypatch
):
    """Nothing more of it trades once its time has come (the matcher expires it before any
    command of a later batch), so the API answers it as the sweep leaves it, as the pages show
    it; until 2026-12-07 it read open, with its contracts open, for up to a second."""
    # given a GTD bid of 4, 1 of it filled, and a GTC bid
    expires_at = django_timezone.now() + timedelta(minutes=5)
    gtd = place(buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=expires_at)
    place(seller, future, "sell", 1, "2.45")
    gtc = place(buyer, future, "buy", 2, "2.40")
    since = django_timezone.now() + timedelta(minutes=1)  # After both bids last changed.

    # when its time has come and the matcher has not swept it yet
    monkeypatch.setattr(django_timezone, "now", lambda: expires_at)
    before = api.get(order_url(gtd.pk)).json()
    listed = {
        status: [row["id"] for row in api.get(ORDERS, {"status": status}).json()["results"]]
        for status in ("live", "open", "partially_filled", "done", "expired")
    }
    changed = api.get(ORDERS, {"updated_since": since.isoformat()}).json()["results"]
    gtd.refresh_from_db()
    unswept = gtd.status
    orders_expire_due()
    after = api.get(order_url(gtd.pk)).json()

    # then it reads expired with nothing open, as once swept
    assert unswept == Order.Status.PARTIALLY_FILLED
    expired = {
        "status": "expired",
        "done_reason": "expired",
        "filled_quantity": 1,
        "cancelled_quantity": 3,
        "open_quantity": 0,
    }
    assert {name: before[name] for name in expired} == expired
    assert {name: after[name] for name in expired} == expired
    assert datetime.fromisoformat(before["updated_at"]) == expires_at
    # and the filters read it so: done and expired, not live; changed at its time
    assert listed == {
        "live": [gtc.pk],
        "open": [gtc.pk],
        "partially_filled": [],
        "done": [gtd.pk],
        "expired": [gtd.pk],
    }
    assert [row["id"] for row in changed] == [gtd.pk]
    assert changed[0]["status"] == "expired"


def test_cancel_all_counts_only_the_orders_the_api_answers_live(api, future, buyer, monkeypatch):
    """A GTD order whose time has come reads expired (the matcher expires it before any
    command); cancel-all counted it among the orders it cancelled until 2026-12-07."""
    # given a GTD bid whose time has come, not swept yet, and a GTC bid
    expires_at = django_timezone.now() + timedelta(minutes=5)
    gtd = place(buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=expires_at)
    gtc = place(buyer, future, "buy", 2, "2.40")
    monkeypatch.setattr(django_timezone, "now", lambda: expires_at)
    live = [row["id"] for row in api.get(ORDERS, {"status": "live"}).json()["results"]]

    # when the organization cancels all
    response = api.post(CANCEL_ALL, {}, format="json")

    # then it counts the one live order, which it cancelled; the other expired
    assert live == [gtc.pk]
    assert response.status_code == 200
    assert response.json() == {"cancelled": 1}
    gtd.refresh_from_db()
    gtc.refresh_from_db()
    assert (gtc.status, gtc.done_reason) == (Order.Status.CANCELLED, "cancel_all")
    assert api.get(order_url(gtd.pk)).json()["done_reason"] == "expired"


def test_a_market_order_reports_what_it_could_not_fill(api, future, seller):
    # given 2 contracts offered
    place(seller, future, "sell", 2, "2.500")

    # when a market IOC order asks for 5
    response = api.post(
        ORDERS,
        {
            "instrument": future.symbol,
            "side": "buy",
            "type": "market",
            "time_in_force": "ioc",
            "quantity": 5,
        },
        format="json",
    )

    # then 2 filled, 3 were cancelled unfilled, nothing rests
    assert response.status_code == 201, response.content
    body = response.json()
    assert [fill["quantity"] for fill in body["fills"]] == [2]
    assert (body["resting_quantity"], body["market_remainder"]) == (0, 3)
    assert body["order"]["price"] is None
    assert body["order"]["protection_price"] == "2.750000"  # 2.500 moved 10% against it


def test_an_order_the_matcher_refuses_is_created_with_its_reject_code(api, future, seller):
    # given an offer at 2.500
    place(seller, future, "sell", 1, "2.500")

    # when a post-only bid would cross it
    response = api.post(
        ORDERS, limit_order(future, quantity=1, price="2.500", post_only=True), format="json"
    )

    # then the order exists, refused by the matcher after acceptance
    assert response.status_code == 201, response.content
    order = response.json()["order"]
    assert (order["status"], order["reject_code"], order["done_reason"]) == (
        "rejected",
        "MATCHING_POST_ONLY_WOULD_CROSS",
        "MATCHING_POST_ONLY_WOULD_CROSS",
    )
    assert response.json()["resting_quantity"] == 0
    assert order["open_quantity"] == 0  # None of a refused order may trade.


def test_the_schema_describes_a_rejected_orders_quantity_as_it_is(api, future, seller, client):
    """The schema said quantity is filled + cancelled + still open: not for a rejected order."""
    place(seller, future, "sell", 1, "2.500")

    rejected = api.post(
        ORDERS, limit_order(future, quantity=5, price="2.500", post_only=True), format="json"
    ).json()["order"]
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    quantities = ("quantity", "filled_quantity", "cancelled_quantity", "open_quantity")
    assert rejected["status"] == "rejected"
    assert [rejected[name] for name in quantities] == [5, 0, 0, 0]
    description = schema["components"]["schemas"]["Order"]["properties"]["quantity"]["description"]
    assert "filled + cancelled + still open" not in description
    assert "a rejected order keeps the quantity it asked for" in description


@pytest.mark.parametrize(
    ("order_type", "named", "placed_as"),
    [
        ("market", None, "ioc"),  # Left out: a market order never rests.
        ("market", "fok", "fok"),
        ("limit", None, "gtc"),
    ],
)
def test_a_time_in_force_left_out_fits_the_order_type(
    api, future, seller, order_type, named, placed_as
):
    place(seller, future, "sell", 2, "2.500")
    body = {"instrument": future.symbol, "side": "buy", "type": order_type, "quantity": 1}
    if order_type == "limit":
        body["price"] = "2.400"
    if named is not None:
        body["time_in_force"] = named

    response = api.post(ORDERS, body, format="json")

    assert response.status_code == 201, response.content
    assert Order.objects.get(pk=response.json()["order"]["id"]).time_in_force == placed_as


def test_a_market_order_naming_gtc_is_refused(api, future, seller, row_counts):
    place(seller, future, "sell", 2, "2.500")
    before = row_counts()

    response = api.post(
        ORDERS,
        {
            "instrument": future.symbol,
            "side": "buy",
            "type": "market",
            "time_in_force": "gtc",
            "quantity": 1,
        },
        format="json",
    )

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "ORDER_INVALID_TIME_IN_FORCE",
        "time_in_force",
    )
    assert row_counts() == replace(before, rejections=before.rejections + 1)


def test_a_market_order_without_liquidity_is_refused(api, future, row_counts):
    before = row_counts()

    response = api.post(
        ORDERS,
        {
            "instrument": future.symbol,
            "side": "buy",
            "type": "market",
            "time_in_force": "ioc",
            "quantity": 1,
        },
        format="json",
    )

    assert response.status_code == 422
    assert error_of(response)["code"] == "RISK_NO_REFERENCE_PRICE"
    assert error_of(response)["field"] == "type"
    assert row_counts() == replace(before, rejections=before.rejections + 1)


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"price": "2.453"}, "ORDER_PRICE_OFF_TICK", "price"),  # the tick is 0.005
        ({"price": None}, "ORDER_PRICE_REQUIRED", "price"),
        ({"price": "0"}, "ORDER_INVALID_PRICE", "price"),
        ({"type": "market", "time_in_force": "ioc"}, "ORDER_PRICE_NOT_ALLOWED", "price"),
        ({"time_in_force": "gtd"}, "ORDER_EXPIRY_REQUIRED", "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00Z"}, "ORDER_EXPIRY_NOT_ALLOWED", "expires_at"),
        # A post-only order must rest; IOC and FOK orders never do.
        (
            {"time_in_force": "ioc", "post_only": True},
            "ORDER_POST_ONLY_TIME_IN_FORCE",
            "time_in_force",
        ),
        (
            {"time_in_force": "fok", "post_only": True},
            "ORDER_POST_ONLY_TIME_IN_FORCE",
            "time_in_force",
        ),
    ],
)
def test_an_order_breaking_a_rule_is_refused_with_its_code_and_field(
    api, future, row_counts, overrides, code, field
):
    before = row_counts()
    body = {**limit_order(future), **overrides}
    if overrides.get("price", "") is None:
        del body["price"]

    response = api.post(ORDERS, body, format="json")

    assert response.status_code == 422, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)
    assert row_counts() == replace(before, rejections=before.rejections + 1)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"side": "hold"}, "side"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "many"}, "quantity"),
        # Quantities are JSON integers: a float, a string of digits or a boolean is refused.
        ({"quantity": 3.0}, "quantity"),
        ({"quantity": 2.5}, "quantity"),
        ({"quantity": "3"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"price": "2.4500001"}, "price"),  # more decimals than any price has
        ({"price": 2.45}, "price"),  # a JSON number: prices are strings
        ({"price": "-2.45"}, "price"),
        ({"price": "a lot"}, "price"),
        ({"price": ""}, "price"),  # not read as a price left out
        ({"time_in_force": "gtd", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # naive
        ({"client_order_id": "x" * 65}, "client_order_id"),
        # Text is a JSON string: a number is not read as its digits ("100.0" would never be
        # found again by ?client_order_id=100 after a lost answer).
        ({"client_order_id": 100.0}, "client_order_id"),
        ({"client_order_id": 7}, "client_order_id"),
        ({"instrument": 12}, "instrument"),
        # A flag is a JSON boolean: not 0, 1 or "true".
        ({"post_only": 0}, "post_only"),
        ({"post_only": "true"}, "post_only"),
        ({"instrument": None}, "instrument"),
    ],
)
def test_malformed_input_is_refused_before_the_exchange_sees_it(
    api, future, row_counts, overrides, field
):
    before = row_counts()

    response = api.post(ORDERS, {**limit_order(future), **overrides}, format="json")

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)
    assert row_counts() == before


def test_an_order_on_an_unknown_instrument_is_not_found(api, future, row_counts):
    before = row_counts()

    response = api.post(ORDERS, {**limit_order(future), "instrument": "NOPE-2099"}, format="json")

    assert response.status_code == 404
    assert error_of(response)["code"] == "ORDER_UNKNOWN_INSTRUMENT"
    assert error_of(response)["field"] == "instrument"
    assert row_counts() == replace(before, rejections=before.rejections + 1)


def test_an_order_without_the_funds_is_refused_and_writes_only_its_rejection(
    future, unfunded, row_counts
):
    # given an organization that deposited nothing
    api = client_for(unfunded)
    before, ledger_before = row_counts(), ledger_rows()

    # when it bids
    response = api.post(ORDERS, limit_order(future), format="json")

    # then the risk refusal names what is missing, in dollars (not the ledger's micro-dollars
    # nor its account codes); no order, command or hold was written
    assert response.status_code == 422
    assert error_of(response)["code"] == "RISK_INSUFFICIENT_FUNDS"
    assert error_of(response)["field"] == "quantity"
    margin = future_margin("2.450", future.gpu_hours_per_contract)
    fee = max(fee_rate("future", "maker"), fee_rate("future", "taker"))
    assert error_of(response)["message"] == (
        f"The order needs {usd_figure(3 * (margin + fee))} USD available; the account has "
        "0.00 USD available."
    )
    assert row_counts() == replace(before, rejections=before.rejections + 1)
    assert ledger_rows() == ledger_before
    assert not Order.objects.filter(account=unfunded).exists()


def test_an_offer_on_a_block_the_organization_does_not_hold_is_refused(
    api, listing, buyer, row_counts
):
    # given Lumen holding GPU-hours of the listed block's SKU, region and months, from a block
    # of its own (the audit: Northwind sold on Lumen's listing with its RoCE block's hours)
    reservation = listing.reservation
    capacity_register(
        provider=reservation.provider,
        holder=buyer.organization,
        cluster="lm-roce",
        sku=reservation.sku,
        region=reservation.region,
        starts_at=reservation.starts_at,
        ends_at=reservation.ends_at,
        gpus=8,
        interconnect="roce",
        contiguous_block_gpus=8,
    )
    before, ledger_before = row_counts(), ledger_rows()

    # when it offers them on Northwind's listing
    response = api.post(
        ORDERS, limit_order(listing, side="sell", quantity=8, price="2.30"), format="json"
    )

    # then it is refused: it holds none of that block; nothing but the rejection is written
    assert response.status_code == 422, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "RISK_BLOCK_NOT_HELD",
        "quantity",
    )
    assert "holds 0 contracts (GPUs) of block" in error_of(response)["message"]
    assert row_counts() == replace(before, rejections=before.rejections + 1)
    assert ledger_rows() == ledger_before


def test_an_organization_without_funds_is_refused_again_on_its_next_order(
    future, unfunded, row_counts
):
    """The first refusal's transaction opened the account's cash ledger account and rolled
    back; the next order, by the same caller (kept by the API for a moment), must not name
    the ledger account that is gone (it used to answer 500)."""
    api = client_for(unfunded)
    before = row_counts()

    first = api.post(ORDERS, limit_order(future), format="json")
    second = api.post(ORDERS, limit_order(future, side="sell"), format="json")

    assert (first.status_code, second.status_code) == (422, 422), second.content
    assert error_of(second)["code"] == "RISK_INSUFFICIENT_FUNDS"
    assert row_counts() == replace(before, rejections=before.rejections + 2)
    assert not LedgerAccount.objects.filter(code__startswith=f"trading:{unfunded.pk}:").exists()


# Self-trade prevention: the caller's own offers at 2.505 (3) and 2.510 (1), between others'.
SELF_TRADE_OUTCOMES = {
    # mode: (fills, the bid's status, done_reason, filled, cancelled, own offers left open)
    "cancel_newest": ([("2.500000", 2)], "cancelled", "self_trade", 2, 6, [3, 1]),
    "cancel_oldest": (
        [("2.500000", 2), ("2.505000", 2), ("2.510000", 4)],
        "filled",
        "filled",
        8,
        0,
        [0, 0],
    ),
    "cancel_both": ([("2.500000", 2)], "cancelled", "self_trade", 2, 6, [0, 1]),
    # Takes 3 off against the first offer and 1 against the second, trading between them: the
    # last of it went to self-trade prevention, so it ends cancelled with its fills kept.
    "decrement": ([("2.500000", 2), ("2.505000", 2)], "cancelled", "self_trade", 4, 4, [0, 0]),
}


@pytest.mark.parametrize("mode", sorted(SELF_TRADE_OUTCOMES))
def test_self_trade_prevention_meets_the_callers_offers_at_several_levels(
    api, future, buyer, seller, mode
):
    # given the book's offers, two of them the caller's own
    place(seller, future, "sell", 2, "2.500")
    own = [place(buyer, future, "sell", 3, "2.505")]
    place(seller, future, "sell", 2, "2.505")
    own.append(place(buyer, future, "sell", 1, "2.510"))
    place(seller, future, "sell", 4, "2.510")

    # when the caller bids for 8 through all three levels with the mode
    response = api.post(
        ORDERS,
        limit_order(future, quantity=8, price="2.510", self_trade_prevention=mode),
        format="json",
    )

    # then the taker's mode decides what trades and what is taken off, its own and the offers'
    fills, status, done_reason, filled, cancelled, own_open = SELF_TRADE_OUTCOMES[mode]
    assert response.status_code == 201, response.content
    body = response.json()
    assert [(fill["price"], fill["quantity"]) for fill in body["fills"]] == fills
    order = body["order"]
    assert (order["status"], order["done_reason"]) == (status, done_reason)
    assert (order["filled_quantity"], order["cancelled_quantity"]) == (filled, cancelled)
    assert body["resting_quantity"] == 0
    for offer in own:
        offer.refresh_from_db()
    assert [offer.open_quantity for offer in own] == own_open
    assert all(offer.done_reason in ("", "self_trade") for offer in own)
    assert not Trade.objects.filter(buyer_account=buyer, seller_account=buyer).exists()


def test_a_decrement_whose_last_contracts_trade_ends_filled_with_its_cancelled_part(
    api, future, buyer, seller
):
    # given the caller's own offer of 3 ahead of another's 5
    own = place(buyer, future, "sell", 3, "2.500")
    place(seller, future, "sell", 5, "2.505")

    # when it bids for 8 with decrement
    order = api.post(
        ORDERS,
        limit_order(future, quantity=8, price="2.505", self_trade_prevention="decrement"),
        format="json",
    ).json()["order"]

    # then 3 are taken off both and 5 trade: filled (its last contracts traded), 3 cancelled
    own.refresh_from_db()
    assert (order["status"], order["done_reason"]) == ("filled", "filled")
    assert (order["filled_quantity"], order["cancelled_quantity"]) == (5, 3)
    assert (own.status, own.done_reason, own.cancelled_quantity) == ("cancelled", "self_trade", 3)


# Client order ids ------------------------------------------------------------------------


def test_a_client_order_id_places_once_then_repeats_then_conflicts(api, future, buyer):
    body = limit_order(future, client_order_id="strategy-7:0001")

    first = api.post(ORDERS, body, format="json")
    again = api.post(ORDERS, body, format="json")
    different = api.post(ORDERS, {**body, "price": "2.440"}, format="json")

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    assert again.json().keys() == first.json().keys()
    assert again.json()["order"]["client_order_id"] == "strategy-7:0001"
    assert different.status_code == 409
    assert error_of(different)["code"] == "ORDER_CLIENT_ORDER_ID_CONFLICT"
    assert error_of(different)["field"] == "client_order_id"
    assert Order.objects.filter(account=buyer).count() == 1


def test_a_client_order_id_is_per_organization(api, seller_api, future, seller):
    # given the buyer used an id
    api.post(ORDERS, limit_order(future, client_order_id="same"), format="json")

    # when another organization uses it for a different order
    response = seller_api.post(
        ORDERS,
        limit_order(future, side="sell", price="2.600", client_order_id="same"),
        format="json",
    )

    # then that is a new order of its own
    assert response.status_code == 201, response.content
    assert Order.objects.get(pk=response.json()["order"]["id"]).account == seller


# Dry runs --------------------------------------------------------------------------------


def test_a_dry_run_reports_a_futures_collateral_and_writes_nothing(api, future, row_counts):
    before, ledger_before = row_counts(), ledger_rows()

    response = api.post(
        f"{ORDERS}?dry_run=true", limit_order(future, quantity=4, price="2.450"), format="json"
    )

    # then margin (the price scan of one contract) plus the larger fee, per contract
    assert response.status_code == 200, response.content
    margin = future_margin("2.450", future.gpu_hours_per_contract)
    fee = max(fee_rate("future", "maker"), fee_rate("future", "taker"))
    assert response.json() == {
        "dry_run": True,
        "instrument": future.symbol,
        "collateral": [{"asset": "USD", "amount": usd(4 * (margin + fee))}],
        "margin_per_contract": usd(margin),
        "fee_per_contract_max": usd(fee),
        "protection_price": None,
    }
    assert row_counts() == before
    assert ledger_rows() == ledger_before


def test_a_market_order_is_protected_from_the_best_price_still_in_the_book(
    api, future, seller, monkeypatch
):
    """A GTD offer whose time has passed is no longer in the market (the book leaves it out)
    even before the matcher sweeps it: the protection price was taken from it, 10% over an
    offer nobody could buy, so a market order found nothing at or under it and bought nothing
    of the offer the book showed."""
    # given a GTD offer at 2.000 that expires, and a lasting one at 2.600
    moment = datetime.now(UTC)
    place(
        seller,
        future,
        "sell",
        2,
        "2.000",
        time_in_force="gtd",
        expires_at=moment + timedelta(seconds=5),
    )
    place(seller, future, "sell", 2, "2.600")
    monkeypatch.setattr("django.utils.timezone.now", lambda: moment + timedelta(seconds=5))
    asks = api.get(f"/api/v1/instruments/{future.symbol}/book/").json()["asks"]

    # when a market order buys 2 once the first offer's time has come
    response = api.post(
        ORDERS,
        {"instrument": future.symbol, "side": "buy", "type": "market", "quantity": 2},
        format="json",
    )

    # then it is protected 10% over the offer the book shows, and buys it
    assert [level["price"] for level in asks] == ["2.600000"]
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["order"]["protection_price"] == "2.860000"
    assert [(fill["price"], fill["quantity"]) for fill in body["fills"]] == [("2.600000", 2)]
    assert body["market_remainder"] == 0


def test_a_market_order_against_only_offers_whose_time_passed_is_refused(
    api, future, seller, row_counts, monkeypatch
):
    # given the only offer is a GTD one whose time has come (the matcher has not swept it)
    moment = datetime.now(UTC)
    place(
        seller,
        future,
        "sell",
        2,
        "2.500",
        time_in_force="gtd",
        expires_at=moment + timedelta(seconds=5),
    )
    monkeypatch.setattr("django.utils.timezone.now", lambda: moment + timedelta(seconds=5))
    before = row_counts()

    # when a market order is placed
    response = api.post(
        ORDERS,
        {"instrument": future.symbol, "side": "buy", "type": "market", "quantity": 1},
        format="json",
    )

    # then it has nothing to fill against, as on an empty book: refused, no order written
    assert response.status_code == 422, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "RISK_NO_REFERENCE_PRICE",
        "type",
    )
    assert row_counts() == replace(before, rejections=before.rejections + 1)


def test_a_dry_run_of_a_market_order_uses_its_protection_price(api, future, seller, row_counts):
    # given an offer at 2.500
    place(seller, future, "sell", 1, "2.500")
    before = row_counts()

    response = api.post(
        f"{ORDERS}?dry_run=true",
        {
            "instrument": future.symbol,
            "side": "buy",
            "type": "market",
            "time_in_force": "fok",
            "quantity": 2,
        },
        format="json",
    )

    # then the collateral is that of a bid at the best offer moved by the market protection,
    # rounded up to the tick
    assert response.status_code == 200, response.content
    protection = Decimal("2.500") * (1 + Decimal(settings.EXCHANGE_MARKET_PROTECTION))
    protection = (protection / future.tick_size).to_integral_value(ROUND_CEILING)
    protection *= future.tick_size
    margin = future_margin(str(protection), future.gpu_hours_per_contract)
    fee = fee_rate("future", "taker")
    body = response.json()
    assert body["protection_price"] == str(protection.quantize(MICRO))
    assert body["margin_per_contract"] == usd(margin)
    assert body["collateral"] == [{"asset": "USD", "amount": usd(2 * (margin + fee))}]
    assert row_counts() == before


def test_a_dry_run_of_an_option_bid_holds_the_premium_and_the_fee(api, call):
    response = api.post(
        f"{ORDERS}?dry_run=true",
        limit_order(call, quantity=2, price="0.100"),
        format="json",
    )

    assert response.status_code == 200, response.content
    premium = Decimal("0.100") * call.gpu_hours_per_contract
    fee = max(fee_rate("option", "maker"), fee_rate("option", "taker"))
    body = response.json()
    assert body["collateral"] == [{"asset": "USD", "amount": usd(2 * (premium + fee))}]
    assert (body["margin_per_contract"], body["fee_per_contract_max"]) == (
        usd(Decimal(0)),
        usd(fee),
    )


def test_a_dry_run_of_a_resale_offer_holds_gpu_hours_of_each_month(seller_api, listing, row_counts):
    before, ledger_before = row_counts(), ledger_rows()

    response = seller_api.post(
        f"{ORDERS}?dry_run=true",
        limit_order(listing, side="sell", quantity=8, price="2.30"),
        format="json",
    )

    # then GPU-hours of every month of the term, as integers; the fee is on the notional
    assert response.status_code == 200, response.content
    reservation = listing.reservation
    expected = [
        {
            "asset": f"GPUH-{listing.sku.code}-{listing.region.code}-{part.month:%Y%m}",
            "amount": 8 * part.hours,
        }
        for part in hours_by_month(reservation.starts_at, reservation.ends_at)
        if part.hours
    ]
    body = response.json()
    assert body["collateral"] == expected
    highest = max(fee_rate("resale", "maker"), fee_rate("resale", "taker"))
    fee = up_to_micro(highest * Decimal("2.30") * listing.gpu_hours_per_contract)
    assert body["fee_per_contract_max"] == usd(fee)
    assert row_counts() == before
    assert ledger_rows() == ledger_before


def test_a_dry_run_refused_by_a_rule_answers_as_a_placement_and_records_nothing(
    api, future, row_counts
):
    before = row_counts()

    response = api.post(f"{ORDERS}?dry_run=true", limit_order(future, price="2.453"), format="json")

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "ORDER_PRICE_OFF_TICK",
        "price",
    )
    assert row_counts() == before  # not even a rejection record


def test_a_dry_run_without_the_funds_gives_the_placements_refusal(future, unfunded, row_counts):
    api = client_for(unfunded)
    before, ledger_before = row_counts(), ledger_rows()

    dry = api.post(f"{ORDERS}?dry_run=true", limit_order(future), format="json")

    assert dry.status_code == 422
    assert error_of(dry)["code"] == "RISK_INSUFFICIENT_FUNDS"
    assert row_counts() == before and ledger_rows() == ledger_before
    # the same envelope, message included, as placing the order
    real = api.post(ORDERS, limit_order(future), format="json")
    assert (real.status_code, real.json()) == (422, dry.json())


def test_a_dry_run_of_an_unknown_instrument_or_a_conflicting_id_is_refused(api, future, buyer):
    place(buyer, future, "buy", 1, "2.400", client_order_id="taken")

    unknown = api.post(
        f"{ORDERS}?dry_run=true", {**limit_order(future), "instrument": "NOPE"}, format="json"
    )
    conflict = api.post(
        f"{ORDERS}?dry_run=true", limit_order(future, client_order_id="taken"), format="json"
    )

    assert (unknown.status_code, error_of(unknown)["code"]) == (404, "ORDER_UNKNOWN_INSTRUMENT")
    assert (conflict.status_code, error_of(conflict)["code"]) == (
        409,
        "ORDER_CLIENT_ORDER_ID_CONFLICT",
    )


# Listing and reading orders --------------------------------------------------------------


def test_orders_are_listed_newest_first_with_filters(api, futures, buyer, seller):
    # given orders on two futures, both sides, some finished
    first, second = futures
    bid = place(buyer, first, "buy", 1, "2.400")
    offer = place(buyer, first, "sell", 1, "2.600")
    other = place(buyer, second, "buy", 2, "2.300")
    cancelled = place(buyer, second, "buy", 1, "2.200")
    order_cancel(order=cancelled)
    place(seller, first, "sell", 1, "2.700")  # not the buyer's

    def ids(query: str) -> list[int]:
        response = api.get(f"{ORDERS}{query}")
        assert response.status_code == 200, response.content
        return [order["id"] for order in response.json()["results"]]

    assert ids("") == [cancelled.pk, other.pk, offer.pk, bid.pk]
    assert ids("?status=live") == [other.pk, offer.pk, bid.pk]
    assert ids("?status=cancelled") == [cancelled.pk]
    assert ids("?status=done") == [cancelled.pk]
    assert ids(f"?instrument={second.symbol}") == [cancelled.pk, other.pk]
    assert ids(f"?instrument={first.symbol}&side=sell") == [offer.pk]


def test_an_order_is_found_by_its_client_order_id_within_the_organization(
    api, future, buyer, seller
):
    mine = place(buyer, future, "buy", 1, "2.400", client_order_id="q-1")
    place(buyer, future, "buy", 1, "2.395", client_order_id="q-2")
    place(seller, future, "sell", 1, "2.700", client_order_id="q-3")  # Not the buyer's.

    def ids(client_order_id: str) -> list[int]:
        response = api.get(ORDERS, {"client_order_id": client_order_id})
        assert response.status_code == 200, response.content
        return [order["id"] for order in response.json()["results"]]

    assert ids("q-1") == [mine.pk]
    assert ids("q-3") == []
    assert ids("Q-1") == []
    too_long = api.get(ORDERS, {"client_order_id": "x" * 65})
    assert (too_long.status_code, error_of(too_long)["field"]) == (400, "client_order_id")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=sleeping", "status"),
        ("status=", "status"),
        ("side=", "side"),
        ("side=long", "side"),
        ("limit=0", "limit"),
        ("instrument=", "instrument"),
        ("instrument=a%00b", "instrument"),
        # A filter takes one value: the last one does not silently win.
        ("status=live&status=done", "status"),
        ("side=buy&side=buy", "side"),
    ],
)
def test_a_bad_list_filter_is_refused(api, future, buyer, query, field):
    place(buyer, future, "buy", 1, "2.400")

    response = api.get(f"{ORDERS}?{query}")

    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)


def test_a_filter_holding_nul_is_refused_as_malformed(api, future):
    response = api.get(f"{ORDERS}?instrument=A%00B")

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "INVALID_INPUT",
        "message": "Codes and symbols hold no NUL character.",
        "field": "instrument",
    }


@pytest.mark.parametrize("path", [ORDERS, FILLS])
def test_an_unknown_instrument_filter_is_not_found_not_an_empty_list(api, future, path):
    # An instrument that does not exist is a mistake, not a filter that matches nothing: 404
    # with the field, as for an unknown symbol in an order's body.
    response = api.get(f"{path}?instrument=NOPE-2099")

    assert response.status_code == 404
    assert error_of(response) == {
        "code": "NOT_FOUND",
        "message": "No instrument NOPE-2099.",
        "field": "instrument",
    }


def test_orders_are_paginated_with_a_cursor(api, future, buyer):
    placed = [place(buyer, future, "buy", 1, f"2.{400 - 5 * step}").pk for step in range(5)]

    seen, url, pages = [], f"{ORDERS}?limit=2", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        page = response.json()
        seen += [order["id"] for order in page["results"]]
        url, pages = page["next"], pages + 1
        assert pages <= 3

    assert seen == sorted(placed, reverse=True)
    assert pages == 3


def test_an_invalid_cursor_is_not_found(api, future):
    response = api.get(f"{ORDERS}?cursor=garbage")

    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"


def test_an_order_is_read_by_its_id(api, future, buyer):
    order = place(buyer, future, "buy", 2, "2.400", client_order_id="mine")

    response = api.get(order_url(order.pk))

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["client_order_id"]) == (order.pk, "mine")
    assert response.json()["open_quantity"] == 2


def test_an_order_id_that_does_not_exist_is_not_found(api, future):
    for url in (order_url(999_999), order_url(2**70), order_url("abc"), order_url("١٢")):
        response = api.get(url)
        assert response.status_code == 404
        assert error_of(response)["code"] == "NOT_FOUND"


# Cancelling and replacing ----------------------------------------------------------------


def test_cancelling_an_order_answers_it_cancelled_and_twice_is_a_conflict(api, future, buyer):
    order = place(buyer, future, "buy", 2, "2.400")

    response = api.delete(order_url(order.pk))
    again = api.delete(order_url(order.pk))

    assert response.status_code == 200, response.content
    assert (
        response.json()["status"],
        response.json()["cancelled_quantity"],
        response.json()["done_reason"],
    ) == ("cancelled", 2, "user")
    assert again.status_code == 409
    assert (error_of(again)["code"], error_of(again)["field"]) == ("ORDER_NOT_LIVE", "order")
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED


def test_a_replace_to_zero_cancels_during_a_halt_as_delete_does(api, future, buyer):
    # given a resting bid on an instrument then halted
    order = place(buyer, future, "buy", 2, "2.400")
    instrument_halt(instrument=future, actor=None, reason="incident")

    # when it is replaced to zero (a price change is still refused)
    moved = api.post(
        f"{order_url(order.pk)}replace/", {"price": "2.405", "quantity": 2}, format="json"
    )
    response = api.post(
        f"{order_url(order.pk)}replace/", {"price": "2.400", "quantity": 0}, format="json"
    )

    # then it is cancelled, answered as a cancel by replace
    assert (moved.status_code, error_of(moved)["code"]) == (422, "ORDER_INSTRUMENT_HALTED")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["cancelled_quantity"], body["done_reason"]) == (
        "cancelled",
        2,
        "replaced_to_zero",
    )


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_a_replace_to_zero_cancels_during_a_halt(future, buyer, matcher):
    order = place(buyer, future, "buy", 2, "2.400")
    matcher.process_pending()
    instrument_halt(instrument=future, actor=None, reason="incident")

    with matching_in_thread(matcher):
        response = client_for(buyer).post(
            f"{order_url(order.pk)}replace/", {"price": "2.400", "quantity": 0}, format="json"
        )

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["done_reason"]) == (
        "cancelled",
        "replaced_to_zero",
    )


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_delete_answers_the_order_cancelled(future, buyer, matcher):
    order = place(buyer, future, "buy", 2, "2.400")
    matcher.process_pending()

    with matching_in_thread(matcher):
        response = client_for(buyer).delete(order_url(order.pk))

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["done_reason"]) == ("cancelled", "user")


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_a_replace_and_a_delete_answer_what_the_matcher_did(
    future, buyer, matcher
):
    """The web process heard of the order when it was placed (the matcher notifies the ids
    it wrote), and a replace or a cancel of it waits for its own command: the answers used to
    come at once, with the order as it was before (on PostgreSQL, where the process listens)."""
    api = client_for(buyer)
    with matching_in_thread(matcher):
        placed = api.post(
            "/api/v1/orders/",
            {"instrument": future.symbol, "side": "buy", "quantity": 2, "price": "2.400"},
            format="json",
        )
    assert placed.json()["order"]["status"] == "open", placed.content
    order_id = placed.json()["order"]["id"]

    with matching_in_thread(matcher, delay_seconds=0.3):
        replaced = api.post(
            f"{order_url(order_id)}replace/", {"price": "2.410", "quantity": 5}, format="json"
        )
    with matching_in_thread(matcher, delay_seconds=0.3):
        cancelled = api.delete(order_url(order_id))

    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["price"], replaced.json()["quantity"]) == ("2.410000", 5)
    assert cancelled.status_code == 200, cancelled.content
    assert (cancelled.json()["status"], cancelled.json()["done_reason"]) == ("cancelled", "user")


def test_replacing_an_order_changes_its_price_and_quantity(api, future, buyer):
    order = place(buyer, future, "buy", 2, "2.400")

    response = api.post(
        f"{order_url(order.pk)}replace/", {"price": "2.410", "quantity": 5}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["price"], body["quantity"], body["open_quantity"], body["status"]) == (
        "2.410000",
        5,
        5,
        "open",
    )
    order.refresh_from_db()
    assert (order.price, order.open_quantity) == (Decimal("2.41"), 5)


def test_a_replace_sets_the_open_quantity_and_keeps_the_queue_only_when_it_shrinks_in_place(
    api, future, buyer, seller, maker
):
    # given the caller's bid of 10 at 2.450, 4 of it filled, ahead of another's at that price
    order = place(buyer, future, "buy", 10, "2.450")
    place(seller, future, "sell", 4, "2.450")
    behind = place(maker, future, "buy", 5, "2.450")
    replace_url = f"{order_url(order.pk)}replace/"

    # when it is replaced to 3 at the same price, then an offer of 1 comes
    shrunk = api.post(replace_url, {"price": "2.450", "quantity": 3}, format="json").json()
    place(seller, future, "sell", 1, "2.450")

    # then 3 is what stays open (the 4 filled are kept), and the order kept its place
    assert (shrunk["status"], shrunk["filled_quantity"], shrunk["open_quantity"]) == (
        "partially_filled",
        4,
        3,
    )
    assert shrunk["quantity"] == 4 + 3
    order.refresh_from_db()
    behind.refresh_from_db()
    assert (order.filled_quantity, behind.filled_quantity) == (5, 0)

    # when it is sent away and back to 2.450 (or grows there), then an offer of 1 comes
    api.post(replace_url, {"price": "2.445", "quantity": 2}, format="json")
    api.post(replace_url, {"price": "2.450", "quantity": 2}, format="json")
    place(seller, future, "sell", 1, "2.450")

    # then it lost its place: the order behind it fills first
    order.refresh_from_db()
    behind.refresh_from_db()
    assert (order.filled_quantity, behind.filled_quantity) == (5, 1)
    reasons = [
        event["reason"] for event in api.get(f"{order_url(order.pk)}history/").json()["results"]
    ]
    assert reasons[:3] == ["replaced_lost_priority", "replaced_lost_priority", "replaced"]


def test_replacing_to_zero_cancels(api, future, buyer):
    order = place(buyer, future, "buy", 2, "2.400")

    response = api.post(
        f"{order_url(order.pk)}replace/", {"price": "2.400", "quantity": 0}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["done_reason"]) == (
        "cancelled",
        "replaced_to_zero",
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (ORDERS, '{"instrument": "%s", "side": "buy", "quantity": 1e2, "price": "2.450"}', None),
        (ORDERS, '{"instrument": "%s", "side": "buy", "quantity": 100.0, "price": "2.450"}', None),
        (
            "/api/v1/orders/batch/",
            '{"orders": [{"instrument": "%s", "side": "buy", "quantity": 1e2, "price": "2.450"}]}',
            "orders.0.quantity",
        ),
        (
            "/api/v1/orders/batch/",
            '{"orders": [{"instrument": "%s", "side": "buy", "quantity": 1, "price": "2.450",'
            ' "client_order_id": 0}]}',
            "orders.0.client_order_id",
        ),
    ],
    ids=["exponent", "point-zero", "batch", "batch-numeric-client-order-id"],
)
def test_a_quantity_written_as_a_float_is_refused_and_places_nothing(
    api, future, row_counts, path, body, field
):
    before = row_counts()

    response = api.post(path, body % future.symbol, content_type="application/json")

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "INVALID_INPUT",
        field or "quantity",
    )
    assert row_counts() == before


def test_a_replace_quantity_written_as_a_float_is_refused_and_leaves_the_order(api, future, buyer):
    order = place(buyer, future, "buy", 2, "2.400")

    response = api.post(
        f"{order_url(order.pk)}replace/",
        '{"price": "2.400", "quantity": 1e0}',
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "INVALID_INPUT",
        "quantity",
    )
    order.refresh_from_db()
    assert (order.price, order.open_quantity, order.status) == (Decimal("2.4"), 2, "open")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"price": "2.403", "quantity": 1}, 422, "ORDER_PRICE_OFF_TICK", "price"),
        ({"price": "2.400", "quantity": -1}, 400, "INVALID_INPUT", "quantity"),
        ({"quantity": 1}, 400, "INVALID_INPUT", "price"),
    ],
)
def test_a_bad_replace_is_refused_and_leaves_the_order(
    api, future, buyer, body, status, code, field
):
    order = place(buyer, future, "buy", 2, "2.400")

    response = api.post(f"{order_url(order.pk)}replace/", body, format="json")

    assert response.status_code == status
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)
    order.refresh_from_db()
    assert (order.price, order.open_quantity, order.status) == (Decimal("2.4"), 2, "open")


def test_raising_an_order_needs_only_the_collateral_it_adds(future, unfunded):
    """Until 2026-12-07 a replace that needed more than the order held held its whole new
    requirement beside the order's holds: an account with its cash mostly in one order could
    not raise it by a contract."""
    hours = future.gpu_hours_per_contract
    per_contract = future_margin("2.400", hours) + Decimal("0.50")
    # given an account whose cash holds 6 contracts' orders and a little more
    deposit_test_funds(account=unfunded, amount=per_contract * 7 - Decimal("1"), actor=None)
    api = client_for(unfunded)
    placed = api.post(ORDERS, limit_order(future, quantity=5, price="2.400"), format="json")
    order_id = placed.json()["order"]["id"]

    # when it raises the order to 6
    raised = api.post(
        f"{order_url(order_id)}replace/", {"price": "2.400", "quantity": 6}, format="json"
    )

    # then it is raised, holding the 6 contracts' collateral once
    assert raised.status_code == 200, raised.content
    assert raised.json()["open_quantity"] == 6
    usd_balance = api.get("/api/v1/account/balances/").json()[0]
    assert Decimal(usd_balance["pending"]) == 6 * per_contract
    # and one more contract than its cash can hold is refused, saying what the raise needs
    refused = api.post(
        f"{order_url(order_id)}replace/", {"price": "2.400", "quantity": 8}, format="json"
    )
    assert refused.status_code == 422
    assert error_of(refused)["code"] == "RISK_INSUFFICIENT_FUNDS"
    assert f"needs {usd_figure(2 * per_contract)} USD available" in error_of(refused)["message"]
    assert api.get(order_url(order_id)).json()["open_quantity"] == 6


def test_a_resale_holder_raises_its_offer_to_all_it_holds(seller_api, listing, seller):
    # given the holder of the block's 16 GPUs offering 8
    placed = seller_api.post(
        ORDERS, limit_order(listing, side="sell", quantity=8, price="2.500"), format="json"
    )
    order_id = placed.json()["order"]["id"]

    # when it raises the offer to the 16 it holds
    raised = seller_api.post(
        f"{order_url(order_id)}replace/", {"price": "2.500", "quantity": 16}, format="json"
    )

    # then it is raised (it was refused, RISK_INSUFFICIENT_ENTITLEMENT, the 8 counted twice)
    assert raised.status_code == 200, raised.content
    assert raised.json()["open_quantity"] == 16
    entitlements = {
        row["asset"]: row for row in seller_api.get("/api/v1/account/balances/").json()[1:]
    }
    assert entitlements and all(row["available"] == 0 for row in entitlements.values())


def test_a_replace_the_matcher_refuses_is_a_422_with_its_code(seller_api, future, buyer, seller):
    # given a post-only ask resting above a bid
    ask = place(seller, future, "sell", 2, "2.000", post_only=True)
    place(buyer, future, "buy", 2, "1.500")

    # when the ask is replaced to the bid's price, where it would trade
    response = seller_api.post(
        f"{order_url(ask.pk)}replace/", {"price": "1.500", "quantity": 2}, format="json"
    )

    # then the matcher's refusal is the answer, and the order is as it was
    assert response.status_code == 422, response.content
    error = error_of(response)
    assert (error["code"], error["field"]) == ("MATCHING_POST_ONLY_WOULD_CROSS", "price")
    assert "post-only" in error["message"]
    ask.refresh_from_db()
    assert (ask.price, ask.open_quantity, ask.status) == (Decimal("2"), 2, "open")


def test_an_orders_history_says_what_the_matcher_did_newest_first(api, future, buyer, seller):
    # given an order accepted, replaced twice (keeping then losing its place), partly filled
    # and cancelled
    order = place(buyer, future, "buy", 5, "2.400")
    api.post(f"{order_url(order.pk)}replace/", {"price": "2.400", "quantity": 4}, format="json")
    api.post(f"{order_url(order.pk)}replace/", {"price": "2.450", "quantity": 4}, format="json")
    place(seller, future, "sell", 1, "2.450")
    api.delete(order_url(order.pk))

    response = api.get(f"{order_url(order.pk)}history/")

    assert response.status_code == 200, response.content
    events = response.json()["results"]
    assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
        ("partially_filled", "cancelled", "user"),
        ("open", "partially_filled", "filled"),
        ("open", "open", "replaced_lost_priority"),
        ("open", "open", "replaced"),
        ("new", "open", "accepted"),
    ]
    sequences = [event["sequence"] for event in events]
    assert sequences == sorted(sequences, reverse=True) and len(set(sequences)) == 5
    assert all(event["at"].endswith("Z") for event in events)
    # Paginated like every list.
    first = api.get(f"{order_url(order.pk)}history/?limit=2").json()
    assert [e["reason"] for e in first["results"]] == ["user", "filled"]
    assert api.get(first["next"]).json()["results"][0]["reason"] == "replaced_lost_priority"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/orders/999999/history/", 404, "NOT_FOUND"),
        ("/api/v1/orders/abc/history/", 404, "NOT_FOUND"),
        ("/api/v1/orders/{order}/history/?limit=0", 400, "INVALID_INPUT"),
    ],
    ids=["no-such-order", "not-an-id", "bad-limit"],
)
def test_an_orders_history_refuses_what_is_not_the_callers(api, future, buyer, path, status, code):
    order = place(buyer, future, "buy", 1, "2.400")

    response = api.get(path.format(order=order.pk))

    assert (response.status_code, error_of(response)["code"]) == (status, code)


def test_replacing_a_finished_order_is_a_conflict(api, future, buyer):
    order = place(buyer, future, "buy", 2, "2.400")
    api.delete(order_url(order.pk))

    response = api.post(
        f"{order_url(order.pk)}replace/", {"price": "2.400", "quantity": 1}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "ORDER_NOT_LIVE"


def test_cancel_all_cancels_every_live_order(api, futures, buyer, seller):
    first, second = futures
    mine = [place(buyer, first, "buy", 1, "2.400"), place(buyer, second, "sell", 1, "2.600")]
    theirs = place(seller, first, "sell", 1, "2.700")

    response = api.post(CANCEL_ALL, {}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"cancelled": 2}
    assert {Order.objects.get(pk=order.pk).status for order in mine} == {"cancelled"}
    # The orders say why they went.
    assert {api.get(order_url(order.pk)).json()["done_reason"] for order in mine} == {"cancel_all"}
    theirs.refresh_from_db()
    assert theirs.status == Order.Status.OPEN
    # nothing left to cancel
    assert api.post(CANCEL_ALL, format="json").json() == {"cancelled": 0}


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_cancel_all_answers_once_the_orders_are_cancelled(
    futures, buyer, matcher
):
    first, second = futures
    mine = [place(buyer, first, "buy", 1, "2.400"), place(buyer, second, "sell", 1, "2.600")]
    matcher.process_pending()
    api = client_for(buyer)

    with matching_in_thread(matcher):
        response = api.post(CANCEL_ALL, {}, format="json")
        statuses = {Order.objects.get(pk=order.pk).status for order in mine}
        again = api.post(CANCEL_ALL, {}, format="json")

    assert response.json() == {"cancelled": 2}
    assert statuses == {"cancelled"}  # Done when the answer came, not in a later pass.
    assert again.json() == {"cancelled": 0}  # So a second one counts nothing twice.


def test_cancel_all_of_one_instrument_leaves_the_others(api, futures, buyer):
    first, second = futures
    kept = place(buyer, second, "buy", 1, "2.300")
    gone = [place(buyer, first, "buy", 1, "2.400"), place(buyer, first, "buy", 1, "2.395")]

    response = api.post(CANCEL_ALL, {"instrument": first.symbol}, format="json")

    assert response.json() == {"cancelled": 2}
    assert {Order.objects.get(pk=order.pk).status for order in gone} == {"cancelled"}
    kept.refresh_from_db()
    assert kept.status == Order.Status.OPEN


def test_cancel_all_of_an_unknown_instrument_is_not_found(api, future, buyer):
    kept = place(buyer, future, "buy", 1, "2.400")

    response = api.post(CANCEL_ALL, {"instrument": "NOPE"}, format="json")

    assert response.status_code == 404
    assert error_of(response)["code"] == "ORDER_UNKNOWN_INSTRUMENT"
    kept.refresh_from_db()
    assert kept.status == Order.Status.OPEN


# Cancel-all-after ------------------------------------------------------------------------

CANCEL_ALL_AFTER = "/api/v1/orders/cancel-all-after/"


def test_cancel_all_after_arms_reads_fires_and_disarms(api, future, buyer):
    order = place(buyer, future, "buy", 1, "2.400")
    assert api.get(CANCEL_ALL_AFTER).json() == {
        "armed": False,
        "timeout_seconds": 0,
        "fires_at": None,
        "armed_at": None,
    }

    armed = api.post(CANCEL_ALL_AFTER, {"timeout_seconds": 30}, format="json")

    assert armed.status_code == 200, armed.content
    body = armed.json()
    fires_at = datetime.fromisoformat(body["fires_at"])
    assert (body["armed"], body["timeout_seconds"]) == (True, 30)
    assert fires_at - datetime.fromisoformat(body["armed_at"]) == timedelta(seconds=30)
    assert api.get(CANCEL_ALL_AFTER).json() == body
    # Its time comes and the sweep runs: the order goes, the switch is disarmed.
    assert cancel_all_after_fire_due(now=fires_at) == 1
    fired = api.get(order_url(order.pk)).json()
    assert (fired["status"], fired["done_reason"]) == ("cancelled", "cancel_all_after")
    assert api.get(CANCEL_ALL_AFTER).json()["armed"] is False
    # Armed and disarmed by the client: nothing fires.
    kept = place(buyer, future, "buy", 1, "2.400")
    api.post(CANCEL_ALL_AFTER, {"timeout_seconds": 5}, format="json")
    assert (
        api.post(CANCEL_ALL_AFTER, {"timeout_seconds": 0}, format="json").json()["armed"] is False
    )
    assert cancel_all_after_fire_due(now=fires_at + timedelta(hours=1)) == 0
    assert Order.objects.get(pk=kept.pk).status == Order.Status.OPEN


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"timeout_seconds": 2}, 422, "ORDER_CANCEL_AFTER_TIMEOUT_INVALID"),
        ({"timeout_seconds": 86_401}, 422, "ORDER_CANCEL_AFTER_TIMEOUT_INVALID"),
        ({"timeout_seconds": -5}, 422, "ORDER_CANCEL_AFTER_TIMEOUT_INVALID"),
        ({"timeout_seconds": "soon"}, 400, "INVALID_INPUT"),
        ({"timeout_seconds": 30.0}, 400, "INVALID_INPUT"),
        ({"timeout_seconds": "30"}, 400, "INVALID_INPUT"),
        ({}, 400, "INVALID_INPUT"),
    ],
    ids=["too-short", "too-long", "negative", "not-a-number", "float", "string", "missing"],
)
def test_cancel_all_after_refuses_a_bad_timeout_naming_the_field(api, buyer, body, status, code):
    response = api.post(CANCEL_ALL_AFTER, body, format="json")

    assert response.status_code == status, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, "timeout_seconds")
    assert api.get(CANCEL_ALL_AFTER).json()["armed"] is False


def test_cancel_all_after_reads_with_read_and_arms_with_trade(buyer):
    reader = client_for(buyer, scopes=(READ,))

    assert reader.get(CANCEL_ALL_AFTER).status_code == 200
    refused = reader.post(CANCEL_ALL_AFTER, {"timeout_seconds": 30}, format="json")
    assert refused.status_code == 403
    assert reader.get(CANCEL_ALL_AFTER).json()["armed"] is False


# Fills -----------------------------------------------------------------------------------


def test_fills_show_each_sides_fee_and_liquidity(api, seller_api, futures, buyer, seller):
    first, second = futures
    maker = place(seller, first, "sell", 3, "2.500")
    taker = place(buyer, first, "buy", 2, "2.500")  # fills 2 of the offer
    place(seller, second, "sell", 1, "2.300")
    other = place(buyer, second, "buy", 1, "2.300")

    buyer_fills = api.get(FILLS).json()["results"]
    seller_fills = seller_api.get(f"{FILLS}?instrument={first.symbol}").json()["results"]

    assert [(fill["order_id"], fill["liquidity"], fill["fee"]) for fill in buyer_fills] == [
        (other.pk, "taker", usd(fee_rate("future", "taker"))),
        (taker.pk, "taker", usd(2 * fee_rate("future", "taker"))),
    ]
    assert seller_fills == [
        {
            "trade_sequence": seller_fills[0]["trade_sequence"],
            "order_id": maker.pk,
            "instrument": first.symbol,
            "side": "sell",
            "price": "2.500000",
            "quantity": 2,
            "fee": usd(2 * fee_rate("future", "maker")),
            "liquidity": "maker",
            "executed_at": seller_fills[0]["executed_at"],
        }
    ]
    by_order = api.get(f"{FILLS}?order={taker.pk}").json()["results"]
    assert [fill["order_id"] for fill in by_order] == [taker.pk]
    # The other side's order id is not the buyer's to filter by: it is refused exactly as an
    # id that is no order at all, so the answer tells nothing of the other's orders.
    missing = Order.objects.order_by("-id").first().pk + 1000
    for client, order_id in ((api, maker.pk), (seller_api, taker.pk), (api, missing)):
        response = client.get(f"{FILLS}?order={order_id}")
        assert response.status_code == 404
        assert error_of(response) == {
            "code": "NOT_FOUND",
            "message": f"No order {order_id} among the organization's orders.",
            "field": "order",
        }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("instrument=", "instrument"),
        ("order=", "order"),
        ("since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z", "until"),
    ],
)
def test_a_bad_fill_filter_is_refused(api, future, buyer, seller, query, field):
    place(seller, future, "sell", 1, "2.500")
    place(buyer, future, "buy", 1, "2.500")

    response = api.get(f"{FILLS}?{query}")

    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)


def test_a_resale_fill_fee_is_on_the_notional_rounded_up(api, listing, seller):
    place(seller, listing, "sell", 8, "2.30")

    response = api.post(ORDERS, limit_order(listing, quantity=8, price="2.30"), format="json")

    assert response.status_code == 201, response.content
    notional = Decimal("2.30") * 8 * listing.gpu_hours_per_contract
    fee = up_to_micro(fee_rate("resale", "taker") * notional)
    assert [fill["fee"] for fill in response.json()["fills"]] == [usd(fee)]


def test_fills_are_paginated_with_a_cursor(api, future, buyer, seller):
    for _ in range(3):
        place(seller, future, "sell", 1, "2.500")
        place(buyer, future, "buy", 1, "2.500")

    first = api.get(f"{FILLS}?limit=2").json()
    second = api.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1
    sequences = [fill["trade_sequence"] for fill in first["results"] + second["results"]]
    assert sequences == sorted(sequences, reverse=True)
    assert second["next"] is None


def _quote(moment: datetime) -> str:
    return moment.isoformat().replace("+", "%2B")


def test_fills_and_changed_orders_are_listed_since_a_time_to_catch_up(api, future, buyer, seller):
    # given three trades an hour apart, and an order that changed only in the first hour
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    trades, orders = [], []
    for hour in range(3):
        place(seller, future, "sell", 1, "2.500")
        orders.append(place(buyer, future, "buy", 1, "2.500"))
        trade = Trade.objects.order_by("-id").first()
        Trade.objects.filter(pk=trade.pk).update(executed_at=start + timedelta(hours=hour))
        Order.objects.filter(pk=orders[-1].pk).update(updated_at=start + timedelta(hours=hour))
        trades.append(trade)
    resting = place(buyer, future, "buy", 1, "2.400")  # Changed now.

    def sequences(query: str) -> list[int]:
        response = api.get(f"{FILLS}{query}")
        assert response.status_code == 200, response.content
        return [fill["trade_sequence"] for fill in response.json()["results"]]

    def order_ids(query: str) -> list[int]:
        response = api.get(f"{ORDERS}{query}")
        assert response.status_code == 200, response.content
        return [order["id"] for order in response.json()["results"]]

    one_hour = _quote(start + timedelta(hours=1))
    assert sequences(f"?since={one_hour}") == [trades[2].sequence, trades[1].sequence]
    assert sequences(f"?until={one_hour}") == [trades[0].sequence]
    assert sequences(f"?since={_quote(start)}&until={one_hour}") == [trades[0].sequence]
    # Another zone names the same moment.
    paris = (start + timedelta(hours=2)).astimezone(timezone(timedelta(hours=1)))
    assert sequences(f"?since={_quote(paris)}") == [trades[2].sequence]
    assert order_ids(f"?updated_since={one_hour}") == [resting.pk, orders[2].pk, orders[1].pk]
    assert order_ids(f"?updated_since={one_hour}&status=live") == [resting.pk]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"{FILLS}?since=2026-12-01T09:00:00", "since"),
        (f"{FILLS}?until=yesterday", "until"),
        (f"{FILLS}?since=2026-12-01T10:00:00Z&until=2026-12-01T10:00:00Z", "until"),
        (f"{FILLS}?since=2026-12-01T10:00:00Z&until=2026-12-01T09:00:00Z", "until"),
        (f"{FILLS}?since=", "since"),
        (f"{ORDERS}?updated_since=2026-12-01T09:00:00", "updated_since"),
        (f"{ORDERS}?updated_since=2026-13-01T09:00:00Z", "updated_since"),
    ],
    ids=["naive", "not-a-time", "empty-range", "reversed", "empty", "orders-naive", "no-month"],
)
def test_a_bad_time_filter_is_refused_naming_it(api, url, field):
    response = api.get(url)

    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("INVALID_INPUT", field)


# Scopes and organizations ----------------------------------------------------------------


def test_a_read_only_key_reads_but_cannot_trade(future, buyer, row_counts):
    order = place(buyer, future, "buy", 1, "2.400")
    reader = client_for(buyer, scopes=(READ,))
    before = row_counts()

    writes = [
        reader.post(ORDERS, limit_order(future), format="json"),
        reader.post(f"{ORDERS}?dry_run=true", limit_order(future), format="json"),
        reader.delete(order_url(order.pk)),
        reader.post(
            f"{order_url(order.pk)}replace/", {"price": "2.4", "quantity": 1}, format="json"
        ),
        reader.post(CANCEL_ALL, {}, format="json"),
    ]

    for response in writes:
        assert response.status_code == 403, response.content
        assert error_of(response)["code"] == "AUTH_SCOPE_MISSING"
    assert row_counts() == before
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN
    assert reader.get(ORDERS).status_code == 200
    assert reader.get(order_url(order.pk)).status_code == 200
    assert reader.get(FILLS).status_code == 200


def test_a_trade_only_key_cannot_read_orders(future, buyer):
    trader = client_for(buyer, scopes=(TRADE,))

    order = place(buyer, future, "buy", 1, "2.400")
    for url in (ORDERS, FILLS, f"{order_url(order.pk)}history/"):
        response = trader.get(url)
        assert response.status_code == 403
        assert error_of(response)["code"] == "AUTH_SCOPE_MISSING"


def test_without_a_key_nothing_is_answered(future):
    response = APIClient().post(ORDERS, limit_order(future), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "AUTH_REQUIRED"


def test_another_organizations_orders_and_fills_do_not_exist(api, future, buyer, seller):
    # given the seller's resting order and a trade between the two
    theirs = place(seller, future, "sell", 3, "2.500")
    place(buyer, future, "buy", 1, "2.500")
    intruder = client_for(
        account_main(
            organization_create(slug="intruder", name="Intruder", kind=Organization.Kind.STARTUP)
        )
    )

    # then the intruder can neither see nor touch it
    responses = [
        intruder.get(order_url(theirs.pk)),
        intruder.delete(order_url(theirs.pk)),
        intruder.post(
            f"{order_url(theirs.pk)}replace/", {"price": "2.505", "quantity": 1}, format="json"
        ),
    ]
    for response in responses:
        assert response.status_code == 404, response.content
        assert error_of(response)["code"] == "NOT_FOUND"
    assert intruder.get(ORDERS).json()["results"] == []
    assert intruder.get(FILLS).json()["results"] == []
    by_their_order = intruder.get(f"{FILLS}?order={theirs.pk}")  # As if there were no order.
    assert (by_their_order.status_code, error_of(by_their_order)["field"]) == (404, "order")
    assert intruder.post(CANCEL_ALL, {}, format="json").json() == {"cancelled": 0}
    theirs.refresh_from_db()
    assert (theirs.status, theirs.price, theirs.open_quantity) == (
        "partially_filled",
        Decimal("2.5"),
        2,
    )
    # and the buyer sees its own fill only, not the seller's side of the trade
    assert [fill["liquidity"] for fill in api.get(FILLS).json()["results"]] == ["taker"]
    assert theirs.pk not in [order["id"] for order in api.get(ORDERS).json()["results"]]


@pytest.mark.django_db(transaction=True)
def test_with_an_external_matcher_the_answer_waits_for_the_matchers_outcome(
    future, buyer, seller, matcher
):
    """The place call waits (up to EXCHANGE_API_MATCH_WAIT_SECONDS) for the matcher, here a
    thread running the production loop's step, so the answer has the fills."""
    from exchange.services.orders import order_place

    order_place(account=seller, instrument=future, side="sell", quantity=2, price=Decimal("2.50"))
    matcher.process_pending()
    with matching_in_thread(matcher):
        response = client_for(buyer, ("read", "trade")).post(
            "/api/v1/orders/",
            {"instrument": future.symbol, "side": "buy", "quantity": 2, "price": "2.50"},
            format="json",
        )

    assert response.status_code == 201
    body = response.json()
    assert body["order"]["status"] == "filled"
    assert [(fill["price"], fill["quantity"]) for fill in body["fills"]] == [("2.500000", 2)]


def test_under_a_margin_call_the_api_only_takes_orders_that_reduce(
    future, buyer, seller, maker, api
):
    """The caller's account is read with its margin call in one query; the rule is the
    order service's: reduce-only until the call is cured."""
    from django.utils import timezone as django_timezone

    from exchange.models import MarginCall

    place(maker, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")  # The buyer is long 3.
    MarginCall.objects.create(
        account=buyer, trading_date=django_timezone.now().date(), required=10, maintenance=8, held=5
    )

    with statements() as run:
        more = api.post(
            ORDERS,
            {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": "2.40"},
            format="json",
        )
    less = api.post(
        ORDERS,
        {"instrument": future.symbol, "side": "sell", "quantity": 2, "price": "2.60"},
        format="json",
    )

    assert more.status_code == 422
    assert more.json()["error"]["code"] == "RISK_REDUCE_ONLY"
    margin_call_reads = [sql for sql in run if "exchange_margincall" in sql]
    assert len(margin_call_reads) == 1 and 'FROM "exchange_account"' in margin_call_reads[0]
    assert less.status_code == 201
    assert less.json()["order"]["status"] == "open"


def test_a_busy_caller_places_orders_without_reading_its_account_or_the_instrument(future, api):
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": "2.40"}
    assert api.post(ORDERS, order, format="json").status_code == 201

    with statements() as run:
        again = api.post(ORDERS, order, format="json")

    assert again.status_code == 201
    # (The inline matcher of the tests reads the instrument by id under its lock.)
    assert not [sql for sql in run if '"exchange_instrument"."symbol" = ' in sql]
    # The position limit's one statement sums the organization's positions and orders over its
    # accounts (``positions.organization_exposure``); the caller's account row is not read.
    assert not [sql for sql in run if 'FROM "exchange_account"' in sql and ":position:" not in sql]


def test_a_halt_made_in_this_process_reaches_the_next_order_at_once(future, api):
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": "2.40"}
    assert api.post(ORDERS, order, format="json").status_code == 201

    instrument_halt(instrument=future, actor=None, reason="test")
    refused = api.post(ORDERS, order, format="json")

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "ORDER_INSTRUMENT_HALTED"


def test_another_processs_halt_is_enforced_by_the_matcher_until_the_kept_row_expires(
    future, api, settings
):
    settings.EXCHANGE_REFERENCE_CACHE_SECONDS = 0.2
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": "2.40"}
    assert api.post(ORDERS, order, format="json").status_code == 201

    # Staff halt it from another process: no signal reaches this one.
    Instrument.objects.filter(pk=future.pk).update(status=Instrument.Status.HALTED)
    accepted = api.post(ORDERS, order, format="json")
    time.sleep(0.25)
    refused = api.post(ORDERS, order, format="json")

    assert accepted.status_code == 201  # Accepted on the kept row; the matcher refuses it.
    assert accepted.json()["order"]["status"] == "rejected"
    assert accepted.json()["order"]["reject_code"] == "ORDER_INSTRUMENT_HALTED"
    assert Hold.objects.filter(status=Hold.Status.PENDING).count() == 1  # The first order's.
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "ORDER_INSTRUMENT_HALTED"


# Time boundaries --------------------------------------------------------------------------


def test_an_order_after_the_close_of_the_last_trading_day_is_422_instrument_expired(
    future, api, settings, row_counts
):
    # given the future's last trading day is today and today's close has passed
    settings.EXCHANGE_SETTLEMENT_CLOSE = "00:00"
    Instrument.objects.filter(pk=future.pk).update(last_trading_day=datetime.now(UTC).date())
    before = row_counts()

    # when a client places an order on it
    refused = api.post(ORDERS, limit_order(future), format="json")

    # then it is refused with the named code and no order is written
    assert refused.status_code == 422
    assert (error_of(refused)["code"], error_of(refused)["field"]) == (
        "ORDER_INSTRUMENT_EXPIRED",
        "instrument",
    )
    assert row_counts().orders == before.orders


@pytest.mark.parametrize("from_now", [timedelta(0), timedelta(microseconds=-1), timedelta(days=-1)])
def test_a_gtd_order_expiring_now_or_before_is_422_expiry_in_past(
    future, api, row_counts, from_now, monkeypatch
):
    # given the exchange's clock stopped at one moment
    moment = datetime.now(UTC)
    monkeypatch.setattr("django.utils.timezone.now", lambda: moment)
    before = row_counts()

    # when a GTD order expiring at that moment, or before it, is placed
    refused = api.post(
        ORDERS,
        limit_order(future, time_in_force="gtd", expires_at=(moment + from_now).isoformat()),
        format="json",
    )

    # then it is refused: an order expiring when it arrives would never rest
    assert refused.status_code == 422
    assert (error_of(refused)["code"], error_of(refused)["field"]) == (
        "ORDER_EXPIRY_IN_PAST",
        "expires_at",
    )
    assert row_counts().orders == before.orders


@pytest.mark.django_db
def test_a_body_key_the_endpoint_does_not_take_is_refused_and_nothing_is_done(
    api, buyer, futures, row_counts
):
    # given a live bid in each of two instruments
    first, second = futures[0], futures[1]
    bids = [place(buyer, instrument, "buy", 1, "2.40") for instrument in (first, second)]
    before = row_counts()
    order = {"instrument": first.symbol, "side": "buy", "quantity": 1, "price": "2.40"}

    # when requests carry a key their endpoint does not take: a cancel-all's instrument
    # misspelt, an order or a batch's order with a flag no order takes, a replace with one
    answers = [
        api.post(CANCEL_ALL, {"symbol": first.symbol}, format="json"),
        api.post(ORDERS, {**order, "reduce_only": True}, format="json"),
        api.post(f"{ORDERS}?dry_run=true", {**order, "reduce_only": True}, format="json"),
        api.post(
            f"{ORDERS}batch/", {"orders": [order, {**order, "reduceOnly": True}]}, format="json"
        ),
        api.post(f"{ORDERS}batch/", {"orders": [order], "atomic": True}, format="json"),
        api.post(
            f"{order_url(bids[0].pk)}replace/",
            {"price": "2.45", "quantity": 1, "post_only": True},
            format="json",
        ),
        api.post(f"{ORDERS}batch/cancel/", {"order_ids": [bids[0].pk], "all": True}, format="json"),
        api.post(f"{ORDERS}cancel-all-after/", {"timeout_seconds": 60, "x": 1}, format="json"),
    ]

    # then each is malformed, naming the key, and nothing was placed, changed or cancelled
    assert [(answer.status_code, answer.json()["error"]["field"]) for answer in answers] == [
        (400, "symbol"),
        (400, "reduce_only"),
        (400, "reduce_only"),
        (400, "orders.1.reduceOnly"),
        (400, "atomic"),
        (400, "post_only"),
        (400, "all"),
        (400, "x"),
    ]
    assert {answer.json()["error"]["code"] for answer in answers} == {"INVALID_INPUT"}
    assert row_counts() == before
    for bid in bids:
        bid.refresh_from_db()
        assert (bid.status, bid.price) == (Order.Status.OPEN, Decimal("2.40"))
    assert api.get(f"{ORDERS}cancel-all-after/").json()["armed"] is False
