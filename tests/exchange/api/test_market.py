"""Public market data: instruments, the L2 book, trades, candles, settlement prices, forward
curves and option chains."""

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from exchange import calendar
from exchange.models import Instrument, Region, Sku, Trade
from exchange.models import SettlementPrice as Settlement
from exchange.selectors import market_data
from exchange.services.instruments import instrument_set_status
from exchange.services.listing import futures_list_strip, options_list_chain
from pricing import black76
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db

API = "/api/v1"
RATE = float(settings.EXCHANGE_RISK_FREE_RATE)
DEFAULT_VOLATILITY = float(settings.EXCHANGE_DEFAULT_VOLATILITY)


def get(path: str, **query):
    return APIClient().get(f"{API}{path}", query)


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


def today():
    return timezone.now().date()


def trade(buyer, seller, instrument, quantity: int, price: str) -> Trade:
    """One trade: the seller rests, the buyer takes."""
    place(seller, instrument, "sell", quantity, price)
    place(buyer, instrument, "buy", quantity, price)
    return Trade.objects.filter(instrument=instrument).order_by("-sequence").first()


def symbols(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["symbol"] for row in response.json()]


# Instruments.


@pytest.fixture
def listed(futures, call) -> dict[str, Instrument]:
    """Two futures (the second expired), a call and a put at 2.50 on the first."""
    put = Instrument.objects.get(underlying=futures[0], option_type="put")
    instrument_set_status(instrument=futures[1], status=Instrument.Status.EXPIRED, actor=None)
    return {"front": futures[0], "expired": futures[1], "call": call, "put": put}


def test_instruments_lists_what_trades_with_its_terms(listed):
    response = get("/instruments/")

    front, call, put = listed["front"], listed["call"], listed["put"]
    assert symbols(response) == [front.symbol, call.symbol, put.symbol]
    future_row, call_row, _ = response.json()
    assert future_row["kind"] == "future"
    assert (future_row["sku"], future_row["region"], future_row["underlying"]) == (
        "H100SXM",
        "USEAST",
        None,
    )
    assert (future_row["tick_size"], future_row["strike"]) == ("0.005000", None)
    assert future_row["delivery_start"] == front.delivery_start.isoformat()
    assert future_row["gpu_hours_per_contract"] == calendar.hours_in_month(front.delivery_start)
    # Trading ends at the close of its last trading day, whatever its status until then.
    ends_at = calendar.close_at(front.last_trading_day)
    assert future_row["trading_ends_at"] == ends_at.isoformat().replace("+00:00", "Z")
    assert (call_row["underlying"], call_row["option_type"], call_row["strike"]) == (
        front.symbol,
        "call",
        "2.500000",
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "future"}, ["front"]),
        ({"kind": "option"}, ["call", "put"]),
        ({"kind": "resale"}, []),
        ({"sku": "H100SXM"}, ["front", "call", "put"]),
        ({"sku": "B200"}, []),
        ({"region": "USEAST"}, ["front", "call", "put"]),
        ({"region": "EUWEST"}, []),
        ({"status": "expired"}, ["expired"]),
        ({"status": "halted"}, []),
        ({"status": "active", "kind": "option"}, ["call", "put"]),
    ],
)
def test_instruments_filter(listed, query, expected):
    # given another SKU and region, with nothing listed
    Sku.objects.create(
        code="B200",
        name="NVIDIA B200",
        vendor="NVIDIA",
        generation="Blackwell",
        memory_gb=192,
        interconnect="nvlink",
        release_date=date(2024, 12, 1),
        power_watts=1000,
    )
    Region.objects.create(
        code="EUWEST", name="EU West", compliance=[], power_price_usd_per_kwh=Decimal("0.1")
    )

    response = get("/instruments/", **query)

    assert symbols(response) == [listed[name].symbol for name in expected]


def test_instruments_filter_by_delivery_month(listed):
    front, expired = listed["front"], listed["expired"]

    front_month = get("/instruments/", delivery_month=f"{front.delivery_start:%Y-%m}")
    expired_month = get(
        "/instruments/", delivery_month=f"{expired.delivery_start:%Y-%m}", status="expired"
    )
    other_month = get("/instruments/", delivery_month="2001-01")

    assert symbols(front_month) == [front.symbol, listed["call"].symbol, listed["put"].symbol]
    assert symbols(expired_month) == [expired.symbol]
    assert symbols(other_month) == []


