from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from exchange import calendar
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import (
    Account,
    Instrument,
    Order,
    OrderCommand,
    OrderRejection,
    OrderTransition,
)
from exchange.services.instruments import instrument_halt, instrument_set_status
from exchange.services.listing import StripSpec, futures_list_strip
from exchange.services.orders import (
    BATCH_ORDERS_MAX,
    Placement,
    order_place,
    order_replace,
    orders_submit,
)
from tests.exchange.support import listing_month

pytestmark = pytest.mark.django_db

PRICE = Decimal("2.45")


@pytest.fixture
def lot_two(sku, region) -> Instrument:
    (instrument,) = futures_list_strip(
        sku=sku,
        region=region,
        first_month=calendar.add_months(listing_month(), 6),
        months=1,
        spec=StripSpec(lot_size=2, price_max=Decimal("20")),
    )
    return instrument


def assert_rejected(row_counts, code, field=None, **order):
    """Place ``order``; it must be refused with ``code`` and leave only a rejection row."""
    before = row_counts()
    with pytest.raises(OrderRejected) as raised:
        order_place(**order)
    after = row_counts()
    assert raised.value.code == code
    if field is not None:
        assert raised.value.field == field
    assert (after.orders, after.commands, after.transitions, after.trades) == (
        before.orders,
        before.commands,
        before.transitions,
        before.trades,
    )
    assert after.rejections == before.rejections + 1
    rejection = OrderRejection.objects.order_by("-id").first()
    assert rejection.code == code
    assert rejection.account == order["account"]
    return rejection


def test_accepted_order_is_persisted_with_its_request(future, buyer, admin_user):
    order = order_place(
        account=buyer,
        instrument=future.symbol,
        side="buy",
        price=PRICE,
        quantity=5,
        client_order_id="abc-1",
        placed_by=admin_user,
    )

    assert order.pk is not None
    assert (order.side, order.type, order.time_in_force) == ("buy", "limit", "gtc")
    assert (order.price, order.quantity, order.open_quantity) == (PRICE, 5, 5)
    assert order.placed_by == admin_user
    assert order.client_order_id == "abc-1"
    command = OrderCommand.objects.get(order=order)
    assert (command.kind, command.status) == (OrderCommand.Kind.NEW, OrderCommand.Status.DONE)
    assert not OrderRejection.objects.exists()


