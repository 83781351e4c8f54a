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


def markets(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind") or Instrument.Kind.FUTURE
    if kind not in Instrument.Kind.values:
        kind = Instrument.Kind.FUTURE
    sku = request.GET.get("sku") or None
    region = request.GET.get("region") or None
    context: dict[str, Any] = {
        "kind": kind,
        "kinds": Instrument.Kind.choices,
        "skus": Sku.objects.order_by("code"),
        "regions": Region.objects.order_by("code"),
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