def test_a_resale_listing_is_found_by_the_month_its_delivery_starts_in(listing):
    """Its block starts on any day (the 11th here): the filter matched only the month's first
    day, so a listing was never found by its month."""
    month = f"{listing.delivery_start:%Y-%m}"

    found = get("/instruments/", delivery_month=month, kind="resale")
    last_month_there_is = get("/instruments/", delivery_month="9999-12")

    assert listing.delivery_start.day == 11
    assert symbols(found) == [listing.symbol]
    assert (last_month_there_is.status_code, symbols(last_month_there_is)) == (200, [])


def test_a_halted_instrument_is_listed_with_its_status(listed):
    instrument_set_status(instrument=listed["call"], status=Instrument.Status.HALTED, actor=None)

    response = get("/instruments/", status="halted")

    assert symbols(response) == [listed["call"].symbol]
    assert response.json()[0]["status"] == "halted"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"kind": "swap"}, "kind"),
        ({"kind": "FUTURE"}, "kind"),
        ({"sku": "H100\x00"}, "sku"),  # PostgreSQL cannot compare text holding NUL.
        ({"region": "\x00"}, "region"),
        ({"delivery_month": "2026-13"}, "delivery_month"),
        ({"delivery_month": "202601"}, "delivery_month"),
        ({"delivery_month": "0000-01"}, "delivery_month"),
        ({"status": "gone"}, "status"),
    ],
)
def test_bad_instrument_filters_are_400_with_the_field(listed, query, field):
    response = get("/instruments/", **query)

    assert error_of(response) == (400, "INVALID_INPUT", field)


@pytest.mark.parametrize("field", ["sku", "region"])
def test_a_filter_naming_no_sku_or_region_is_404_with_the_field(listed, field):
    response = get("/instruments/", **{field: "NOPE"})

    assert error_of(response) == (404, "NOT_FOUND", field)


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        # Given empty: refused, not read as absent (which would list every status).
        ("/instruments/", "status=", "status"),
        ("/instruments/", "kind=", "kind"),
        ("/instruments/{symbol}/book/", "depth=", "depth"),
        ("/instruments/{symbol}/trades/", "limit=", "limit"),
        ("/instruments/{symbol}/candles/", "interval=", "interval"),
        ("/instruments/{symbol}/settlements/", "limit=", "limit"),
        # Given twice: refused, not decided by the last one.
        ("/instruments/", "status=active&status=expired", "status"),
        ("/instruments/{symbol}/book/", "depth=1&depth=5", "depth"),
        ("/instruments/{symbol}/trades/", "limit=1&limit=2", "limit"),
        ("/instruments/{symbol}/candles/", "interval=1h&interval=1d", "interval"),
        ("/instruments/{symbol}/settlements/", "limit=1&limit=2", "limit"),
    ],
)
def test_a_market_data_parameter_given_empty_or_twice_is_400_with_the_field(
    listed, path, query, field
):
    # Given a listed future; when a parameter is sent empty or twice
    url = f"{API}{path.format(symbol=listed['front'].symbol)}?{query}"

    response = APIClient().get(url)

    # Then it is malformed, as on every other list (docs/API.md), not a guess at what was meant
    assert error_of(response) == (400, "INVALID_INPUT", field)


def test_an_option_whose_future_is_halted_says_so_and_keeps_its_own_status(listed):
    """An option trades only while its future is not halted; its status stays its own (a
    resume of the future must not resume an option staff halted), and ``halted_by`` names the
    future that halts it."""
    front, call = listed["front"], listed["call"]
    instrument_set_status(instrument=front, status=Instrument.Status.HALTED, actor=None)

    rows = {row["symbol"]: row for row in get("/instruments/").json()}
    detail = get(f"/instruments/{call.symbol}/").json()

    assert (rows[call.symbol]["status"], rows[call.symbol]["halted_by"]) == (
        "active",
        front.symbol,
    )
    assert (detail["status"], detail["halted_by"]) == ("active", front.symbol)
    assert (rows[front.symbol]["status"], rows[front.symbol]["halted_by"]) == ("halted", None)

    instrument_set_status(instrument=front, status=Instrument.Status.ACTIVE, actor=None)
    assert get(f"/instruments/{call.symbol}/").json()["halted_by"] is None