def test_unknown_instrument_is_rejected(buyer, row_counts):
    rejection = assert_rejected(
        row_counts,
        OrderRejectCode.UNKNOWN_INSTRUMENT,
        "instrument",
        account=buyer,
        instrument="H100SXM-USEAST-209901",
        side="buy",
        price=PRICE,
        quantity=1,
    )

    assert rejection.instrument is None
    assert rejection.instrument_symbol == "H100SXM-USEAST-209901"
    assert rejection.request["price"] == "2.45"
    assert rejection.request["quantity"] == "1"


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"price": Decimal("2.451")}, OrderRejectCode.PRICE_OFF_TICK, "price"),
        ({"price": Decimal("2.4525")}, OrderRejectCode.PRICE_OFF_TICK, "price"),
        ({"price": Decimal("0")}, OrderRejectCode.INVALID_PRICE, "price"),
        ({"price": Decimal("-2.45")}, OrderRejectCode.INVALID_PRICE, "price"),
        ({"price": Decimal("NaN")}, OrderRejectCode.INVALID_PRICE, "price"),
        ({"price": 2.45}, OrderRejectCode.INVALID_PRICE, "price"),
        ({"price": Decimal("1000.005")}, OrderRejectCode.PRICE_OUT_OF_BAND, "price"),
        ({"quantity": 0}, OrderRejectCode.INVALID_QUANTITY, "quantity"),
        ({"quantity": -3}, OrderRejectCode.INVALID_QUANTITY, "quantity"),
        ({"quantity": 1.5}, OrderRejectCode.INVALID_QUANTITY, "quantity"),
        ({"quantity": True}, OrderRejectCode.INVALID_QUANTITY, "quantity"),
        ({"quantity": 100_001}, OrderRejectCode.QUANTITY_TOO_LARGE, "quantity"),
        ({"price": None}, OrderRejectCode.PRICE_REQUIRED, "price"),
        ({"type": "market", "time_in_force": "ioc"}, OrderRejectCode.PRICE_NOT_ALLOWED, "price"),
        (
            {"type": "market", "price": None, "time_in_force": "ioc", "post_only": True},
            OrderRejectCode.POST_ONLY_MARKET,
            "post_only",
        ),
        (
            {"time_in_force": "ioc", "post_only": True},
            OrderRejectCode.POST_ONLY_TIME_IN_FORCE,
            "time_in_force",
        ),
        (
            {"time_in_force": "fok", "post_only": True},
            OrderRejectCode.POST_ONLY_TIME_IN_FORCE,
            "time_in_force",
        ),
        ({"type": "market", "price": None}, OrderRejectCode.INVALID_TIME_IN_FORCE, "time_in_force"),
        (
            {"type": "market", "price": None, "time_in_force": "gtd"},
            OrderRejectCode.INVALID_TIME_IN_FORCE,
            "time_in_force",
        ),
        ({"time_in_force": "gtd"}, OrderRejectCode.EXPIRY_REQUIRED, "expires_at"),
        (
            {"time_in_force": "gtd", "expires_at": "past"},
            OrderRejectCode.EXPIRY_IN_PAST,
            "expires_at",
        ),
        ({"expires_at": "future"}, OrderRejectCode.EXPIRY_NOT_ALLOWED, "expires_at"),
        (
            {"time_in_force": "ioc", "expires_at": "future"},
            OrderRejectCode.EXPIRY_NOT_ALLOWED,
            "expires_at",
        ),
        ({"side": "BUY"}, OrderRejectCode.INVALID_SIDE, "side"),
        ({"side": "long"}, OrderRejectCode.INVALID_SIDE, "side"),
        ({"type": "stop"}, OrderRejectCode.INVALID_TYPE, "type"),
        ({"time_in_force": "day"}, OrderRejectCode.INVALID_TIME_IN_FORCE, "time_in_force"),
        (
            {"self_trade_prevention": "allow"},
            OrderRejectCode.INVALID_SELF_TRADE_PREVENTION,
            "self_trade_prevention",
        ),
        ({"client_order_id": ""}, OrderRejectCode.CLIENT_ORDER_ID_INVALID, "client_order_id"),
        ({"client_order_id": "x" * 65}, OrderRejectCode.CLIENT_ORDER_ID_INVALID, "client_order_id"),
    ],
)
def test_bad_order_is_rejected_with_a_named_code(future, buyer, row_counts, overrides, code, field):
    order = {"account": buyer, "instrument": future, "side": "buy", "price": PRICE, "quantity": 2}
    order.update(overrides)
    moments = {
        "past": timezone.now() - timedelta(seconds=1),
        "future": timezone.now() + timedelta(hours=1),
    }
    if isinstance(order.get("expires_at"), str):
        order["expires_at"] = moments[order["expires_at"]]

    rejection = assert_rejected(row_counts, code, field, **order)

    assert rejection.instrument == future
    assert rejection.field == field
    assert rejection.message


def test_a_price_above_the_band_names_the_maximum_in_plain_digits(future, buyer, row_counts):
    rejection = assert_rejected(
        row_counts,
        OrderRejectCode.PRICE_OUT_OF_BAND,
        "price",
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("1000.005"),
        quantity=2,
    )

    assert future.price_max == 1000
    assert rejection.message == "Price 1000.005 is above the band maximum of 1000 $/GPU-hr."


def test_price_at_the_band_maximum_is_accepted(future, buyer):
    order = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("1000"), quantity=1
    )

    assert order.status == Order.Status.OPEN


@pytest.mark.parametrize("quantity", [1, 3])
def test_quantity_off_the_lot_is_rejected(lot_two, buyer, row_counts, quantity):
    assert_rejected(
        row_counts,
        OrderRejectCode.QUANTITY_OFF_LOT,
        "quantity",
        account=buyer,
        instrument=lot_two,
        side="buy",
        price=PRICE,
        quantity=quantity,
    )


def test_whole_lots_are_accepted(lot_two, buyer):
    order = order_place(account=buyer, instrument=lot_two, side="buy", price=PRICE, quantity=4)

    assert (order.status, order.quantity) == (Order.Status.OPEN, 4)


def test_halted_instrument_refuses_orders(future, buyer, row_counts):
    instrument_halt(instrument=future, actor=None, reason="test")

    assert_rejected(
        row_counts,
        OrderRejectCode.INSTRUMENT_HALTED,
        "instrument",
        account=buyer,
        instrument=future,
        side="buy",
        price=PRICE,
        quantity=1,
    )


