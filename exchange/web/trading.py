"""The instrument page and trading on it: the book, the tape, the price chart, the order ticket
with its collateral preview, and the member's open orders with cancel and amend.

The book, the tape and "my open orders" are partial views the page re-fetches with htmx every
2 seconds. Orders go through the same services as the REST API (``order_submit``,
``order_dry_run``, ``order_cancel``, ``order_replace``), so the ticket's refusals are the
engine's and risk's named codes, shown next to the field they name.
"""

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from exchange.errors import CatalogError, OrderRejected
from exchange.models import Instrument, Membership, Order, Side
from exchange.selectors import market, risk
from exchange.selectors import orders as orders_selector
from exchange.selectors.funding import cash_balance
from exchange.services.orders import order_cancel, order_dry_run, order_replace, order_submit
from exchange.symbols import parse_symbol
from exchange.web.membership import can_trade, membership_of, trader_required, trading_account_of

BOOK_LEVELS = 10
TAPE_TRADES = 30
CHART_TRADES = 200
SETTLEMENTS_SHOWN = 5
SETTLEMENTS_CHARTED = 60
PRICE_FIELD = {"max_digits": 18, "decimal_places": 6, "min_value": Decimal("0.000001")}


class TicketForm(forms.Form):
    """The order ticket. The side comes from the button pressed (Buy or Sell)."""

    quantity = forms.IntegerField(min_value=1, label="Quantity", help_text="Contracts.")
    price = forms.DecimalField(
        required=False, label="Price", help_text="$/GPU-hr; not for market orders.", **PRICE_FIELD
    )
    type = forms.ChoiceField(choices=Order.Type.choices, initial=Order.Type.LIMIT, label="Type")
    time_in_force = forms.ChoiceField(
        choices=Order.TimeInForce.choices,
        initial=Order.TimeInForce.GTC,
        label="Time in force",
        help_text="Market orders: IOC or FOK.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at (UTC)",
        help_text="GTD only.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    post_only = forms.BooleanField(required=False, label="Post only")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        limit = cleaned.get("type") == Order.Type.LIMIT
        if limit and cleaned.get("price") is None and "price" not in self.errors:
            self.add_error("price", "A limit order needs a price.")
        if cleaned.get("type") == Order.Type.MARKET:
            cleaned["price"] = None
        if cleaned.get("time_in_force") != Order.TimeInForce.GTD:
            cleaned["expires_at"] = None
        elif cleaned.get("expires_at") is None and "expires_at" not in self.errors:
            self.add_error("expires_at", "A good-till-date order needs its expiry.")
        return cleaned

    def order_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "quantity": data["quantity"],
            "price": data["price"],
            "type": data["type"],
            "time_in_force": data["time_in_force"],
            "expires_at": data["expires_at"],
            "post_only": data["post_only"],
        }


class AmendForm(forms.Form):
    price = forms.DecimalField(label="New price", **PRICE_FIELD)
    quantity = forms.IntegerField(min_value=0, label="New quantity", help_text="0 cancels.")


def _instrument(symbol: str) -> Instrument:
    try:
        parse_symbol(symbol)
    except CatalogError as error:
        raise Http404(error.message) from error
    instrument = market.instrument_by_symbol(symbol)
    if instrument is None:
        raise Http404(f"No instrument {symbol}")
    return instrument


def _member(request: HttpRequest) -> Membership | None:
    if not request.user.is_authenticated:
        return None
    try:
        return membership_of(request)
    except Http404:
        return None


def _initial_ticket(request: HttpRequest) -> dict[str, str]:
    """Values staged by a link (the hedging calculator): ?side=&quantity=&price=."""
    return {
        name: request.GET[name]
        for name in ("quantity", "price", "type", "time_in_force")
        if request.GET.get(name)
    }


def _book_context(instrument: Instrument) -> dict[str, Any]:
    bids, asks = market.book_depth(instrument, levels=BOOK_LEVELS)
    return {
        "instrument": instrument,
        "quote": market.quotes_for([instrument])[instrument.pk],
        "bids": bids,
        "asks": list(reversed(asks)),
    }


def _my_orders_context(instrument: Instrument, membership: Membership | None) -> dict[str, Any]:
    if membership is None:
        return {"instrument": instrument, "member": None, "orders": []}
    account = trading_account_of(membership)
    live = orders_selector.orders_of(
        account, status=orders_selector.STATUS_LIVE, instrument=instrument.symbol
    )
    return {
        "instrument": instrument,
        "member": membership,
        "can_trade": can_trade(membership),
        "orders": list(live),
    }


def _chart(instrument: Instrument) -> dict[str, list[dict[str, str]]]:
    """Prices as strings (exact decimals); the page's script plots them."""
    trades = reversed(list(market.trades_recent(instrument, limit=CHART_TRADES)))
    settlements = reversed(
        list(instrument.settlement_prices.order_by("-trading_date")[:SETTLEMENTS_CHARTED])
    )
    return {
        "trades": [
            {"t": trade.executed_at.isoformat(), "price": str(trade.price)} for trade in trades
        ],
        "settlements": [
            {"t": row.trading_date.isoformat(), "price": str(row.price)} for row in settlements
        ],
    }


def _page(
    request: HttpRequest, instrument: Instrument, form: TicketForm, status: int = 200
) -> HttpResponse:
    membership = _member(request)
    context = {
        **_book_context(instrument),
        **_my_orders_context(instrument, membership),
        "trades": market.trades_recent(instrument, limit=TAPE_TRADES),
        "chain": risk.option_chain(instrument, on=timezone.now().date())
        if instrument.kind == Instrument.Kind.FUTURE
        else None,
        "settlements": instrument.settlement_prices.order_by("-trading_date")[:SETTLEMENTS_SHOWN],
        "chart": _chart(instrument),
        "form": form,
        "staged_side": request.GET.get("side") if request.method == "GET" else None,
    }
    return render(request, "exchange/instrument.html", context, status=status)


