"""The instrument page and trading on it: the book, the tape, the price chart, the order ticket
with its collateral preview, and the member's open orders with cancel and amend.

The book, the tape and "my open orders" are partial views the page re-fetches with htmx every
2 seconds. Orders go through the same services as the REST API (``order_submit``,
``order_dry_run``, ``order_cancel``, ``order_replace``), so the ticket's refusals are the
engine's and risk's named codes, shown next to the field they name.
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
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
from exchange.selectors import positions as positions_selector
from exchange.selectors.funding import cash_balance
from exchange.services.collateral import Preview
from exchange.services.ledger_accounts import USD_CODE, entitlement_name, entitlement_parts
from exchange.services.orders import (
    order_cancel,
    order_dry_run,
    order_replace,
    order_submit,
    position_limit,
    price_limits,
)
from exchange.symbols import parse_symbol
from exchange.web.membership import (
    can_trade,
    membership_of,
    signed_in_user,
    trader_required,
    trading_account_of,
)
from exchange.web.order_reasons import done_reason_text
from exchange.web.refusals import refusal_text

BOOK_LEVELS = 10
TAPE_TRADES = 30
CHART_TRADES = 200
SETTLEMENTS_SHOWN = 5
SETTLEMENTS_CHARTED = 60
ENDED_ORDERS_SHOWN = 5  # My orders in this instrument that ended lately, under the open ones.
# Where a refused ticket waits, in the session, for the page the refusal redirects to.
REFUSED_TICKET_SESSION_KEY = "web:refused-ticket"
REFUSED_AMEND_SESSION_KEY = "web:refused-amend"
AMEND_FIELDS = ("price", "quantity")
PRICE_FIELD: dict[str, Any] = {
    "max_digits": 18,
    "decimal_places": 6,
    "min_value": Decimal("0.000001"),
}
# The abbreviations traders know first, then what they mean.
TIME_IN_FORCE_CHOICES = [
    (value, f"{value.upper()} ({label.lower()})") for value, label in Order.TimeInForce.choices
]
PRICE_HELP: dict[str, str] = {
    Instrument.Kind.FUTURE: "$/GPU-hr; not for market orders.",
    Instrument.Kind.OPTION: "Premium, $/GPU-hr; not for market orders.",
    Instrument.Kind.RESALE: "Price of the block, $/GPU-hr; not for market orders.",
}


class TicketForm(forms.Form):
    """The order ticket. The side comes from the button pressed (Buy or Sell)."""

    # Their help texts, with the instrument's units, are set in __init__.
    quantity = forms.IntegerField(min_value=1, label="Quantity")
    price = forms.DecimalField(required=False, label="Price", **PRICE_FIELD)
    type = forms.ChoiceField(choices=Order.Type.choices, initial=Order.Type.LIMIT, label="Type")
    # Left at its default, as an API client leaving the field out: GTC for a limit order, IOC
    # for a market order (which never rests).
    time_in_force = forms.ChoiceField(
        choices=[("", "Default (limit: GTC, market: IOC)"), *TIME_IN_FORCE_CHOICES],
        required=False,
        initial="",
        label="Time in force",
        help_text="Market orders: IOC or FOK.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at",
        help_text="UTC; good-till-date (GTD) orders only.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    post_only = forms.BooleanField(required=False, label="Post only")

    def __init__(self, *args: Any, instrument: Instrument, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The units of this instrument's price and contract, next to the inputs.
        hours = instrument.gpu_hours_per_contract
        self.fields["quantity"].help_text = f"Contracts of {hours:,} GPU-hours."
        self.fields["price"].help_text = PRICE_HELP[instrument.kind]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        limit = cleaned.get("type") == Order.Type.LIMIT
        if limit and cleaned.get("price") is None and "price" not in self.errors:
            self.add_error("price", "A limit order needs a price.")
        market = cleaned.get("type") == Order.Type.MARKET
        if market:
            cleaned["price"] = None
        if not cleaned.get("time_in_force") and "time_in_force" not in self.errors:
            cleaned["time_in_force"] = Order.TimeInForce.IOC if market else Order.TimeInForce.GTC
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
    """A new price and/or open quantity for a resting limit order; a blank one is kept."""

    price = forms.DecimalField(required=False, label="New price", **PRICE_FIELD)
    quantity = forms.IntegerField(
        required=False, min_value=0, label="New quantity", help_text="0 cancels."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors and cleaned.get("price") is None and cleaned.get("quantity") is None:
            raise forms.ValidationError("Give a new price or a new quantity.")
        return cleaned


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
        return {"instrument": instrument, "member": None, "orders": [], "ended": []}
    account = trading_account_of(membership)
    live = orders_selector.orders_of(
        account, status=orders_selector.STATUS_LIVE, instrument=instrument.symbol
    )
    ended = orders_selector.orders_ended_lately(account, instrument=instrument.symbol)[
        :ENDED_ORDERS_SHOWN
    ]
    return {
        "instrument": instrument,
        "member": membership,
        "can_trade": can_trade(membership),
        "orders": list(live),
        "ended": [{"order": order, "why": done_reason_text(order)} for order in ended],
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


def _position_limit_context(
    instrument: Instrument, membership: Membership | None
) -> dict[str, Any]:
    """The position limit orders here count against, its future, and for a member the
    organization's net exposure to that future with its options (long positive) and whether
    staff exempted it."""
    limit = position_limit(instrument)
    if limit is None:
        return {"position_limit": None}
    future = instrument.underlying if instrument.kind == Instrument.Kind.OPTION else instrument
    assert future is not None  # It has a limit.
    context: dict[str, Any] = {"position_limit": limit, "position_limit_future": future}
    if membership is not None:
        context["position_net"] = positions_selector.organization_exposure(
            organization_id=membership.organization_id, future_id=future.pk, side=Side.BUY
        ).net
        context["position_limit_exempt"] = membership.organization.position_limit_exempt
    return context


def _page(
    request: HttpRequest, instrument: Instrument, form: TicketForm, staged_side: str | None
) -> HttpResponse:
    membership = _member(request)
    context = {
        **_book_context(instrument),
        **_my_orders_context(instrument, membership),
        "amend_refused": _refused_amend(request, instrument),
        "trades": market.trades_recent(instrument, limit=TAPE_TRADES),
        "chain": risk.option_chain(instrument, at=timezone.now())
        if instrument.kind == Instrument.Kind.FUTURE
        else None,
        "settlements": instrument.settlement_prices.order_by("-trading_date")[:SETTLEMENTS_SHOWN],
        "chart": _chart(instrument),
        "price_limits": price_limits(instrument),
        "price_limit_percent": Decimal(settings.EXCHANGE_PRICE_LIMIT) * 100,
        **_position_limit_context(instrument, membership),
        "form": form,
        "staged_side": staged_side,
    }
    return render(request, "exchange/instrument.html", context)


@require_GET
def instrument_detail(request: HttpRequest, symbol: str) -> HttpResponse:
    instrument = _instrument(symbol)
    refused = _refused_ticket(request, instrument)
    if refused is not None:
        return _page(request, instrument, *refused)
    form = TicketForm(initial=_initial_ticket(request), instrument=instrument)
    return _page(request, instrument, form, request.GET.get("side"))


def _refuse_ticket(
    request: HttpRequest, instrument: Instrument, side: str, errors: list[tuple[str | None, str]]
) -> HttpResponse:
    """Back to the instrument page, a refused ticket as a placed one is (POST/redirect/GET:
    reloading the page does not post the order again). What was entered, the side pressed and
    ``errors``, those not the form's own (field or None, message), wait in the session for the
    page (``_refused_ticket``)."""
    request.session[REFUSED_TICKET_SESSION_KEY] = {
        "symbol": instrument.symbol,
        "data": {
            name: request.POST[name] for name in TicketForm.base_fields if name in request.POST
        },
        "side": side,
        "errors": errors,
    }
    return redirect("web:instrument", symbol=instrument.symbol)


def _refused_ticket(
    request: HttpRequest, instrument: Instrument
) -> tuple[TicketForm, str | None] | None:
    """The ticket ``_refuse_ticket`` left for this page, once: the form bound to what was
    entered, with its own errors and the refusal's, and the side pressed."""
    refused = request.session.pop(REFUSED_TICKET_SESSION_KEY, None)
    if refused is None or refused["symbol"] != instrument.symbol:
        return None
    form = TicketForm(refused["data"], instrument=instrument)
    form.is_valid()  # The form's own errors, as they were when it was posted.
    for field, message in refused["errors"]:
        form.add_error(field, message)
    return form, refused["side"] or None


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
    form = TicketForm(request.POST, instrument=instrument)
    account = trading_account_of(membership)
    sides: list[dict[str, Any]] = []
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
                parts = _held_parts(preview, form.cleaned_data["quantity"])
                held = _held_entitlements(preview)
                cash = [part.amount for part in preview.collateral if part.asset == USD_CODE]
                sides.append(
                    {
                        "side": side,
                        "preview": preview,
                        "parts": parts,
                        "held": held,
                        "cash": cash,
                    }
                )
    context = {
        "form": form,
        # An untouched ticket gets a hint rather than a list of what is missing.
        "problems": _problems(form)
        if request.POST.get("quantity") or request.POST.get("price")
        else [],
        "sides": sides,
        "cash": cash_balance(account),
        "instrument": instrument,
    }
    return render(request, "exchange/partials/instrument_ticket_preview.html", context)