def test_instrument_detail_and_404(listed):
    response = get(f"/instruments/{listed['put'].symbol}/")

    assert response.status_code == 200
    assert response.json()["option_type"] == "put"
    assert response.json()["settlement"] == "physical"
    # An expired instrument is still found by its symbol.
    assert get(f"/instruments/{listed['expired'].symbol}/").json()["status"] == "expired"
    assert error_of(get("/instruments/H100SXM-USEAST-209901/"))[:2] == (404, "NOT_FOUND")
    assert error_of(get("/instruments/not-a-symbol!/"))[:2] == (404, "NOT_FOUND")


# The book.


@pytest.fixture
def book(future, buyer, seller, maker, fourth):
    """Bids 2.45 x (5 + 3), 2.40 x 2, 2.30 x 7; asks 2.50 x 4 (after a trade of 1), 2.55 x 6."""
    place(buyer, future, "buy", 5, "2.45")
    place(maker, future, "buy", 3, "2.45")
    place(buyer, future, "buy", 2, "2.40")
    place(fourth, future, "buy", 7, "2.30")
    place(seller, future, "sell", 5, "2.50")
    place(seller, future, "sell", 6, "2.55")
    place(fourth, future, "buy", 1, "2.50")
    return future


def test_book_has_levels_best_first_with_sizes_and_order_counts(book):
    response = get(f"/instruments/{book.symbol}/book/")

    assert response.status_code == 200
    body = response.json()
    assert body["symbol"] == book.symbol
    assert body["bids"] == [
        {"price": "2.450000", "quantity": 8, "orders": 2},
        {"price": "2.400000", "quantity": 2, "orders": 1},
        {"price": "2.300000", "quantity": 7, "orders": 1},
    ]
    assert body["asks"] == [
        {"price": "2.500000", "quantity": 4, "orders": 1},
        {"price": "2.550000", "quantity": 6, "orders": 1},
    ]
    as_of = datetime.fromisoformat(body["as_of"])
    assert abs(as_of - timezone.now()) < timedelta(minutes=1)


def test_book_depth_limits_the_levels(book):
    body = get(f"/instruments/{book.symbol}/book/", depth=2).json()

    assert [level["price"] for level in body["bids"]] == ["2.450000", "2.400000"]
    assert [level["price"] for level in body["asks"]] == ["2.500000", "2.550000"]
    assert len(get(f"/instruments/{book.symbol}/book/", depth=1).json()["bids"]) == 1
    assert len(get(f"/instruments/{book.symbol}/book/", depth=50).json()["bids"]) == 3


def test_an_empty_book(futures):
    body = get(f"/instruments/{futures[1].symbol}/book/").json()

    assert (body["bids"], body["asks"]) == ([], [])


@pytest.mark.parametrize("depth", ["0", "51", "-1", "ten", "1.5"])
def test_book_depth_out_of_bounds_is_400(future, depth):
    response = get(f"/instruments/{future.symbol}/book/", depth=depth)

    assert error_of(response) == (400, "INVALID_INPUT", "depth")


def test_book_of_an_unknown_instrument_is_404(db):
    assert get("/instruments/H100SXM-USEAST-209901/book/").status_code == 404


# Trades.


def test_trades_are_newest_first(future, buyer, seller):
    first = trade(buyer, seller, future, 2, "2.40")
    second = trade(buyer, seller, future, 3, "2.45")
    place(buyer, future, "buy", 1, "2.30")  # Rests: not a trade.

    body = get(f"/instruments/{future.symbol}/trades/").json()

    assert [
        (row["sequence"], row["price"], row["quantity"], row["taker_side"]) for row in body
    ] == [
        (second.sequence, "2.450000", 3, "buy"),
        (first.sequence, "2.400000", 2, "buy"),
    ]
    assert datetime.fromisoformat(body[0]["executed_at"]) == second.executed_at