def test_expired_instrument_refuses_orders(future, buyer, row_counts):
    instrument_set_status(instrument=future, status=Instrument.Status.EXPIRED, actor=None)

    assert_rejected(
        row_counts,
        OrderRejectCode.INSTRUMENT_EXPIRED,
        "instrument",
        account=buyer,
        instrument=future,
        side="buy",
        price=PRICE,
        quantity=1,
    )


def test_instrument_past_its_last_trading_day_refuses_orders(future, buyer, row_counts):
    # given an instrument still marked active whose last trading day was yesterday
    yesterday = timezone.now().date() - timedelta(days=1)
    Instrument.objects.filter(pk=future.pk).update(last_trading_day=yesterday)

    assert_rejected(
        row_counts,
        OrderRejectCode.INSTRUMENT_EXPIRED,
        "instrument",
        account=buyer,
        instrument=future.symbol,
        side="buy",
        price=PRICE,
        quantity=1,
    )


def test_instrument_trades_on_its_last_trading_day_until_the_close(future, buyer, monkeypatch):
    # given an instrument whose last trading day is today, and the exchange's clock a second
    # before today's close (EXCHANGE_SETTLEMENT_CLOSE), whenever the test runs
    today = timezone.now().date()
    Instrument.objects.filter(pk=future.pk).update(last_trading_day=today)
    before_the_close = calendar.close_at(today) - timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: before_the_close)

    # when an order is placed
    order = order_place(
        account=buyer, instrument=future.symbol, side="buy", price=PRICE, quantity=1
    )

    # then it is accepted and rests
    assert order.status == Order.Status.OPEN


def test_instrument_no_longer_trades_after_the_close_of_its_last_trading_day(
    future, buyer, row_counts, settings
):
    """Its final settlement price is the closing window's, known from the close on: a trade
    after it would be settled at a price already known (a riskless profit against stale
    orders). Trading ends at the close, not at midnight or when the daily cycle expires it."""
    # given an instrument still active whose last trading day is today, and today's close past
    settings.EXCHANGE_SETTLEMENT_CLOSE = "00:00"
    Instrument.objects.filter(pk=future.pk).update(last_trading_day=timezone.now().date())

    # when an order is placed, then it is refused as on an expired instrument
    rejection = assert_rejected(
        row_counts,
        OrderRejectCode.INSTRUMENT_EXPIRED,
        "instrument",
        account=buyer,
        instrument=future.symbol,
        side="buy",
        price=PRICE,
        quantity=1,
    )
    assert "close of its last trading day" in rejection.message


@pytest.mark.parametrize("status", [Account.Status.SUSPENDED, Account.Status.CLOSED])
def test_inactive_account_cannot_place_orders(future, buyer, row_counts, status):
    buyer.status = status
    buyer.save()

    assert_rejected(
        row_counts,
        OrderRejectCode.ACCOUNT_INACTIVE,
        "account",
        account=buyer,
        instrument=future,
        side="buy",
        price=PRICE,
        quantity=1,
    )


# Client order ids ------------------------------------------------------------------------


def test_repeated_client_order_id_with_the_same_content_returns_the_order(
    future, buyer, row_counts
):
    # given
    expires_at = timezone.now() + timedelta(hours=2)
    request = {
        "account": buyer,
        "instrument": future,
        "side": "sell",
        "price": Decimal("2.50"),
        "quantity": 3,
        "time_in_force": "gtd",
        "expires_at": expires_at,
        "client_order_id": "retry-1",
    }
    first = order_place(**request)
    before = row_counts()

    # when the client retries (the price written differently but equal)
    again = order_place(**{**request, "price": Decimal("2.500"), "instrument": future.symbol})

    # then
    assert again.pk == first.pk
    assert row_counts() == before


@pytest.mark.parametrize(
    "change",
    [{"price": Decimal("2.55")}, {"quantity": 4}, {"side": "buy"}, {"time_in_force": "ioc"}],
)
def test_client_order_id_reused_for_another_order_is_refused(future, buyer, row_counts, change):
    request = {
        "account": buyer,
        "instrument": future,
        "side": "sell",
        "price": Decimal("2.50"),
        "quantity": 3,
        "client_order_id": "dup",
    }
    first = order_place(**request)

    rejection = assert_rejected(
        row_counts,
        OrderRejectCode.CLIENT_ORDER_ID_CONFLICT,
        "client_order_id",
        **{**request, **change},
    )

    assert rejection.client_order_id == "dup"
    assert Order.objects.get(client_order_id="dup") == first