@require_GET
def instrument_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    instrument = _instrument(symbol)
    return _page(request, instrument, TicketForm(initial=_initial_ticket(request)))


@require_GET
def book_partial(request: HttpRequest, symbol: str) -> HttpResponse:
    context = _book_context(_instrument(symbol))
    return render(request, "exchange/partials/instrument_book.html", context)


@require_GET
def tape_partial(request: HttpRequest, symbol: str) -> HttpResponse:
    instrument = _instrument(symbol)
    context = {
        "instrument": instrument,
        "trades": market.trades_recent(instrument, limit=TAPE_TRADES),
    }
    return render(request, "exchange/partials/instrument_tape.html", context)


@require_GET
def my_orders_partial(request: HttpRequest, symbol: str) -> HttpResponse:
    context = _my_orders_context(_instrument(symbol), _member(request))
    return render(request, "exchange/partials/instrument_my_orders.html", context)


@trader_required
@require_POST
def ticket_preview(request: HttpRequest, symbol: str, membership: Membership) -> HttpResponse:
    """What a buy and a sell of the ticket's order would hold now; writes nothing."""
    instrument = _instrument(symbol)
    form = TicketForm(request.POST)
    account = trading_account_of(membership)
    sides = []
    if form.is_valid():
        for side in (Side.BUY, Side.SELL):
            try:
                preview = order_dry_run(
                    account=account,
                    instrument=instrument.symbol,
                    side=side,
                    **form.order_arguments(),
                )
            except OrderRejected as error:
                sides.append({"side": side, "error": error})
            else:
                sides.append({"side": side, "preview": preview})
    context = {
        "form": form,
        "sides": sides,
        "cash": cash_balance(account),
        "instrument": instrument,
    }
    return render(request, "exchange/partials/instrument_ticket_preview.html", context)


@trader_required
@require_POST
def order_place_view(request: HttpRequest, symbol: str, membership: Membership) -> HttpResponse:
    instrument = _instrument(symbol)
    form = TicketForm(request.POST)
    side = request.POST.get("side")
    if side not in Side.values:
        form.add_error(None, "Press Buy or Sell.")
    if not form.is_valid():
        return _page(request, instrument, form, status=400)
    try:
        placement = order_submit(
            account=trading_account_of(membership),
            instrument=instrument,
            side=side,
            placed_by=request.user,
            **form.order_arguments(),
        )
    except OrderRejected as error:
        field = error.field if error.field in form.fields else None
        form.add_error(field, f"{error.message} ({error.code})")
        return _page(request, instrument, form, status=400)
    messages.success(request, _placement_summary(orders_selector.order_outcome(placement.order)))
    return redirect("web:instrument", symbol=instrument.symbol)


def _placement_summary(outcome: orders_selector.Outcome) -> str:
    order = outcome.order
    side = order.get_side_display().lower()
    parts = [f"Order #{order.pk}: {side} {order.quantity} {order.instrument.symbol}"]
    if outcome.fills:
        filled = sum(fill.quantity for fill in outcome.fills)
        fees = sum((fill.fee for fill in outcome.fills), Decimal(0))
        prices = ", ".join(f"{f.quantity} at {f.price.normalize():f}" for f in outcome.fills)
        parts.append(f"filled {filled} ({prices} $/GPU-hr; fees {fees:.2f} USD)")
    if outcome.resting_quantity:
        parts.append(f"{outcome.resting_quantity} resting in the book")
    if outcome.market_remainder:
        parts.append(f"{outcome.market_remainder} cancelled unfilled")
    if order.status == Order.Status.REJECTED:
        parts.append(f"rejected by the matcher ({order.reject_code})")
    elif order.status == Order.Status.NEW:
        parts.append("accepted, waiting for the matcher")
    return "; ".join(parts) + "."


def _own_order(membership: Membership, order_id: int) -> Order:
    order = orders_selector.order_of(trading_account_of(membership), order_id)
    if order is None:
        raise Http404("No such order of your organization.")
    return order


def _back_to(order: Order) -> HttpResponse:
    return redirect(reverse("web:instrument", args=[order.instrument.symbol]))


@trader_required
@require_POST
def order_cancel_view(request: HttpRequest, order_id: int, membership: Membership) -> HttpResponse:
    order = _own_order(membership, order_id)
    try:
        order_cancel(order=order, requested_by=request.user)
    except OrderRejected as error:
        messages.error(request, f"Order #{order.pk} was not cancelled: {error.message}")
    else:
        messages.success(request, f"Order #{order.pk} cancelled.")
    return _back_to(order)


@trader_required
@require_POST
def order_amend_view(request: HttpRequest, order_id: int, membership: Membership) -> HttpResponse:
    order = _own_order(membership, order_id)
    form = AmendForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{form.fields[name].label}: {' '.join(errors)}" for name, errors in form.errors.items()
        )
        messages.error(request, f"Order #{order.pk} was not amended: {problems}")
        return _back_to(order)
    try:
        amended = order_replace(
            order=order,
            price=form.cleaned_data["price"],
            quantity=form.cleaned_data["quantity"],
            requested_by=request.user,
        )
    except OrderRejected as error:
        messages.error(request, f"Order #{order.pk} was not amended: {error.message}")
    else:
        messages.success(
            request,
            f"Order #{amended.pk} amended: {amended.open_quantity} open at "
            f"{amended.price.normalize():f} $/GPU-hr.",
        )
    return _back_to(order)