def test_trades_limit(future, buyer, seller):
    for price in ("2.40", "2.45", "2.50"):
        trade(buyer, seller, future, 1, price)

    body = get(f"/instruments/{future.symbol}/trades/", limit=2).json()

    assert [row["price"] for row in body] == ["2.500000", "2.450000"]
    assert len(get(f"/instruments/{future.symbol}/trades/", limit=200).json()) == 3


@pytest.mark.parametrize("limit", ["0", "201", "x"])
def test_trades_limit_out_of_bounds_is_400(future, limit):
    response = get(f"/instruments/{future.symbol}/trades/", limit=limit)

    assert error_of(response) == (400, "INVALID_INPUT", "limit")


# Candles.


def hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def hourly_trades(future, buyer, seller) -> datetime:
    """Six trades in three hours: two hours ago 2.40 x 2, 2.50 x 1, 2.45 x 3; an hour ago
    2.35 x 4; this hour 2.55 x 1, 2.60 x 2. Returns the start of this hour."""
    now = timezone.now()
    this_hour = hour_start(now)
    two_ago, one_ago = this_hour - timedelta(hours=2), this_hour - timedelta(hours=1)
    when = [
        two_ago + timedelta(minutes=10),
        two_ago + timedelta(minutes=20),
        two_ago + timedelta(minutes=50),
        one_ago + timedelta(minutes=5),
        None,  # Now.
        None,
    ]
    trades = [("2.40", 2), ("2.50", 1), ("2.45", 3), ("2.35", 4), ("2.55", 1), ("2.60", 2)]
    for (price, quantity), executed_at in zip(trades, when, strict=True):
        made = trade(buyer, seller, future, quantity, price)
        if executed_at is not None:
            Trade.objects.filter(pk=made.pk).update(executed_at=executed_at)
    return this_hour


def stamp(moment: datetime) -> str:
    """A UTC time as the API writes it."""
    return moment.isoformat().replace("+00:00", "Z")


def candle(start: datetime, o: str, h: str, low: str, c: str, volume: int, count: int) -> dict:
    return {
        "start": stamp(start),
        "open": o,
        "high": h,
        "low": low,
        "close": c,
        "volume": volume,
        "trades": count,
    }


def test_hourly_candles_are_the_trades_ohlcv_oldest_first(future, hourly_trades):
    this_hour = hourly_trades

    response = get(f"/instruments/{future.symbol}/candles/", interval="1h")

    assert response.status_code == 200
    assert response.json() == [
        candle(
            this_hour - timedelta(hours=2), "2.400000", "2.500000", "2.400000", "2.450000", 6, 3
        ),
        candle(
            this_hour - timedelta(hours=1), "2.350000", "2.350000", "2.350000", "2.350000", 4, 1
        ),
        candle(this_hour, "2.550000", "2.600000", "2.550000", "2.600000", 3, 2),
    ]


def test_candle_limit_counts_periods_back_from_now(future, hourly_trades):
    this_hour = hourly_trades

    last_two = get(f"/instruments/{future.symbol}/candles/", interval="1h", limit=2).json()
    current = get(f"/instruments/{future.symbol}/candles/", interval="1h", limit=1).json()

    assert [row["start"] for row in last_two] == [
        stamp(this_hour - timedelta(hours=1)),
        stamp(this_hour),
    ]
    assert [(row["open"], row["volume"]) for row in current] == [("2.550000", 3)]


