"""The futures grid of the markets page: one row per SKU x region, one column per delivery
month, each cell the future's last price, change, best bid and ask and volume."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import OuterRef, Subquery

from exchange.models import Instrument, Region, SettlementPrice, Sku
from exchange.selectors.market import Quote, instruments_listed, quotes_for


@dataclass(frozen=True)
class Cell:
    instrument: Instrument
    quote: Quote
    previous_settlement: Decimal | None
    change: Decimal | None
    """Last price less the previous settlement, $/GPU-hr; None without both."""
    change_percent: Decimal | None


@dataclass(frozen=True)
class GridRow:
    sku: Sku
    region: Region
    cells: list[Cell | None]
    """One per month of ``Grid.months``; None where no future of that month is listed."""


@dataclass(frozen=True)
class Grid:
    months: list[date]
    rows: list[GridRow]


def previous_settlements(instruments: list[Instrument], *, before: date) -> dict[int, Decimal]:
    """Each instrument's latest settlement price of a trading day before ``before``."""
    latest = SettlementPrice.objects.filter(
        instrument_id=OuterRef("pk"), trading_date__lt=before
    ).order_by("-trading_date")
    rows = (
        Instrument.objects.filter(pk__in=[instrument.pk for instrument in instruments])
        .annotate(previous=Subquery(latest.values("price")[:1]))
        .values_list("pk", "previous")
    )
    return {pk: price for pk, price in rows if price is not None}


def futures_grid(*, today: date, sku: str | None = None, region: str | None = None) -> Grid:
    """Listed (not expired) futures, filtered by SKU and region codes, as a grid."""
    futures = list(
        instruments_listed(kind=Instrument.Kind.FUTURE, sku=sku, region=region).order_by(
            "sku__code", "region__code", "delivery_start"
        )
    )
    quotes = quotes_for(futures)
    previous = previous_settlements(futures, before=today)
    months = sorted({future.delivery_start for future in futures})
    column = {month: index for index, month in enumerate(months)}
    rows: list[GridRow] = []
    for future in futures:
        if not rows or (rows[-1].sku.pk, rows[-1].region.pk) != (future.sku_id, future.region_id):
            rows.append(GridRow(future.sku, future.region, [None] * len(months)))
        rows[-1].cells[column[future.delivery_start]] = _cell(
            future, quotes[future.pk], previous.get(future.pk)
        )
    return Grid(months, rows)


def _cell(future: Instrument, quote: Quote, previous: Decimal | None) -> Cell:
    change = change_percent = None
    if previous is not None and quote.last_price is not None:
        change = quote.last_price - previous
        if previous:
            change_percent = (change / previous * 100).quantize(Decimal("0.1"))
    return Cell(future, quote, previous, change, change_percent)
