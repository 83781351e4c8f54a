"""The markets page: futures as a SKU x region x delivery-month grid; options and resale
contracts as lists grouped by SKU and region. Read-only, for everyone."""

from itertools import groupby

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
    context = {
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
        rows = [{"instrument": i, "quote": quotes[i.pk]} for i in instruments]
        context.update(
            groups=[
                {"sku": key[0], "region": key[1], "rows": list(items)}
                for key, items in groupby(
                    rows, key=lambda r: (r["instrument"].sku, r["instrument"].region)
                )
            ],
            instrument_count=len(instruments),
        )
    return render(request, "exchange/markets.html", context)