def test_five_minute_and_daily_candles(future, hourly_trades):
    this_hour = hourly_trades

    five = get(f"/instruments/{future.symbol}/candles/", interval="5m").json()
    daily = get(f"/instruments/{future.symbol}/candles/", interval="1d").json()

    # Two hours ago, :10, :20 and :50 are three periods of five minutes; an hour ago, :05.
    two_ago, one_ago = this_hour - timedelta(hours=2), this_hour - timedelta(hours=1)
    assert [row["start"] for row in five[:4]] == [
        stamp(two_ago + timedelta(minutes=10)),
        stamp(two_ago + timedelta(minutes=20)),
        stamp(two_ago + timedelta(minutes=50)),
        stamp(one_ago + timedelta(minutes=5)),
    ]
    assert [row["volume"] for row in five[:4]] == [2, 1, 3, 4]
    assert sum(row["volume"] for row in five) == 13
    # Days are UTC days; the three hours may straddle midnight.
    days = {(this_hour - timedelta(hours=hours)).date() for hours in (0, 1, 2)}
    assert len(daily) == len(days)
    assert (sum(row["volume"] for row in daily), sum(row["trades"] for row in daily)) == (13, 6)
    assert (daily[0]["open"], daily[-1]["close"]) == ("2.400000", "2.600000")
    assert max(row["high"] for row in daily) == "2.600000"
    assert min(row["low"] for row in daily) == "2.350000"


def test_candles_past_the_trade_bound_keep_the_newest_periods(future, hourly_trades, monkeypatch):
    # given a bound of three trades on what one request reads
    monkeypatch.setattr(market_data, "CANDLE_TRADES_MAX", 3)
    this_hour = hourly_trades

    # when the candles of six trades are asked for
    body = get(f"/instruments/{future.symbol}/candles/", interval="1h").json()

    # then the newest three trades make them; the oldest period read, an hour ago, is left
    # out: it may have lost trades to the bound
    assert body == [candle(this_hour, "2.550000", "2.600000", "2.550000", "2.600000", 3, 2)]


def test_no_trades_no_candles(future):
    assert get(f"/instruments/{future.symbol}/candles/").json() == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"interval": "2h"}, "interval"),
        ({"interval": "1H"}, "interval"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
    ],
)
def test_bad_candle_queries_are_400(future, query, field):
    response = get(f"/instruments/{future.symbol}/candles/", **query)

    assert error_of(response) == (400, "INVALID_INPUT", field)


# Settlement prices.


def test_settlements_are_newest_first(future, call):
    # given three days of the future's prices and one of the call's
    for days_ago, price, source in ((3, "2.40", "vwap"), (2, "2.42", "mid"), (1, "2.45", "model")):
        Settlement.objects.create(
            instrument=future,
            trading_date=today() - timedelta(days=days_ago),
            price=Decimal(price),
            source=source,
            volume=days_ago,
        )
    Settlement.objects.create(
        instrument=call,
        trading_date=today() - timedelta(days=1),
        price=Decimal("0.120"),
        source="model",
        implied_volatility=Decimal("0.55"),
    )

    # when
    rows = get(f"/instruments/{future.symbol}/settlements/").json()
    latest = get(f"/instruments/{future.symbol}/settlements/", limit=1).json()
    options = get(f"/instruments/{call.symbol}/settlements/").json()

    # then
    assert rows == [
        {
            "trading_date": (today() - timedelta(days=days_ago)).isoformat(),
            "price": price,
            "source": source,
            "volume": days_ago,
            "implied_volatility": None,
        }
        for days_ago, price, source in (
            (1, "2.450000", "model"),
            (2, "2.420000", "mid"),
            (3, "2.400000", "vwap"),
        )
    ]
    assert latest == rows[:1]
    assert [(row["price"], row["implied_volatility"]) for row in options] == [
        ("0.120000", "0.550000")
    ]


@pytest.mark.parametrize("limit", ["0", "201"])
def test_settlements_limit_out_of_bounds_is_400(future, limit):
    response = get(f"/instruments/{future.symbol}/settlements/", limit=limit)

    assert error_of(response) == (400, "INVALID_INPUT", "limit")


def test_settlements_of_an_unknown_instrument_are_404(db):
    assert get("/instruments/H100SXM-USEAST-209901/settlements/").status_code == 404


# Forward curves.


@pytest.fixture
def strip(sku, region) -> list[Instrument]:
    return futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=5)


