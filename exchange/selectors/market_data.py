"""Market data built from trades, quotes and settlement prices: candles and forward curves."""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from exchange.models import Instrument, Region, Sku, Trade
from exchange.selectors.market import quotes_for
from exchange.selectors.marks import MarkSource, marks_for
from exchange.services.settlement_prices import depreciation_model, on_tick
from pricing.curve import ForwardCurve

CANDLE_INTERVALS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
CANDLES_MAX = 1000
CANDLE_TRADES_MAX = 200_000  # Trades read for one request: a bound on its cost.


@dataclass(frozen=True)
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    trades: int


def candles(
    instrument: Instrument, *, interval: str, limit: int, now: datetime | None = None
) -> list[Candle]:
    """OHLCV of the last ``limit`` periods of ``interval`` (UTC-aligned), oldest first;
    periods without trades are left out."""
    step = CANDLE_INTERVALS[interval]
    now = now or timezone.now()
    seconds = int(step.total_seconds())
    current = int(now.timestamp()) // seconds * seconds
    since = datetime.fromtimestamp(current - seconds * (limit - 1), tz=now.tzinfo)
    # The newest trades within the bound, replayed oldest first: past the bound it is the
    # oldest periods that go, never the latest.
    newest = list(
        Trade.objects.filter(instrument=instrument, executed_at__gte=since)
        .order_by("-sequence")
        .values_list("executed_at", "price", "quantity")[:CANDLE_TRADES_MAX]
    )
    # Per period: open, high, low, close (Decimal), volume and trade count (int).
    buckets: OrderedDict[int, list[Any]] = OrderedDict()
    for executed_at, price, quantity in reversed(newest):
        start = int(executed_at.timestamp()) // seconds * seconds
        bucket = buckets.get(start)
        if bucket is None:
            buckets[start] = [price, price, price, price, quantity, 1]
        else:
            bucket[1] = max(bucket[1], price)
            bucket[2] = min(bucket[2], price)
            bucket[3] = price
            bucket[4] += quantity
            bucket[5] += 1
    if len(newest) == CANDLE_TRADES_MAX and buckets:
        del buckets[min(buckets)]  # The oldest period may have lost trades to the bound.
    return [
        Candle(datetime.fromtimestamp(start, tz=now.tzinfo), *values)
        for start, values in sorted(buckets.items())
    ]


@dataclass(frozen=True)
class CurvePoint:
    month: date
    symbol: str | None
    price: Decimal
    source: str  # "settlement", "mid", "last_trade" or "model".


def forward_curve(sku: Sku, region: Region, *, at: datetime) -> list[CurvePoint]:
    """The prices by delivery month of the listed futures that still trade at ``at`` (before
    the close of their last trading day, ``Instrument.objects.trading_at``: an order on one whose
    trading ended is refused): each future's mark (the newer of its latest settlement price
    and its last trade, ``selectors.marks``: the rule that values positions and options), else
    the mid of its book; months without any are priced on the forward curve through the
    others priced above 0, with the SKU's depreciation model beyond the last
    (``exchange.services.settlement_prices``), and left out when no other is."""
    futures = list(
        Instrument.objects.trading_at(at)
        .filter(kind=Instrument.Kind.FUTURE, sku=sku, region=region)
        .order_by("delivery_start")
    )
    if not futures:
        return []
    quotes = quotes_for(futures)
    marks = marks_for(futures)
    points: list[CurvePoint | None] = []
    for future in futures:
        quote = quotes[future.pk]
        mark = marks.get(future.pk)
        if mark is not None:
            source = "settlement" if mark.source == MarkSource.SETTLEMENT else "last_trade"
            points.append(CurvePoint(future.delivery_start, future.symbol, mark.price, source))
        elif quote.best_bid and quote.best_ask:
            mid = on_tick((quote.best_bid.price + quote.best_ask.price) / 2, future.tick_size)
            points.append(CurvePoint(future.delivery_start, future.symbol, mid, "mid"))
        else:
            points.append(None)
    # A future marked at 0 (a settlement price set to 0) keeps that price as its point, but the
    # curve through the others cannot start from it (``pricing.curve`` takes prices > 0 only).
    priced = [point for point in points if point is not None and point.price > 0]
    curve = None
    if priced and len(priced) < len(futures):
        months = [point.month for point in priced]
        values = [float(point.price) for point in priced]
        model = depreciation_model(sku, months, values)
        curve = ForwardCurve.build(months, values, model)
    result = []
    for future, point in zip(futures, points, strict=True):
        if point is None and curve is not None:
            value = on_tick(Decimal(repr(curve.price(future.delivery_start))), future.tick_size)
            point = CurvePoint(future.delivery_start, future.symbol, value, "model")
        if point is not None:
            result.append(point)
    return result