def _problems(form: forms.Form) -> list[str]:
    """A bound form's errors as sentences that name their field."""
    return [
        f"{form.fields[name].label}: {error}" if name in form.fields else str(error)
        for name, errors in form.errors.items()
        for error in errors
    ]


def _held_entitlements(preview: Preview) -> list[tuple[int | Decimal, str]]:
    """The GPU-hour entitlements a resale seller hands over, named for people, by month."""
    named = []
    for part in preview.collateral:
        parts = entitlement_parts(part.asset)
        if parts is not None:
            named.append(
                (part.amount, entitlement_name(parts.sku_code, parts.region_code, parts.month))
            )
    return named


def _held_parts(preview: Preview, quantity: int) -> list[tuple[str, Decimal]]:
    """The USD the dry run holds, split into margin, premium (or price) and fee.

    ``collateral_preview`` holds, per contract, the margin, the fee at the higher rate and, for
    a buyer of an option or resale block, the premium or price; the last is what remains of
    the total after the other two, so the parts always add up to the held amount exactly.
    """
    usd = sum((part.amount for part in preview.collateral if part.asset == USD_CODE), Decimal(0))
    if not usd:
        return []
    margin = preview.margin_per_contract * quantity
    fee = preview.fee_per_contract_max * quantity
    paid = usd - margin - fee
    kind = preview.instrument.kind
    paid_label = "Premium" if kind == Instrument.Kind.OPTION else "Price"
    parts = [("Margin", margin), (paid_label, paid), ("Fee (at most)", fee)]
    return [(label, amount) for label, amount in parts if amount]