def test_curve_takes_settlement_then_mid_then_last_trade_then_model(strip, buyer, seller, maker):
    # given: month 1 settled today at 2.40 (and quoted, which the settlement beats); month 2
    # quoted 2.20 / 2.30; month 3 last traded at 2.10; month 4 settled yesterday at 2.05;
    # month 5 without any price
    Settlement.objects.create(
        instrument=strip[0], trading_date=today(), price=Decimal("2.40"), source="vwap"
    )
    place(maker, strip[0], "buy", 1, "2.00")
    place(maker, strip[0], "sell", 1, "3.00")
    place(buyer, strip[1], "buy", 1, "2.20")
    place(seller, strip[1], "sell", 1, "2.30")
    trade(buyer, seller, strip[2], 1, "2.10")
    Settlement.objects.create(
        instrument=strip[3],
        trading_date=today() - timedelta(days=1),
        price=Decimal("2.05"),
        source="model",
    )

    # when
    response = get("/curves/H100SXM/USEAST/")

    # then month 5 is flat from month 4 (too few months priced for a depreciation fit)
    assert response.status_code == 200
    body = response.json()
    assert (body["sku"], body["region"]) == ("H100SXM", "USEAST")
    assert body["points"] == [
        {
            "month": future.delivery_start.isoformat(),
            "symbol": future.symbol,
            "price": price,
            "source": source,
        }
        for future, price, source in zip(
            strip,
            ["2.400000", "2.250000", "2.100000", "2.050000", "2.050000"],
            ["settlement", "mid", "last_trade", "settlement", "model"],
            strict=True,
        )
    ]


def test_curve_interpolates_between_priced_months_on_the_tick(strip, buyer, seller):
    # given the first and third months traded at 2.40 and 2.20
    trade(buyer, seller, strip[0], 1, "2.40")
    trade(buyer, seller, strip[2], 1, "2.20")

    points = get("/curves/H100SXM/USEAST/").json()["points"]

    # then the second month lies between them (PCHIP is monotone), on the 0.005 tick
    between = Decimal(points[1]["price"])
    assert points[1]["source"] == "model"
    assert Decimal("2.20") < between < Decimal("2.40")
    assert between % Decimal("0.005") == 0


def test_a_month_settled_at_0_keeps_its_price_and_the_others_are_priced_without_it(
    strip, buyer, seller
):
    """pricing.curve takes prices above 0 only: a settlement price set to 0 made the curve (and
    the hedge, the curves page) a server error whenever a month needed the curve."""
    # given the first month settled at 0, the second and fourth traded at 2.40 and 2.20
    Settlement.objects.create(
        instrument=strip[0], trading_date=today(), price=Decimal("0"), source="vwap"
    )
    trade(buyer, seller, strip[1], 1, "2.40")
    trade(buyer, seller, strip[3], 1, "2.20")

    response = get("/curves/H100SXM/USEAST/")

    # then the first month is at its settlement of 0, and the third lies between the second
    # and fourth, as without it
    assert response.status_code == 200
    points = response.json()["points"]
    assert (points[0]["price"], points[0]["source"]) == ("0.000000", "settlement")
    assert points[2]["source"] == "model"
    assert Decimal("2.20") < Decimal(points[2]["price"]) < Decimal("2.40")


def test_curve_of_the_listed_futures_that_still_trade(strip, buyer, seller):
    trade(buyer, seller, strip[1], 1, "2.30")
    Instrument.objects.filter(pk=strip[0].pk).update(last_trading_day=today() - timedelta(days=1))

    points = get("/curves/H100SXM/USEAST/").json()["points"]

    assert [point["symbol"] for point in points] == [future.symbol for future in strip[1:]]


def test_on_its_last_trading_day_a_future_is_on_the_curve_until_the_close(
    strip, buyer, seller, monkeypatch
):
    """Its status stays active until the daily cycle expires it, but from the close on an order
    on it is refused (ORDER_INSTRUMENT_EXPIRED): the curve (and what a ticket stages from it)
    must not offer it."""
    # given the front future's last trading day is today, and two months traded
    trade(buyer, seller, strip[0], 1, "2.40")
    trade(buyer, seller, strip[1], 1, "2.30")
    Instrument.objects.filter(pk=strip[0].pk).update(last_trading_day=today())
    close = calendar.close_at(today())

    # when the curve is read a second before today's close, and at the close
    monkeypatch.setattr(timezone, "now", lambda: close - timedelta(seconds=1))
    before = get("/curves/H100SXM/USEAST/").json()["points"]
    monkeypatch.setattr(timezone, "now", lambda: close)
    after = get("/curves/H100SXM/USEAST/").json()["points"]

    # then the front future is on it until the close, and not from then on
    assert [point["symbol"] for point in before] == [future.symbol for future in strip]
    assert [point["symbol"] for point in after] == [future.symbol for future in strip[1:]]
    assert Instrument.objects.get(pk=strip[0].pk).status == Instrument.Status.ACTIVE


