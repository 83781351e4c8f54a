"""Server-rendered pages. Views read through selectors and never write."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from exchange.errors import CatalogError
from exchange.models import Account, Instrument
from exchange.selectors import entitlements, funding, market, participants, positions, risk
from exchange.services import funding as funding_services
from exchange.symbols import parse_symbol

RECENT_FUNDING_ROWS = 10


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


@login_required
def portfolio(request: HttpRequest) -> HttpResponse:
    """The signed-in member's organizations: each trading account's cash, positions,
    entitlements and recent funding.

    Only the member's own organizations are read, so nobody sees another's money.
    """
    memberships = list(participants.memberships_of(request.user))
    accounts = participants.accounts_of_organizations([m.organization_id for m in memberships])
    rows = [_portfolio_row(account) for account in accounts]
    context = {
        "memberships": memberships,
        "rows": rows,
        "test_funds_mode": funding_services.test_mode_active(),
    }
    return render(request, "exchange/portfolio.html", context)


def _portfolio_row(account: Account) -> dict[str, object]:
    account_positions = positions.positions_of(account)
    margin_total, pnl_total = positions.portfolio_totals(account_positions)
    return {
        "account": account,
        "cash": funding.cash_balance(account),
        "positions": account_positions,
        "margin_total": margin_total,
        "pnl_total": pnl_total,
        "entitlements": entitlements.entitlements_of(account),
        "deposits": funding.deposits_of(account).order_by("-id")[:RECENT_FUNDING_ROWS],
        "withdrawals": funding.withdrawals_of(account).order_by("-id")[:RECENT_FUNDING_ROWS],
    }