@trader_required
@require_POST
def order_place_view(request: HttpRequest, symbol: str, membership: Membership) -> HttpResponse:
    instrument = _instrument(symbol)
    form = TicketForm(request.POST, instrument=instrument)
    side = request.POST.get("side", "")
    if side not in Side.values:
        return _refuse_ticket(request, instrument, "", [(None, "Press Buy or Sell.")])
    if not form.is_valid():
        return _refuse_ticket(request, instrument, side, [])
    try:
        placement = order_submit(
            account=trading_account_of(membership),
            instrument=instrument,
            side=side,
            placed_by=signed_in_user(request),
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
            **form.order_arguments(),
        )
    except OrderRejected as error:
        field = error.field if error.field in form.fields else None
        return _refuse_ticket(
            request, instrument, side, [(field, f"{error.message} ({error.code})")]
        )
    outcome = orders_selector.order_outcome(placement.order)
    messages.add_message(request, _placement_level(outcome), _placement_summary(outcome))
    return redirect("web:instrument", symbol=instrument.symbol)


def _placement_level(outcome: orders_selector.Outcome) -> int:
    """Refused by the matcher: an error; not matched yet (an external matcher did not answer
    within the wait): news; neither filled nor resting (a killed IOC or FOK): a warning;
    otherwise a success."""
    if outcome.order.status == Order.Status.REJECTED:
        return messages.ERROR
    if outcome.order.status == Order.Status.NEW:
        return messages.INFO
    if not outcome.fills and not outcome.resting_quantity:
        return messages.WARNING
    return messages.SUCCESS


def _placement_summary(outcome: orders_selector.Outcome) -> str:
    order = outcome.order
    side = order.get_side_display().lower()
    limit = f"{order.price.normalize():f} $/GPU-hr" if order.price is not None else "market"
    parts = [
        f"Order #{order.pk}: {side} {order.quantity} {order.instrument.symbol} at {limit} "
        f"({order.time_in_force.upper()})"
    ]
    if outcome.fills:
        parts.append(_fills_text(outcome.fills))
    if outcome.resting_quantity:
        parts.append(f"{outcome.resting_quantity} resting in the book")
    if outcome.market_remainder:
        parts.append(f"{outcome.market_remainder} cancelled unfilled")
    if order.status == Order.Status.REJECTED:
        parts.append(f"rejected by the matcher ({order.reject_code})")
    elif order.status == Order.Status.NEW:
        parts.append("accepted, waiting for the matcher")
    return "; ".join(parts) + "."


def _fills_text(fills: Sequence[orders_selector.Fill]) -> str:
    filled = sum(fill.quantity for fill in fills)
    fees = sum((fill.fee for fill in fills), Decimal(0))
    prices = ", ".join(f"{f.quantity} at {f.price.normalize():f}" for f in fills)
    return f"filled {filled} ({prices} $/GPU-hr; fees {fees:.2f} USD)"