def test_curve_without_prices_or_futures_is_empty(strip, sku):
    assert get("/curves/H100SXM/USEAST/").json()["points"] == []


@pytest.mark.parametrize("path", ["/curves/NOPE/USEAST/", "/curves/H100SXM/NOPE/"])
def test_curve_of_an_unknown_sku_or_region_is_404(strip, path):
    assert error_of(get(path))[:2] == (404, "NOT_FOUND")


# Option chains.


@pytest.fixture
def chain(future) -> list[Instrument]:
    """Calls and puts at 2.25, 2.50 and 2.75 on the future."""
    return options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=1,
    )


def test_chain_fair_values_are_black76_at_the_settlement_price(future, chain, buyer, seller):
    # given the future settled today at 2.60, and the 2.50 call quoted 0.150 / 0.170
    Settlement.objects.create(
        instrument=future, trading_date=today(), price=Decimal("2.60"), source="vwap"
    )
    call = next(o for o in chain if o.option_type == "call" and o.strike == Decimal("2.5"))
    place(buyer, call, "buy", 1, "0.150")
    place(seller, call, "sell", 1, "0.170")

    # when
    response = get(f"/instruments/{future.symbol}/chain/")

    # then each option is valued with Black-76 at 2.60 and the default volatility, on its tick
    assert response.status_code == 200
    body = response.json()
    assert (body["future"], body["forward"]) == (future.symbol, "2.600000")
    assert [row["strike"] for row in body["rows"]] == ["2.250000", "2.500000", "2.750000"]
    years = (call.last_trading_day - today()).days / 365
    for row in body["rows"]:
        strike = float(row["strike"])
        for side, is_call in (("call", True), ("put", False)):
            expected = black76.price(2.6, strike, years, RATE, DEFAULT_VOLATILITY, is_call)
            assert abs(float(row[side]["fair_value"]) - expected) <= 0.0005, (strike, side)
            delta = black76.greeks(2.6, strike, years, RATE, DEFAULT_VOLATILITY, is_call).delta
            assert abs(float(row[side]["delta"]) - delta) <= 5e-7
            assert row[side]["symbol"].endswith(f"{'C' if is_call else 'P'}{row['strike'][:4]}")
    # and the quoted call shows its quote and the volatility its mid (0.160) implies
    quoted = body["rows"][1]["call"]
    assert (quoted["bid"], quoted["ask"], quoted["last"]) == ("0.150000", "0.170000", None)
    implied = black76.implied_volatility(0.160, 2.6, 2.5, years, RATE, True)
    assert abs(float(quoted["implied_volatility"]) - implied) < 1e-4
    assert body["rows"][0]["put"]["implied_volatility"] is None


def test_chain_without_a_settlement_is_valued_at_the_future_s_mid(future, chain, buyer, seller):
    place(buyer, future, "buy", 1, "2.40")
    place(seller, future, "sell", 1, "2.50")

    body = get(f"/instruments/{future.symbol}/chain/").json()

    years = (chain[0].last_trading_day - today()).days / 365
    assert body["forward"] == "2.450000"
    fair = float(body["rows"][2]["call"]["fair_value"])
    assert abs(fair - black76.price(2.45, 2.75, years, RATE, DEFAULT_VOLATILITY, True)) <= 0.0005


