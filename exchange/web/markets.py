"""The markets page: futures as a SKU x region x delivery-month grid; options and resale
contracts as lists grouped by SKU and region. Read-only, for everyone."""

from itertools import groupby
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from exchange.models import Instrument, Region, Sku
from exchange.selectors import market
from exchange.selectors.market_grid import futures_grid

# Each kind's page as the navigation names it: the page's title and heading, which said
# "Markets" for all three, so tabs and screen readers could not tell them apart.
KIND_PAGE_NAMES = {
    Instrument.Kind.FUTURE: "Futures",
    Instrument.Kind.OPTION: "Options",
    Instrument.Kind.RESALE: "Reserved resale",
}


def markets(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind") or Instrument.Kind.FUTURE
    if kind not in Instrument.Kind.values:
        kind = Instrument.Kind.FUTURE
    skus = list(Sku.objects.order_by("code"))
    regions = list(Region.objects.order_by("code"))
    # A code no SKU or region has (text with NUL included, which PostgreSQL cannot compare)
    # filters nothing.
    sku = _known(request.GET.get("sku"), {row.code for row in skus})
    region = _known(request.GET.get("region"), {row.code for row in regions})
    context: dict[str, Any] = {
        "kind": kind,
        "kind_page_name": KIND_PAGE_NAMES[Instrument.Kind(kind)],
        "kinds": Instrument.Kind.choices,
        "skus": skus,
        "regions": regions,
        "selected_sku": sku or "",
        "selected_region": region or "",
    }
    if kind == Instrument.Kind.FUTURE:
        grid = futures_grid(today=timezone.now().date(), sku=sku, region=region)
        context.update(
            grid=grid,
            instrument_count=sum(1 for row in grid.rows for cell in row.cells if cell is not None),
        )
    else:
        instruments = list(market.instruments_listed(kind=kind, sku=sku, region=region))
        quotes = market.quotes_for(instruments)
        groups = groupby(instruments, key=lambda instrument: (instrument.sku, instrument.region))
        context.update(
            groups=[
                {
                    "sku": sku_of_group,
                    "region": region_of_group,
                    "rows": [{"instrument": i, "quote": quotes[i.pk]} for i in members],
                }
                for (sku_of_group, region_of_group), members in groups
            ],
            instrument_count=len(instruments),
        )
    return render(request, "exchange/markets.html", context)


def _known(code: str | None, codes: set[str]) -> str | None:
    return code if code in codes else None
