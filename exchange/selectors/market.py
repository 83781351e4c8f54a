"""Market data read from the database: the books as committed, trades, quotes."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from exchange.models import RESTING_STATUSES, Instrument, Order, Side, Trade

DEPTH_LEVELS_MAX = 50
TRADES_PAGE_MAX = 200


@dataclass(frozen=True)
class Level:
    price: Decimal
    quantity: int
    orders: int


@dataclass(frozen=True)
class Quote:
    best_bid: Level | None
    best_ask: Level | None
    last_price: Decimal | None
    volume_24h: int


def instruments_listed(
    *,
    kind: str | None = None,
    sku: str | None = None,
    region: str | None = None,
    status: str | None = None,
    delivery_month: date | None = None,
) -> QuerySet[Instrument]:
    """Instruments by kind, SKU and region codes, status (default: all but expired) and
    delivery month (its first day): those whose delivery starts in it, a resale listing's on
    whichever day its block starts."""
    queryset = Instrument.objects.select_related("sku", "region", "underlying")
    if status:
        queryset = queryset.filter(status=status)
    else:
        queryset = queryset.exclude(status=Instrument.Status.EXPIRED)
    if kind:
        queryset = queryset.filter(kind=kind)
    if sku:
        queryset = queryset.filter(sku__code=sku)
    if region:
        queryset = queryset.filter(region__code=region)
    if delivery_month:
        # By year and month rather than up to the next month's first day, which year 9999's
        # December does not have.
        queryset = queryset.filter(
            delivery_start__year=delivery_month.year, delivery_start__month=delivery_month.month
        )
    return queryset


def resting_orders(now: datetime) -> QuerySet[Order]:
    """The orders in the market at ``now``: resting, less GTD orders whose time has come
    (``expires_at`` itself included), which are no longer in it even before the matcher
    sweeps them. The book, the quotes and a market order's protection price read this."""
    return Order.objects.filter(status__in=RESTING_STATUSES).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def _levels(instrument_ids: list[int], now: datetime) -> QuerySet[Order, dict[str, Any]]:
    return (
        resting_orders(now)
        .filter(instrument_id__in=instrument_ids)
        .values("instrument_id", "side", "price")
        .annotate(
            quantity=Sum(F("quantity") - F("filled_quantity") - F("cancelled_quantity")),
            orders=Count("id"),
        )
    )


def quotes_for(instruments: list[Instrument], *, now: datetime | None = None) -> dict[int, Quote]:
    """Best bid and ask (with size), last price and 24-hour volume for each instrument."""
    now = now or timezone.now()
    ids = [instrument.pk for instrument in instruments]
    best: dict[tuple[int, str], Level] = {}
    for row in _levels(ids, now):
        key = (row["instrument_id"], row["side"])
        level = Level(row["price"], row["quantity"], row["orders"])
        current = best.get(key)
        better = current is None or (
            level.price > current.price if row["side"] == Side.BUY else level.price < current.price
        )
        if better:
            best[key] = level
    last_trade = Trade.objects.filter(instrument_id=OuterRef("pk")).order_by("-sequence")
    extras = Instrument.objects.filter(pk__in=ids).annotate(
        last_price=Subquery(last_trade.values("price")[:1]),
        volume=Sum(
            "trades__quantity", filter=Q(trades__executed_at__gte=now - timedelta(hours=24))
        ),
    )
    extra_by_id: dict[int, Any] = {row.pk: row for row in extras}  # With the annotations.
    return {
        instrument_id: Quote(
            best_bid=best.get((instrument_id, Side.BUY)),
            best_ask=best.get((instrument_id, Side.SELL)),
            last_price=extra_by_id[instrument_id].last_price,
            volume_24h=extra_by_id[instrument_id].volume or 0,
        )
        for instrument_id in ids
    }


def book_depth(
    instrument: Instrument, *, levels: int = 10, now: datetime | None = None
) -> tuple[list[Level], list[Level]]:
    """The committed L2 book: (bids best first, asks best first), at most ``levels`` each."""
    levels = max(1, min(levels, DEPTH_LEVELS_MAX))
    by_side: dict[str, list[Level]] = defaultdict(list)
    for row in _levels([instrument.pk], now or timezone.now()):
        by_side[row["side"]].append(Level(row["price"], row["quantity"], row["orders"]))
    bids = sorted(by_side[Side.BUY], key=lambda level: level.price, reverse=True)[:levels]
    asks = sorted(by_side[Side.SELL], key=lambda level: level.price)[:levels]
    return bids, asks


def trades_recent(instrument: Instrument, *, limit: int = 50) -> QuerySet[Trade]:
    return Trade.objects.filter(instrument=instrument).order_by("-sequence")[
        : max(1, min(limit, TRADES_PAGE_MAX))
    ]


def instrument_by_symbol(symbol: str) -> Instrument | None:
    return (
        Instrument.objects.select_related("sku", "region", "underlying", "reservation")
        .filter(symbol=symbol)
        .first()
    )