def test_chain_says_which_options_are_halted_and_by_what(future, chain):
    # given the 2.25 call halted on its own
    halted = next(o for o in chain if o.option_type == "call" and o.strike == Decimal("2.25"))
    instrument_set_status(instrument=halted, status=Instrument.Status.HALTED, actor=None)

    # when the chain is read, then again with the future halted
    before = get(f"/instruments/{future.symbol}/chain/").json()
    instrument_set_status(instrument=future, status=Instrument.Status.HALTED, actor=None)
    after = get(f"/instruments/{future.symbol}/chain/").json()

    # then each side shows its own status, and the future that halts it while it is halted
    sides = [row[side] for row in before["rows"] for side in ("call", "put")]
    assert [(side["status"], side["halted_by"]) for side in sides] == [
        ("halted", None),
        *[("active", None)] * 5,
    ]
    sides = [row[side] for row in after["rows"] for side in ("call", "put")]
    assert [(side["status"], side["halted_by"]) for side in sides] == [
        ("halted", future.symbol),
        *[("active", future.symbol)] * 5,
    ]


def test_chain_without_any_price_has_no_fair_values(future, chain):
    body = get(f"/instruments/{future.symbol}/chain/").json()

    assert body["forward"] is None
    assert {row["call"]["fair_value"] for row in body["rows"]} == {None}


def test_on_their_last_trading_day_options_are_in_the_chain_until_the_close(
    future, chain, monkeypatch
):
    """Their status stays active until the daily cycle expires them, but from the close on an
    order on one is refused (ORDER_INSTRUMENT_EXPIRED): the chain must not value them as
    tradable, as the curve and the hedge leave them out."""
    # given the future settled today and its options stop trading at today's close
    Settlement.objects.create(
        instrument=future, trading_date=today(), price=Decimal("2.60"), source="vwap"
    )
    Instrument.objects.filter(underlying=future).update(last_trading_day=today())
    close = calendar.close_at(today())

    # when the chain is read a second before the close, and at the close
    monkeypatch.setattr(timezone, "now", lambda: close - timedelta(seconds=1))
    before = get(f"/instruments/{future.symbol}/chain/").json()
    monkeypatch.setattr(timezone, "now", lambda: close)
    after = get(f"/instruments/{future.symbol}/chain/").json()

    # then every strike is in it until the close, and none from then on
    assert [row["strike"] for row in before["rows"]] == ["2.250000", "2.500000", "2.750000"]
    assert before["rows"][0]["call"]["fair_value"] is not None
    assert (after["forward"], after["rows"]) == ("2.600000", [])
    assert {option.status for option in Instrument.objects.filter(underlying=future)} == {
        Instrument.Status.ACTIVE
    }


def test_chain_of_an_option_or_unknown_symbol_is_404(chain):
    assert error_of(get(f"/instruments/{chain[0].symbol}/chain/"))[:2] == (404, "NOT_FOUND")
    assert get("/instruments/H100SXM-USEAST-209901/chain/").status_code == 404


def test_market_data_is_public_and_read_only(future):
    client = APIClient()

    assert client.get(f"{API}/instruments/").status_code == 200
    response = client.post(f"{API}/instruments/", {}, format="json")
    assert error_of(response)[:2] == (405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    "path",
    [
        "/curves/%00/{region}/",
        "/curves/{sku}/x%00/",
        "/instruments/{symbol}%00/",
        "/instruments/%00/book/",
    ],
)
def test_a_path_holding_nul_names_nothing(strip, path):
    """404, not a server error: PostgreSQL cannot compare text holding NUL, so no route's
    segment matches it."""
    future = strip[0]
    url = path.format(sku=future.sku.code, region=future.region.code, symbol=future.symbol)

    response = get(url)

    assert response.status_code == 404


def test_the_time_endpoint_gives_the_clock_and_the_signature_window(settings):
    settings.EXCHANGE_API_SIGNATURE_WINDOW_SECONDS = 45
    before = timezone.now()

    body = get("/time/").json()

    after = timezone.now()
    moment = datetime.fromisoformat(body["server_time"])
    assert before <= moment <= after
    assert body["epoch_seconds"] == int(moment.timestamp())
    assert body["signature_window_seconds"] == 45
    assert error_of(APIClient().post(f"{API}/time/", {}, format="json"))[:2] == (
        405,
        "METHOD_NOT_ALLOWED",
    )