def test_client_order_id_reused_on_another_instrument_is_refused(futures, buyer, row_counts):
    order_place(
        account=buyer,
        instrument=futures[0],
        side="buy",
        price=PRICE,
        quantity=1,
        client_order_id="a",
    )

    assert_rejected(
        row_counts,
        OrderRejectCode.CLIENT_ORDER_ID_CONFLICT,
        account=buyer,
        instrument=futures[1],
        side="buy",
        price=PRICE,
        quantity=1,
        client_order_id="a",
    )


def test_same_client_order_id_on_another_account_is_a_new_order(future, buyer, seller):
    first = order_place(
        account=buyer, instrument=future, side="buy", price=PRICE, quantity=1, client_order_id="x"
    )

    second = order_place(
        account=seller, instrument=future, side="buy", price=PRICE, quantity=1, client_order_id="x"
    )

    assert second.pk != first.pk
    assert Order.objects.filter(client_order_id="x").count() == 2
    assert not OrderRejection.objects.exists()


def test_accepted_order_records_who_placed_it_and_only_status_changes(future, buyer):
    # given a user of the buying organization
    user = get_user_model().objects.create_user("placer", password="x-placer-2026")

    # when the user places an order that rests
    order = order_place(
        account=buyer, instrument=future, side="buy", price=PRICE, quantity=1, placed_by=user
    )

    # then the order row records its creation; transitions record status changes from NEW on
    order.refresh_from_db()
    assert order.placed_by == user and order.created_at is not None
    transitions = list(OrderTransition.objects.filter(order=order))
    assert [(t.from_status, t.to_status, t.reason) for t in transitions] == [
        (Order.Status.NEW, Order.Status.OPEN, "accepted")
    ]
    assert order.commands.get().kind == OrderCommand.Kind.NEW


def test_retry_of_a_replaced_order_returns_it(future, buyer):
    # given an order placed with a client order id and then replaced
    request = {
        "account": buyer,
        "instrument": future,
        "side": "buy",
        "price": Decimal("2.50"),
        "quantity": 3,
        "client_order_id": "retry-after-replace",
    }
    first = order_place(**request)
    order_replace(order=first, price=Decimal("2.45"), quantity=5)

    # when the client retries the original request (say its first answer was lost)
    again = order_place(**request)

    # then it gets the same order, as replaced, and nothing new is written
    assert again.pk == first.pk
    assert (again.price, again.quantity) == (Decimal("2.45"), 5)
    assert Order.objects.filter(account=buyer).count() == 1


def test_expiry_without_time_zone_is_a_named_rejection(future, buyer, row_counts):
    naive = (timezone.now() + timedelta(hours=1)).replace(tzinfo=None)

    rejection = assert_rejected(
        row_counts,
        OrderRejectCode.EXPIRY_INVALID,
        "expires_at",
        account=buyer,
        instrument=future,
        side="buy",
        price=PRICE,
        quantity=1,
        time_in_force="gtd",
        expires_at=naive,
    )

    assert rejection.code == "ORDER_EXPIRY_INVALID"


def test_a_batch_places_each_order_on_its_own_in_order(future, buyer, row_counts):
    before = row_counts()
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": Decimal("2.40")}

    results = orders_submit(
        account=buyer,
        orders=[order, {**order, "price": Decimal("2.403")}, {**order, "quantity": 2}],
    )

    first, refused, last = results
    assert isinstance(first, Placement) and isinstance(last, Placement)
    assert first.order.pk < last.order.pk
    assert (first.order.status, last.order.quantity) == (Order.Status.OPEN, 2)
    assert isinstance(refused, OrderRejected)
    assert (refused.code, refused.field) == (OrderRejectCode.PRICE_OFF_TICK, "price")
    after = row_counts()
    assert (after.orders, after.rejections) == (before.orders + 2, before.rejections + 1)


def test_a_batch_larger_than_its_maximum_is_refused_whole(future, buyer, row_counts):
    before = row_counts()
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": Decimal("2.40")}

    with pytest.raises(OrderRejected) as refused:
        orders_submit(account=buyer, orders=[order] * (BATCH_ORDERS_MAX + 1))

    assert (refused.value.code, refused.value.field) == (OrderRejectCode.BATCH_TOO_LARGE, "orders")
    assert row_counts() == before
