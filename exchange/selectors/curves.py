"""A SKU x region's forward curve beside the SKU's depreciation model, for the curve page.

The market side is ``market_data.forward_curve``: the price by delivery month of each listed
future that still trades (until the close of its last trading day), and where it comes from
(settlement, mid, last trade, or the model for a month nothing prices).

The model side is the SKU's depreciation model fitted the way the daily settlement fits it
(``settlement_prices._sku_model``): once per SKU, to the strip of the region with the most
market-priced months (the lowest region code on a tie), and only with
``DEPRECIATION_FIT_MONTHS_MIN`` or more of them. Here the market-priced months are the curve's
points that do not come from the model. The model's price of a month is its expected average
over the month (``DepreciationModel.monthly_price``), $/GPU-hr.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from exchange import calendar
from exchange.models import Instrument, Region, Sku
from exchange.selectors.market_data import CurvePoint, forward_curve
from exchange.services.option_pricing import to_decimal
from exchange.services.settlement_prices import depreciation_model
from pricing.depreciation import DepreciationModel

# The model is drawn over the listed months and this many months after the last of them.
MODEL_MONTHS_BEYOND = 6
MODEL_PRICE_QUANTUM = Decimal("0.0001")  # $/GPU-hr.
MODEL_SOURCE = "model"


@dataclass(frozen=True)
class DepreciationFit:
    """The SKU's model and the strip it was fitted to."""

    model: DepreciationModel
    region: str  # Code of the region whose strip was fitted.
    months: int  # Market-priced months in that strip.


@dataclass(frozen=True)
class ModelPoint:
    month: date
    price: Decimal  # $/GPU-hr on MODEL_PRICE_QUANTUM.


@dataclass(frozen=True)
class CurveWithModel:
    sku: Sku
    region: Region
    on: date  # The day of ``at``, the moment the curve was read.
    points: list[CurvePoint]  # The listed futures that still trade, by delivery month.
    fit: DepreciationFit | None  # None: too few market-priced months, or the fit failed.
    model_points: list[ModelPoint]  # Listed months and MODEL_MONTHS_BEYOND after them.


def curve_markets(*, at: datetime) -> list[tuple[Sku, Region]]:
    """The SKU and region pairs with a future that still trades at ``at``, by their codes."""
    pairs = (
        Instrument.objects.trading_at(at)
        .filter(kind=Instrument.Kind.FUTURE)
        .values_list("sku_id", "region_id")
        .distinct()
    )
    keys = set(pairs)
    skus = Sku.objects.in_bulk({sku_id for sku_id, _ in keys})
    regions = Region.objects.in_bulk({region_id for _, region_id in keys})
    return sorted(
        ((skus[sku_id], regions[region_id]) for sku_id, region_id in keys),
        key=lambda pair: (pair[0].code, pair[1].code),
    )


def _market_priced(points: list[CurvePoint]) -> list[CurvePoint]:
    """The points the market prices; one at 0 (a settlement price set to 0) is no price the
    model can be fitted to (its residuals are logs)."""
    return [point for point in points if point.source != MODEL_SOURCE and point.price > 0]


def sku_depreciation_fit(
    sku: Sku, *, at: datetime, curves: dict[str, list[CurvePoint]] | None = None
) -> DepreciationFit | None:
    """The SKU's depreciation model at ``at``, fitted as the settlement fits it (see the
    module docstring), or None when it cannot be fitted. ``curves`` (region code -> curve
    points) saves reading curves the caller already has."""
    curves = dict(curves or {})
    region_ids = (
        Instrument.objects.trading_at(at)
        .filter(kind=Instrument.Kind.FUTURE, sku=sku)
        .values_list("region_id", flat=True)
        .distinct()
    )
    for region in Region.objects.filter(pk__in=set(region_ids)):
        if region.code not in curves:
            curves[region.code] = forward_curve(sku, region, at=at)
    strips = {code: _market_priced(points) for code, points in curves.items()}
    strips = {code: strip for code, strip in strips.items() if strip}
    if not strips:
        return None
    code = max(sorted(strips), key=lambda each: len(strips[each]))
    strip = strips[code]
    model = depreciation_model(
        sku, [point.month for point in strip], [float(point.price) for point in strip]
    )
    if model is None:
        return None
    return DepreciationFit(model=model, region=code, months=len(strip))


def model_points(
    model: DepreciationModel, months: list[date], *, beyond: int = MODEL_MONTHS_BEYOND
) -> list[ModelPoint]:
    """The model's price of each of ``months`` and of ``beyond`` months after the last."""
    if not months:
        return []
    wanted = sorted(set(months))
    wanted += [calendar.add_months(wanted[-1], offset) for offset in range(1, beyond + 1)]
    # One call prices the whole span: listed months need not be consecutive.
    span = _month_range(wanted[0], wanted[-1])
    by_month = dict(zip(span, model.monthly_prices(wanted[0], len(span)), strict=True))
    result = []
    for month in wanted:
        price = to_decimal(float(by_month[month]), MODEL_PRICE_QUANTUM)
        assert price is not None, "a fitted model's prices are finite"
        result.append(ModelPoint(month, price))
    return result


def _month_range(first: date, last: date) -> list[date]:
    count = (last.year - first.year) * 12 + last.month - first.month + 1
    return [calendar.add_months(first, offset) for offset in range(count)]


def curve_with_model(sku: Sku, region: Region, *, at: datetime) -> CurveWithModel:
    """The region's forward curve of ``sku`` at ``at`` and the SKU's depreciation model beside
    it."""
    points = forward_curve(sku, region, at=at)
    fit = sku_depreciation_fit(sku, at=at, curves={region.code: points})
    drawn = model_points(fit.model, [point.month for point in points]) if fit else []
    return CurveWithModel(sku, region, at.date(), points, fit, drawn)
