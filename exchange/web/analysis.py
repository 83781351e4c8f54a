"""The forward curve page: a SKU and region's futures prices by delivery month, where each comes
from, and the SKU's depreciation model beside them (``exchange.selectors.curves``). Public
market data like the API's curve endpoint, so anyone may read it, signed in or not."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from exchange.models import Region, Sku
from exchange.selectors.curves import (
    MODEL_MONTHS_BEYOND,
    MODEL_SOURCE,
    CurveWithModel,
    curve_markets,
    curve_with_model,
)
from exchange.selectors.market_data import CurvePoint
from exchange.services.settlement_prices import DEPRECIATION_FIT_MONTHS_MIN

SOURCE_LABELS = {
    "settlement": "Settlement",
    "mid": "Mid of bid and ask",
    "last_trade": "Last trade",
    MODEL_SOURCE: "Model (curve through the priced months)",
}


class CurveForm(forms.Form):
    sku = forms.ModelChoiceField(
        queryset=Sku.objects.order_by("code"), to_field_name="code", label="SKU"
    )
    region = forms.ModelChoiceField(
        queryset=Region.objects.order_by("code"), to_field_name="code", label="Region"
    )


def _selection(request: HttpRequest, pairs: list[tuple[Sku, Region]]) -> dict[str, str]:
    """The query, with the first listed pair for a missing SKU and the SKU's first listed
    region for a missing region."""
    sku = request.GET.get("sku") or pairs[0][0].code
    region = request.GET.get("region") or next(
        (pair_region.code for pair_sku, pair_region in pairs if pair_sku.code == sku),
        pairs[0][1].code,
    )
    return {"sku": sku, "region": region}


@dataclass(frozen=True)
class CurveRow:
    """One delivery month of the table and the chart."""

    month: date
    point: CurvePoint | None  # None for the months the model is drawn beyond the listed ones.
    source_label: str | None
    model_price: Decimal | None  # $/GPU-hr; None without a model.
    difference: Decimal | None  # Market less model, $/GPU-hr.


def _rows(curve: CurveWithModel) -> list[CurveRow]:
    """One row per month: the listed months, then the months the model is drawn beyond them
    (``model_points`` holds the listed months and months after the last one only)."""
    model_by_month = {point.month: point.price for point in curve.model_points}
    rows = []
    for point in curve.points:
        model_price = model_by_month.get(point.month)
        difference = point.price - model_price if model_price is not None else None
        label = SOURCE_LABELS.get(point.source, point.source)
        rows.append(CurveRow(point.month, point, label, model_price, difference))
    listed = {point.month for point in curve.points}
    rows += [
        CurveRow(model_point.month, None, None, model_point.price, None)
        for model_point in curve.model_points
        if model_point.month not in listed
    ]
    return rows


def _chart(rows: list[CurveRow]) -> dict[str, list[str | None]]:
    """The chart's series on one axis of months; prices stay exact decimal strings."""
    return {
        "labels": [f"{row.month:%Y-%m}" for row in rows],
        "market": [str(row.point.price) if row.point else None for row in rows],
        "sources": [row.point.source if row.point else None for row in rows],
        "model": [str(row.model_price) if row.model_price is not None else None for row in rows],
    }


@require_GET
def curves(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    pairs = curve_markets(at=now)
    context: dict[str, object] = {
        "curve": None,
        "months_beyond": MODEL_MONTHS_BEYOND,
        "fit_months_min": DEPRECIATION_FIT_MONTHS_MIN,
    }
    if not pairs:
        context["form"] = CurveForm()
        return render(request, "exchange/forward_curve.html", context)
    form = CurveForm(_selection(request, pairs))
    context["form"] = form
    if not form.is_valid():
        return render(request, "exchange/forward_curve.html", context, status=400)
    curve = curve_with_model(form.cleaned_data["sku"], form.cleaned_data["region"], at=now)
    rows = _rows(curve)
    market_months = [point.month for point in curve.points if point.source != MODEL_SOURCE]
    context.update(
        curve=curve,
        rows=rows,
        chart=_chart(rows) if curve.points else None,
        last_market_month=market_months[-1] if market_months else None,
    )
    return render(request, "exchange/forward_curve.html", context)