def _own_order(membership: Membership, order_id: int) -> Order:
    order = orders_selector.order_of(trading_account_of(membership), order_id)
    if order is None:
        raise Http404("No such order of your organization.")
    return order


def _back_to(order: Order) -> HttpResponse:
    return redirect(reverse("web:instrument", args=[order.instrument.symbol]))


def _refuse_amend(request: HttpRequest, order: Order, errors: dict[str, str]) -> None:
    """Keeps a refused amend for the instrument page after the redirect, once: the order, what
    was typed, and the refusal of each field it names (``errors``), shown next to that field
    of the order's Amend form, which opens on it (the page's message alone said it above the
    page, and the form closed on what was typed)."""
    request.session[REFUSED_AMEND_SESSION_KEY] = {
        "order": order.pk,
        "typed": {name: request.POST.get(name, "") for name in AMEND_FIELDS},
        "errors": errors,
    }


def _refused_amend(request: HttpRequest, instrument: Instrument) -> dict[str, Any] | None:
    refused = request.session.pop(REFUSED_AMEND_SESSION_KEY, None)
    if refused is None:
        return None
    order = Order.objects.filter(pk=refused["order"], instrument=instrument).first()
    return refused if order is not None else None


@trader_required
@require_POST
def order_cancel_view(request: HttpRequest, order_id: int, membership: Membership) -> HttpResponse:
    order = _own_order(membership, order_id)
    try:
        cancelled = order_cancel(
            order=order,
            requested_by=signed_in_user(request),
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
        )
    except OrderRejected as error:
        messages.error(request, f"Order #{order.pk} was not cancelled: {refusal_text(error)}")
    else:
        if cancelled.command_pending:  # An external matcher has not answered.
            messages.info(
                request, f"Order #{order.pk}: the cancel is accepted, waiting for the matcher."
            )
        else:
            messages.success(request, f"Order #{order.pk} cancelled.")
    return _back_to(order)


@trader_required
@require_POST
def order_amend_view(request: HttpRequest, order_id: int, membership: Membership) -> HttpResponse:
    order = _own_order(membership, order_id)
    form = AmendForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(_problems(form))
        messages.error(request, f"Order #{order.pk} was not amended: {problems}")
        errors = {
            name: " ".join(str(error) for error in form.errors[name])
            for name in AMEND_FIELDS
            if name in form.errors
        }
        if errors:
            _refuse_amend(request, order, errors)
        return _back_to(order)
    price = form.cleaned_data["price"] if form.cleaned_data["price"] is not None else order.price
    quantity = form.cleaned_data["quantity"]
    if price is None:  # A market order, which has no price to keep: the service's refusal.
        messages.error(
            request, f"Order #{order.pk} was not amended: only limit orders can be amended."
        )
        return _back_to(order)
    filled_before = order.filled_quantity
    try:
        amended = order_replace(
            order=order,
            price=price,
            quantity=order.open_quantity if quantity is None else quantity,
            requested_by=signed_in_user(request),
            wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
        )
    except OrderRejected as error:
        messages.error(request, f"Order #{order.pk} was not amended: {refusal_text(error)}")
        if error.field in AMEND_FIELDS:
            _refuse_amend(request, order, {error.field: refusal_text(error)})
    else:
        if amended.command_pending:  # An external matcher has not answered.
            messages.info(
                request, f"Order #{order.pk}: the amend is accepted, waiting for the matcher."
            )
        else:
            messages.success(request, _amend_summary(amended, filled_before))
    return _back_to(order)


def _amend_summary(order: Order, filled_before: int) -> str:
    """What the amend did: the fills it made (the order's last ones, ``filled_before`` being
    its filled quantity before), what is left open, or that it was cancelled."""
    fills = _fills_since(order, filled_before)
    if not fills and order.status == Order.Status.CANCELLED:
        return f"Order #{order.pk} cancelled (new quantity 0)."
    assert order.price is not None, "only limit orders are amended"
    parts = [_fills_text(fills)] if fills else []
    if order.open_quantity:
        parts.append(f"{order.open_quantity} open at {order.price.normalize():f} $/GPU-hr")
    elif order.status == Order.Status.CANCELLED:
        parts.append("the rest cancelled")
    return f"Order #{order.pk} amended: " + "; ".join(parts) + "."


def _fills_since(order: Order, filled_before: int) -> list[orders_selector.Fill]:
    """The order's fills after its first ``filled_before`` contracts, oldest first."""
    if order.filled_quantity <= filled_before:
        return []
    fills = orders_selector.order_outcome(order).fills
    new: list[orders_selector.Fill] = []
    left = order.filled_quantity - filled_before
    for fill in reversed(fills):
        if left <= 0:
            break
        new.insert(0, fill)
        left -= fill.quantity
    return new
