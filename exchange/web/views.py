"""Server-rendered pages. Views read through selectors and never write."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from exchange.errors import CatalogError
from exchange.models import Instrument
from exchange.selectors import market, risk
from exchange.symbols import parse_symbol


def instrument_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    try:
        parse_symbol(symbol)
    except CatalogError as error:
        raise Http404(error.message) from error
    instrument = market.instrument_by_symbol(symbol)
    if instrument is None:
        raise Http404(f"No instrument {symbol}")
    bids, asks = market.book_depth(instrument, levels=10)
    context = {
        "instrument": instrument,
        "quote": market.quotes_for([instrument])[instrument.pk],
        "bids": bids,
        "asks": list(reversed(asks)),
        "trades": market.trades_recent(instrument, limit=30),
        "chain": risk.option_chain(instrument, on=timezone.now().date())
        if instrument.kind == Instrument.Kind.FUTURE
        else None,
        "settlements": instrument.settlement_prices.order_by("-trading_date")[:5],
    }
    return render(request, "exchange/instrument.html", context)
