"""The hedging calculator: a planned need (SKU, region, GPUs, first month, months) -> the
recommended futures strip, the call cap and the collar, their expected and 95% worst-case
costs against leaving the need unhedged, and the distribution of the simulated costs; or, on
the sell side, a provider's planned capacity -> the strip sold, the put floor and the collar
(puts bought, calls sold), with their revenues. Each recommended order can be staged in the
instrument page's ticket with one click, on its side. It computes and writes nothing, so anyone
may use it."""

from datetime import date
from itertools import pairwise

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from exchange import calendar
from exchange.errors import PricingError
from exchange.models import Region, Sku
from exchange.selectors.hedge_orders import hedge_option_orders
from exchange.services.hedging import (
    GPUS_MAX,
    HEDGE_MONTHS_MAX,
    Hedge,
    SellHedge,
    hedge_recommendation,
)
from exchange.web.refusals import refusal_text
from pricing.hedge import Side

# Each side's strategies: the key of the simulated distribution, the label, the outcome's
# attribute of the recommendation; and the names of the outcome's expected and worst-case
# amounts (a buyer's costs, a seller's revenues).
STRATEGIES = {
    Side.BUY: [
        ("none", "Unhedged", "unhedged"),
        ("futures", "Futures strip", "futures_outcome"),
        ("cap", "Cap (buy calls)", "cap_outcome"),
        ("collar", "Collar (buy calls, sell puts)", "collar_outcome"),
    ],
    Side.SELL: [
        ("none", "Unhedged", "unhedged"),
        ("futures", "Futures strip (sold)", "futures_outcome"),
        ("floor", "Floor (buy puts)", "floor_outcome"),
        ("collar", "Collar (buy puts, sell calls)", "collar_outcome"),
    ],
}
AMOUNTS = {
    Side.BUY: ("expected_cost", "worst_case_cost"),
    Side.SELL: ("expected_revenue", "worst_case_revenue"),
}
# The forward's source (``selectors.market_data.CurvePoint.source``) in words, beside its price.
FORWARD_SOURCE_TEXT = {
    "settlement": "settlement price",
    "mid": "mid of bid and ask",
    "last_trade": "last trade",
    "model": "forward curve model",
}
CHART_AXIS = {Side.BUY: "Cost of the need (USD)", Side.SELL: "Revenue of the capacity (USD)"}


class NeedForm(forms.Form):
    side = forms.ChoiceField(
        choices=[
            (Side.BUY.value, "Buy: hedge a need"),
            (Side.SELL.value, "Sell: hedge capacity"),
        ],
        required=False,
        label="Side",
        help_text="Buy GPU-hours (a need) or sell them (a provider's capacity).",
    )
    sku = forms.ModelChoiceField(
        queryset=Sku.objects.order_by("code"), to_field_name="code", label="SKU"
    )
    region = forms.ModelChoiceField(
        queryset=Region.objects.order_by("code"), to_field_name="code", label="Region"
    )
    gpus = forms.IntegerField(min_value=1, max_value=GPUS_MAX, label="GPUs")
    first_month = forms.DateField(
        input_formats=["%Y-%m"],
        label="First month",
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
        help_text="The first delivery month (YYYY-MM).",
    )
    months = forms.IntegerField(min_value=1, max_value=HEDGE_MONTHS_MAX, label="Months")

    def clean_side(self) -> Side:
        # A link from before the choice (no side) asks for a buyer's hedge, as the API does.
        return Side(self.cleaned_data["side"] or Side.BUY)

    def clean_first_month(self) -> date:
        month = calendar.month_start(self.cleaned_data["first_month"])
        if month <= calendar.month_start(timezone.now().date()):
            raise forms.ValidationError("Choose a month after this one: its future still trades.")
        return month

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        first, months = cleaned.get("first_month"), cleaned.get("months")
        # As the API's serializer: the service counts the months from the first one, and a
        # month past 9999 is no date (it raised ValueError, a server error).
        last = (
            None if first is None or months is None else first.year * 12 + first.month + months - 1
        )
        if last is not None and last > date.max.year * 12 + 12:
            self.add_error("months", "The need runs past the year 9999.")
        return cleaned


def _defaults() -> dict[str, object]:
    sku = Sku.objects.filter(code="H100SXM").first() or Sku.objects.order_by("code").first()
    region = Region.objects.filter(code="USEAST").first() or Region.objects.order_by("code").first()
    first = calendar.add_months(calendar.month_start(timezone.now().date()), 2)
    return {
        "side": Side.BUY.value,
        "sku": sku.code if sku else None,
        "region": region.code if region else None,
        "gpus": 64,
        "first_month": first.strftime("%Y-%m"),
        "months": 3,
    }


def _strategies(hedge: Hedge | SellHedge) -> list[dict[str, object]]:
    expected, worst_case = AMOUNTS[hedge.side]
    rows = []
    for key, label, attribute in STRATEGIES[hedge.side]:
        outcome = getattr(hedge, attribute)
        rows.append(
            {
                "key": key,
                "label": label,
                "expected": getattr(outcome, expected),
                "worst_case": getattr(outcome, worst_case),
                "premium": outcome.premium,
            }
        )
    return rows


def _chart(hedge: Hedge | SellHedge) -> dict[str, object]:
    edges = hedge.distribution.edges
    return {
        "axis": CHART_AXIS[hedge.side],
        "labels": [f"{(low + high) / 2:.0f}" for low, high in pairwise(edges)],
        "series": [
            {"label": label, "counts": hedge.distribution.counts[key]}
            for key, label, _attribute in STRATEGIES[hedge.side]
        ],
    }


@require_GET
def hedging(request: HttpRequest) -> HttpResponse:
    submitted = "sku" in request.GET
    form = NeedForm(request.GET if submitted else None, initial=_defaults())
    hedge: Hedge | SellHedge | None = None
    if submitted and form.is_valid():
        data = form.cleaned_data
        try:
            hedge = hedge_recommendation(
                side=data["side"],
                sku=data["sku"],
                region=data["region"],
                gpus=data["gpus"],
                first_month=data["first_month"],
                months=data["months"],
            )
        except PricingError as error:
            form.add_error(error.field if error.field in form.fields else None, refusal_text(error))
    context = {
        "form": form,
        "hedge": hedge,
        "strategies": _strategies(hedge) if hedge else [],
        "chart": _chart(hedge) if hedge else None,
        "futures_legs": [
            (leg, FORWARD_SOURCE_TEXT.get(leg.source, leg.source)) for leg in hedge.futures
        ]
        if hedge
        else [],
        "option_orders": hedge_option_orders(hedge, at=timezone.now()) if hedge else [],
        "gpu_hours": hedge.gpus * sum(leg.gpu_hours_per_contract for leg in hedge.futures)
        if hedge
        else 0,
    }
    return render(request, "exchange/hedging.html", context, status=400 if form.errors else 200)
