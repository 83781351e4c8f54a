"""Portfolio pools in the browser: the list of an organization's pools, the sponsor's dashboard
and the member's page (issue 7; the cycle is in ``exchange.services.pools``).

One address, ``/pools/<id>/``, answers by who asks: the sponsor's organization gets the
dashboard (settings, cash, members, open demand, cut-off, rounds and their allocation, the
pool's holdings, the report); a member organization gets the pool's terms and only its own
demand, allocations, report and credit; anyone else gets 404, as do the ids of other members'
demand. The selectors of ``selectors.pools`` decide what each organization sees.

Every write calls one service of ``services.pools``. A refusal (``PoolError``, or the
exchange's ``OrderRejected`` for an offer) writes nothing and is shown next to the field it
names, or next to the button that asked, on the page rendered again with status 400. Viewers
see the pages; a write they post answers 403 (``trader_required``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from exchange.errors import OrderRejected, PoolError, PoolErrorCode
from exchange.models import Instrument, Membership, Organization, Region, Sku
from exchange.models.pools import Pool, PoolDemand, PoolMember, PoolOrder, PoolRound
from exchange.selectors import market
from exchange.selectors import orders as orders_selector
from exchange.selectors import pools as selectors
from exchange.selectors.funding import cash_balance
from exchange.services import pools as services
from exchange.services.ledger_accounts import micros_to_usd
from exchange.web.membership import (
    can_trade,
    membership_of,
    signed_in_user,
    trader_required,
    trading_account_of,
)
from exchange.web.refusals import refusal_text

POOLS_SHOWN_MAX = 100
MEMBERS_SHOWN_MAX = 500
DEMAND_ROWS_MAX = 200
ROUNDS_SHOWN_MAX = 12
POOL_ORDERS_SHOWN_MAX = 50
MONTHS_LISTED_MAX = 36
PRIORITY_MAX = 10_000
# A write refused by the service, or by the exchange for an order the pool places.
REFUSALS = (PoolError, OrderRejected)
USD_FIELD: dict[str, Any] = {"max_digits": 16, "decimal_places": 2}
PRICE_FIELD: dict[str, Any] = {"max_digits": 12, "decimal_places": 6}
# To the second, as the API sets it: an input by the minute showed a cut-off at 12:00:30 as
# 12:00, and the settings saved unchanged moved it there. A browser sends 12:00 for 12:00:00;
# the field reads both.
CUTOFF_INPUT = forms.DateTimeInput(
    attrs={"type": "datetime-local", "step": 1}, format="%Y-%m-%dT%H:%M:%S"
)


# Forms: their field names are the services' argument names, so a refusal's ``field`` finds
# the input it is about.


class SettingsForm(forms.Form):
    rule = forms.ChoiceField(choices=Pool.Rule.choices, label="Allocation rule")
    subsidy_percent = forms.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal(0),
        max_value=Decimal(100),
        label="Sponsor subsidy (%)",
        help_text="Share of each allocation's cost the sponsor pays.",
    )
    credit_line = forms.DecimalField(
        min_value=Decimal(0),
        label="Credit line per member (USD)",
        help_text="Lent to a member short of cash for margin and fees; 0: none.",
        **USD_FIELD,
    )
    cutoff_at = forms.DateTimeField(
        required=False,
        label="Next cut-off (UTC)",
        help_text="Open demand is placed then; empty: only with “Cut off now”.",
        widget=CUTOFF_INPUT,
    )

    def __init__(self, *args: Any, current_cutoff: datetime | None = None, **kwargs: Any) -> None:
        """``current_cutoff``: the pool's cut-off, which the form shows to the second."""
        super().__init__(*args, **kwargs)
        self.current_cutoff = current_cutoff

    def clean_cutoff_at(self) -> Any:
        moment = self.cleaned_data.get("cutoff_at")
        if moment is None:
            return None
        moment = moment.replace(tzinfo=UTC)  # Typed as UTC.
        # The input shows whole seconds; the API sets fractions of one. The cut-off it showed,
        # sent back, is the pool's own, not the start of its second.
        current = self.current_cutoff
        if current is not None and moment == current.astimezone(UTC).replace(microsecond=0):
            return current
        return moment


class CreateForm(SettingsForm):
    name = forms.CharField(max_length=services.NAME_LENGTH_MAX, label="Pool name")
    field_order = ["name", "rule", "subsidy_percent", "credit_line", "cutoff_at"]


class AmountForm(forms.Form):
    amount = forms.DecimalField(
        min_value=Decimal("0.01"),
        label="Amount (USD)",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0.01", "inputmode": "decimal"}),
        **USD_FIELD,
    )


class RepayForm(forms.Form):
    """Credit repaid to the micro-dollar, as the ledger keeps it: a loan covers margin and fees
    less a subsidy, rarely whole cents, and a form of cents could never repay its last part."""

    amount = forms.DecimalField(
        min_value=Decimal("0.000001"),
        max_digits=18,
        decimal_places=6,
        label="Amount (USD)",
        help_text="At most the credit owed, to 6 decimals.",
        widget=forms.NumberInput(
            attrs={"step": "0.000001", "min": "0.000001", "inputmode": "decimal"}
        ),
    )


class MemberAddForm(forms.Form):
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.all(),
        to_field_name="slug",
        label="Organization (slug)",
        widget=forms.TextInput(attrs={"placeholder": "for example lumen", "autocomplete": "off"}),
        error_messages={"invalid_choice": "No organization has this slug."},
    )
    priority = forms.IntegerField(
        min_value=0,
        max_value=PRIORITY_MAX,
        initial=100,
        label="Priority",
        help_text="Lower is served first under the priority rule.",
    )


class PriorityForm(forms.Form):
    priority = forms.IntegerField(min_value=0, max_value=PRIORITY_MAX, label="Priority")


class QuantityForm(forms.Form):
    quantity = forms.IntegerField(min_value=1, label="Contracts")


class ReallocateForm(QuantityForm):
    member = forms.ChoiceField(choices=[], label="To member")
    field_order = ["member", "quantity"]

    def __init__(self, *args: Any, members: list[PoolMember], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        member = self.fields["member"]
        assert isinstance(member, forms.ChoiceField)
        member.choices = [(str(m.pk), m.organization.name) for m in members]


class OfferForm(QuantityForm):
    price = forms.DecimalField(
        min_value=Decimal("0.000001"), label="Price ($/GPU-hr)", **PRICE_FIELD
    )


class QuantityFields(forms.Form):
    """A demand's size: GPUs for each month, or GPU-hours for each month (exactly one)."""

    gpus = forms.IntegerField(
        required=False, min_value=1, label="GPUs per month", help_text="Or give GPU-hours."
    )
    gpu_hours = forms.IntegerField(
        required=False,
        min_value=1,
        label="or GPU-hours per month",
        help_text="A whole number of contracts: one GPU for the month.",
    )
    limit_price = forms.DecimalField(
        min_value=Decimal("0.000001"),
        label="Limit price ($/GPU-hr)",
        help_text="You are never allocated above it.",
        **PRICE_FIELD,
    )


class DemandForm(QuantityFields):
    sku = forms.ModelChoiceField(
        queryset=Sku.objects.order_by("code"),
        to_field_name="code",
        label="SKU",
        empty_label="Choose a SKU",
    )
    region = forms.ModelChoiceField(
        queryset=Region.objects.order_by("code"),
        to_field_name="code",
        label="Region",
        empty_label="Choose a region",
    )
    months = forms.MultipleChoiceField(
        choices=[],
        label="Delivery months",
        widget=forms.CheckboxSelectMultiple,
        help_text="One demand per month, each of the size below.",
    )
    field_order = ["sku", "region", "months", "gpus", "gpu_hours", "limit_price"]

    def __init__(self, *args: Any, months: list[date], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["months"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(f"{month:%Y-%m}", f"{month:%b %Y}") for month in months]

    def clean_months(self) -> list[date]:
        return [date(int(v[:4]), int(v[5:7]), 1) for v in self.cleaned_data["months"]]


def _listed_months() -> list[date]:
    """The delivery months of the futures that trade: the demand form's checkboxes."""
    months = (
        market.instruments_listed(kind=Instrument.Kind.FUTURE, status=Instrument.Status.ACTIVE)
        .filter(pk__in=Instrument.objects.trading_at(timezone.now()))
        .order_by("delivery_start")
        .values_list("delivery_start", flat=True)
        .distinct()
    )
    return list(months[:MONTHS_LISTED_MAX])


# Rows the templates show, each with the forms of its own buttons.


@dataclass
class PoolRow:
    pool: Pool
    members_active: int
    credit_line: Decimal  # USD per member.


@dataclass
class HoldingRow:
    """Contracts held, with the forms of what the sponsor can do with them; ``member``: a
    graduate's holding (its form takes it back), else the pool's own."""

    holding: selectors.Holding
    forms: dict[str, forms.Form]
    member: PoolMember | None = None
    working_round: int | None = None  # The number of a working round buying the instrument.

    @property
    def gpu_hours(self) -> int:
        return self.holding.contracts * self.holding.instrument.gpu_hours_per_contract


@dataclass
class MemberRow:
    member: PoolMember
    credit_owed: Decimal
    priority_form: forms.Form
    graduate_error: str


@dataclass
class AllocationRow:
    line: selectors.ReportLine
    credit: Decimal


@dataclass
class RoundRow:
    round: PoolRound
    orders: list[PoolOrder]
    allocations: list[AllocationRow]
    close_error: str


@dataclass
class DemandRow:
    demand: PoolDemand
    amend_form: forms.Form | None  # Open demand, or a refused amendment.
    withdraw_error: str


def _refused(form: forms.Form, error: PoolError | OrderRejected) -> None:
    """The service's refusal next to its field, or above the form for one it does not show."""
    form.add_error(error.field if error.field in form.fields else None, refusal_text(error))


def _to_pool(pool: Pool) -> HttpResponse:
    return redirect("web:pool", pool_id=pool.pk)


def _sponsored(membership: Membership, pool_id: int) -> Pool:
    pool = selectors.pool_of_sponsor(membership.organization, pool_id)
    if pool is None:
        raise Http404("No such pool of your organization.")
    return pool


def _membership_in(membership: Membership, pool_id: int) -> PoolMember:
    member = selectors.member_of(membership.organization, pool_id)
    if member is None:
        raise Http404("Your organization is not a member of this pool.")
    return member


def _member_of_pool(pool: Pool, member_id: int) -> PoolMember:
    member = selectors.members_of(pool).filter(pk=member_id).first()
    if member is None:
        raise Http404("No such member of this pool.")
    return member


def _held(holdings: list[selectors.Holding], symbol: str) -> selectors.Holding:
    for holding in holdings:
        if holding.instrument.symbol == symbol:
            return holding
    raise Http404(f"No contracts of {symbol} held here.")


def _allocation_rows(report: selectors.Report) -> dict[int, list[AllocationRow]]:
    """The report's lines (one per allocation) by round id."""
    rows: dict[int, list[AllocationRow]] = {}
    for line in report.lines:
        allocation = line.allocation
        credit = micros_to_usd(allocation.credit)
        rows.setdefault(allocation.round_id, []).append(AllocationRow(line, credit))
    return rows


# The list of pools ---------------------------------------------------------------------------


def _list_page(
    request: HttpRequest,
    membership: Membership,
    create_form: CreateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    organization = membership.organization
    sponsored = list(selectors.pools_sponsored_by(organization)[:POOLS_SHOWN_MAX])
    context = {
        "organization": organization,
        "is_sponsor": organization.kind == Organization.Kind.SPONSOR,
        "can_trade": can_trade(membership),
        "pools": [
            PoolRow(
                pool,
                selectors.members_of(pool).filter(status=PoolMember.Status.ACTIVE).count(),
                micros_to_usd(pool.credit_line),
            )
            for pool in sponsored
        ],
        "memberships": list(selectors.memberships_of(organization)[:POOLS_SHOWN_MAX]),
        "create_form": create_form
        or CreateForm(prefix="create", initial={"subsidy_percent": 0, "credit_line": 0}),
    }
    return render(request, "exchange/pools/list.html", context, status=status)


@login_required
@require_GET
def pools(request: HttpRequest) -> HttpResponse:
    return _list_page(request, membership_of(request))


@trader_required
@require_POST
def pool_create_view(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = CreateForm(request.POST, prefix="create")
    if form.is_valid():
        try:
            pool = services.pool_create(
                sponsor=membership.organization, actor=signed_in_user(request), **form.cleaned_data
            )
        except PoolError as error:
            _refused(form, error)
        else:
            messages.success(
                request,
                f"Pool “{pool.name}” created with an account of its own: fund it, then add "
                "members.",
            )
            return _to_pool(pool)
    return _list_page(request, membership, form, status=400)


@login_required
@require_GET
def pool_detail(request: HttpRequest, pool_id: int) -> HttpResponse:
    """The sponsor's dashboard or the member's page, by who asks; anyone else: 404."""
    membership = membership_of(request)
    pool = selectors.pool_of_sponsor(membership.organization, pool_id)
    if pool is not None:
        return _sponsor_page(request, membership, pool)
    return _member_page(request, membership, _membership_in(membership, pool_id))


# The sponsor's dashboard ---------------------------------------------------------------------


class _Forms:
    """The page's forms by key (their prefix): the refused, bound one as posted, the others
    new."""

    def __init__(self, bound: dict[str, forms.Form] | None) -> None:
        self.bound = bound or {}

    def get(self, key: str, factory: Callable[..., forms.Form], **options: Any) -> forms.Form:
        return self.bound.get(key) or factory(prefix=key, **options)


def _member_rows(
    members: list[PoolMember], page_forms: _Forms, errors: dict[str, str]
) -> list[MemberRow]:
    return [
        MemberRow(
            member=member,
            credit_owed=selectors.credit_owed(member),
            priority_form=page_forms.get(
                f"priority-{member.pk}", PriorityForm, initial={"priority": member.priority}
            ),
            graduate_error=errors.get(f"graduate-{member.pk}", ""),
        )
        for member in members
    ]


def _graduate_holding_rows(members: list[PoolMember], page_forms: _Forms) -> list[HoldingRow]:
    return [
        HoldingRow(
            holding,
            {"take_back": page_forms.get(_take_back_key(member, holding), QuantityForm)},
            member,
        )
        for member in members
        if member.status == PoolMember.Status.GRADUATED
        for holding in selectors.member_holdings(member)
    ]


def _round_rows(
    pool: Pool, report: selectors.Report, errors: dict[str, str]
) -> tuple[list[RoundRow], dict[str, int]]:
    """The newest rounds with their tier orders and allocation, and the symbols that a working
    round is buying (to the round's number)."""
    by_round = _allocation_rows(report)
    rows = [
        RoundRow(
            round=round_,
            orders=list(selectors.pool_orders(round_)[:POOL_ORDERS_SHOWN_MAX]),
            allocations=by_round.get(round_.pk, []),
            close_error=errors.get(f"close-{round_.pk}", ""),
        )
        for round_ in selectors.rounds(pool)[:ROUNDS_SHOWN_MAX]
    ]
    working = {
        tier.instrument.symbol: row.round.number
        for row in rows
        if row.round.status == PoolRound.Status.WORKING
        for tier in row.orders
    }
    return rows, working


def _pool_holding_rows(
    pool: Pool, page_forms: _Forms, active: list[PoolMember], working: dict[str, int]
) -> list[HoldingRow]:
    """The pool's contracts with "Reallocate" and "Offer". A working round's fills sit in the
    pool's account until the round allocates them: they are its members', not yet the
    sponsor's to move, so the template shows their round instead of the forms."""
    rows = []
    for holding in selectors.pool_holdings(pool):
        symbol = holding.instrument.symbol
        actions = {
            "reallocate": page_forms.get(f"reallocate-{symbol}", ReallocateForm, members=active),
            "offer": page_forms.get(f"offer-{symbol}", OfferForm),
        }
        rows.append(HoldingRow(holding, actions, working_round=working.get(symbol)))
    return rows


def _sponsor_page(
    request: HttpRequest,
    membership: Membership,
    pool: Pool,
    *,
    bound: dict[str, forms.Form] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The dashboard; ``bound`` holds the refused form by its key (its prefix), ``errors`` the
    refusal of a button without fields (cut-off, close, graduate) by its key."""
    page_forms, errors = _Forms(bound), errors or {}
    members = list(selectors.members_of(pool)[:MEMBERS_SHOWN_MAX])
    active = [m for m in members if m.status == PoolMember.Status.ACTIVE]
    report = selectors.report(pool)
    rounds, working = _round_rows(pool, report, errors)
    live = orders_selector.orders_of(pool.account, status=orders_selector.STATUS_LIVE)
    context = {
        "pool": pool,
        "organization": membership.organization,
        "can_trade": can_trade(membership),
        "settings_form": page_forms.get("settings", SettingsForm, initial=_settings_initial(pool)),
        "fund_form": page_forms.get("fund", AmountForm),
        "withdraw_form": page_forms.get("withdraw", AmountForm),
        "member_add_form": page_forms.get("member", MemberAddForm),
        "pool_cash": cash_balance(pool.account),
        "sponsor_cash": cash_balance(trading_account_of(membership)),
        "members": _member_rows(members, page_forms, errors),
        "graduate_holdings": _graduate_holding_rows(members, page_forms),
        "open_demand": selectors.open_demand_by_instrument(pool),
        "cut_off_error": errors.get("cut-off", ""),
        "rounds": rounds,
        "holdings": _pool_holding_rows(pool, page_forms, active, working),
        "has_active_members": bool(active),
        "open_orders": list(live[:POOL_ORDERS_SHOWN_MAX]),
        "transfers": list(selectors.transfers(pool)[:POOL_ORDERS_SHOWN_MAX]),
        "report": report,
    }
    return render(request, "exchange/pools/sponsor.html", context, status=status)


def _settings_initial(pool: Pool) -> dict[str, Any]:
    return {
        "rule": pool.rule,
        "subsidy_percent": pool.subsidy_percent,
        "credit_line": micros_to_usd(pool.credit_line).quantize(Decimal("0.01")),
        "cutoff_at": pool.cutoff_at.astimezone(UTC) if pool.cutoff_at else None,
    }


def _take_back_key(member: PoolMember, holding: selectors.Holding) -> str:
    return f"take-back-{member.pk}-{holding.instrument.symbol}"


def _sponsor_write(
    request: HttpRequest,
    membership: Membership,
    pool: Pool,
    form: forms.Form,
    act: Callable[[dict[str, Any]], str],
) -> HttpResponse:
    """Validate ``form``, call the service in ``act`` (it answers the success message); on a
    refusal render the dashboard again with the form, its error next to its field."""
    if form.is_valid():
        try:
            done = act(form.cleaned_data)
        except REFUSALS as error:
            _refused(form, error)
        else:
            messages.success(request, done)
            return _to_pool(pool)
    assert form.prefix is not None
    return _sponsor_page(request, membership, pool, bound={form.prefix: form}, status=400)


def _sponsor_action(
    request: HttpRequest, membership: Membership, pool: Pool, key: str, act: Callable[[], str]
) -> HttpResponse:
    """A button without fields: its refusal is shown next to it."""
    try:
        done = act()
    except PoolError as error:
        errors = {key: refusal_text(error)}
        return _sponsor_page(request, membership, pool, errors=errors, status=400)
    messages.success(request, done)
    return _to_pool(pool)


@trader_required
@require_POST
def pool_settings_view(request: HttpRequest, pool_id: int, membership: Membership) -> HttpResponse:
    pool = _sponsored(membership, pool_id)

    def act(data: dict[str, Any]) -> str:
        services.pool_settings_set(pool=pool, actor=signed_in_user(request), **data)
        return f"Settings of “{pool.name}” saved."

    form = SettingsForm(request.POST, prefix="settings", current_cutoff=pool.cutoff_at)
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_fund_view(
    request: HttpRequest, pool_id: int, membership: Membership, withdraw: bool = False
) -> HttpResponse:
    """Cash from the sponsor's main account to the pool's, or back (``withdraw``)."""
    pool = _sponsored(membership, pool_id)

    def act(data: dict[str, Any]) -> str:
        amount = data["amount"]
        services.pool_fund(
            pool=pool, amount=amount, withdraw=withdraw, actor=signed_in_user(request)
        )
        if withdraw:
            return f"{amount:,.2f} USD moved from the pool back to the sponsor's main account."
        return f"{amount:,.2f} USD moved from the sponsor's main account to the pool."

    form = AmountForm(request.POST, prefix="withdraw" if withdraw else "fund")
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_member_add_view(
    request: HttpRequest, pool_id: int, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)

    def act(data: dict[str, Any]) -> str:
        member = services.pool_member_add(pool=pool, actor=signed_in_user(request), **data)
        return f"{member.organization.name} joined the pool (priority {member.priority})."

    form = MemberAddForm(request.POST, prefix="member")
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_member_priority_view(
    request: HttpRequest, pool_id: int, member_id: int, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)
    member = _member_of_pool(pool, member_id)

    def act(data: dict[str, Any]) -> str:
        services.pool_member_priority_set(
            member=member, priority=data["priority"], actor=signed_in_user(request)
        )
        return f"{member.organization.name}: priority {data['priority']}."

    form = PriorityForm(request.POST, prefix=f"priority-{member.pk}")
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_member_graduate_view(
    request: HttpRequest, pool_id: int, member_id: int, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)
    member = _member_of_pool(pool, member_id)

    def act() -> str:
        services.pool_member_graduate(member=member, actor=signed_in_user(request))
        return (
            f"{member.organization.name} graduated: its demand not yet allocated is "
            "withdrawn, and a working round's orders no longer buy its share; what it was "
            "allocated stays its own until you take it back."
        )

    return _sponsor_action(request, membership, pool, f"graduate-{member.pk}", act)


@trader_required
@require_POST
def pool_take_back_view(
    request: HttpRequest, pool_id: int, member_id: int, symbol: str, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)
    member = _member_of_pool(pool, member_id)
    holding = _held(selectors.member_holdings(member), symbol)

    def act(data: dict[str, Any]) -> str:
        transfer = services.pool_take_back(
            member=member,
            instrument=holding.instrument,
            quantity=data["quantity"],
            actor=signed_in_user(request),
        )
        return (
            f"{transfer.quantity} {symbol} taken back from {member.organization.name} at "
            f"{transfer.price.normalize():f} $/GPU-hr."
        )

    form = QuantityForm(request.POST, prefix=_take_back_key(member, holding))
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_cut_off_view(request: HttpRequest, pool_id: int, membership: Membership) -> HttpResponse:
    pool = _sponsored(membership, pool_id)

    def act() -> str:
        round_ = services.pool_cut_off(pool=pool, actor=signed_in_user(request))
        orders = list(selectors.pool_orders(round_))
        refused = [order for order in orders if order.refusal_code]
        if refused and refused[0].refusal_code == PoolErrorCode.MARGIN_CALL_OPEN:
            return f"Round {round_.number} cut off, no order placed: {refused[0].refusal_message}"
        placed = f"Round {round_.number} cut off: {len(orders) - len(refused)} pool order(s) placed"
        return placed + (f", {len(refused)} refused (see the round)." if refused else ".")

    return _sponsor_action(request, membership, pool, "cut-off", act)


@trader_required
@require_POST
def pool_round_close_view(
    request: HttpRequest, pool_id: int, round_id: int, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)
    round_ = selectors.round_of(pool, round_id)
    if round_ is None:
        raise Http404("No such round of this pool.")

    def act() -> str:
        closed = services.pool_round_close(
            round_=round_, actor=signed_in_user(request), organization=membership.organization
        )
        if closed.status == PoolRound.Status.ALLOCATED:
            return f"Round {closed.number} closed and allocated."
        return f"Round {closed.number} closed; it allocates once its cancels are processed."

    return _sponsor_action(request, membership, pool, f"close-{round_.pk}", act)


@trader_required
@require_POST
def pool_reallocate_view(
    request: HttpRequest, pool_id: int, symbol: str, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)
    holding = _held(selectors.pool_holdings(pool), symbol)
    members = [m for m in selectors.members_of(pool)[:MEMBERS_SHOWN_MAX] if m.status == "active"]

    def act(data: dict[str, Any]) -> str:
        member = next(m for m in members if str(m.pk) == data["member"])
        transfer = services.pool_reallocate(
            member=member,
            instrument=holding.instrument,
            quantity=data["quantity"],
            actor=signed_in_user(request),
        )
        return (
            f"{transfer.quantity} {symbol} reallocated to {member.organization.name} at "
            f"{transfer.price.normalize():f} $/GPU-hr."
        )

    form = ReallocateForm(request.POST, prefix=f"reallocate-{symbol}", members=members)
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_offer_view(
    request: HttpRequest, pool_id: int, symbol: str, membership: Membership
) -> HttpResponse:
    pool = _sponsored(membership, pool_id)
    holding = _held(selectors.pool_holdings(pool), symbol)

    def act(data: dict[str, Any]) -> str:
        order = services.pool_offer(
            pool=pool,
            instrument=holding.instrument,
            quantity=data["quantity"],
            price=data["price"],
            actor=signed_in_user(request),
        )
        return (
            f"Order #{order.pk}: sell {order.quantity} {symbol} at "
            f"{data['price'].normalize():f} $/GPU-hr from the pool "
            f"({order.get_status_display().lower()})."
        )

    form = OfferForm(request.POST, prefix=f"offer-{symbol}")
    return _sponsor_write(request, membership, pool, form, act)


@trader_required
@require_POST
def pool_offer_cancel_view(
    request: HttpRequest, pool_id: int, order_id: int, membership: Membership
) -> HttpResponse:
    """Withdraw an offer of the pool's. Its refusal (it ended meanwhile, so it has left the
    table of open orders) is shown at the top of the page."""
    pool = _sponsored(membership, pool_id)
    order = selectors.pool_offer_of(pool, order_id)
    if order is None:
        raise Http404("No such offer of this pool.")
    try:
        cancelled = services.pool_offer_cancel(
            pool=pool, order=order, actor=signed_in_user(request)
        )
    except REFUSALS as error:
        messages.error(request, f"Order #{order.pk} not withdrawn: {refusal_text(error)}")
        return _sponsor_page(request, membership, pool, status=400)
    messages.success(
        request,
        f"Order #{order.pk} withdrawn: {cancelled.cancelled_quantity} {order.instrument.symbol} "
        "back with the pool.",
    )
    return _to_pool(pool)


# The member's page ---------------------------------------------------------------------------


def _member_page(
    request: HttpRequest,
    membership: Membership,
    member: PoolMember,
    *,
    bound: dict[str, forms.Form] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The pool as one member sees it: its terms and only this member's own rows."""
    bound, errors = bound or {}, errors or {}
    pool = member.pool
    report = selectors.report(pool, member=member)

    def demand_row(demand: PoolDemand) -> DemandRow:
        key = f"amend-{demand.pk}"
        amend_form = bound.get(key)
        if amend_form is None and demand.status == PoolDemand.Status.OPEN:
            # Without the trailing zeros, and never in exponent notation ("1E+1").
            limit = f"{demand.limit_price.normalize():f}"
            initial = {"gpus": demand.quantity, "limit_price": limit}
            amend_form = QuantityFields(prefix=key, initial=initial)
        return DemandRow(demand, amend_form, errors.get(f"withdraw-{demand.pk}", ""))

    credit = selectors.credit_owed(member)
    context = {
        "pool": pool,
        "member": member,
        "organization": membership.organization,
        "can_trade": can_trade(membership),
        "is_active": member.status == PoolMember.Status.ACTIVE,
        "credit_line": micros_to_usd(pool.credit_line),
        "demand_form": bound.get("demand") or DemandForm(prefix="demand", months=_listed_months()),
        "demands": [
            demand_row(demand)
            for demand in selectors.demands(pool, member=member)[:DEMAND_ROWS_MAX]
        ],
        "allocations": [
            AllocationRow(line, micros_to_usd(line.allocation.credit)) for line in report.lines
        ],
        "report": report,
        "holdings": [HoldingRow(h, {}) for h in selectors.member_holdings(member)],
        "credit_owed": credit,
        "cash": cash_balance(member.account),
        "repay_form": bound.get("repay") or RepayForm(prefix="repay", initial={"amount": credit}),
    }
    return render(request, "exchange/pools/member.html", context, status=status)


def _member_write(
    request: HttpRequest,
    membership: Membership,
    member: PoolMember,
    form: forms.Form,
    act: Callable[[dict[str, Any]], str],
) -> HttpResponse:
    if form.is_valid():
        try:
            done = act(form.cleaned_data)
        except PoolError as error:
            _refused(form, error)
        else:
            messages.success(request, done)
            return _to_pool(member.pool)
    assert form.prefix is not None
    return _member_page(request, membership, member, bound={form.prefix: form}, status=400)


def _own_demand(member: PoolMember, demand_id: int) -> PoolDemand:
    demand = selectors.demand_of(member, demand_id)
    if demand is None:
        raise Http404("No such demand of your organization.")
    return demand


def _demand_size(data: dict[str, Any]) -> str:
    if data.get("gpus") is not None:
        return f"{data['gpus']:,} GPUs"
    return f"{data['gpu_hours']:,} GPU-hours"


@trader_required
@require_POST
def pool_demand_submit_view(
    request: HttpRequest, pool_id: int, membership: Membership
) -> HttpResponse:
    member = _membership_in(membership, pool_id)

    def act(data: dict[str, Any]) -> str:
        demands = services.demand_submit(member=member, actor=signed_in_user(request), **data)
        months = ", ".join(f"{d.instrument.delivery_start:%b %Y}" for d in demands)
        return (
            f"Demand submitted for {months}: {_demand_size(data)} each at up to "
            f"{data['limit_price'].normalize():f} $/GPU-hr."
        )

    form = DemandForm(request.POST, prefix="demand", months=_listed_months())
    return _member_write(request, membership, member, form, act)


@trader_required
@require_POST
def pool_demand_amend_view(
    request: HttpRequest, pool_id: int, demand_id: int, membership: Membership
) -> HttpResponse:
    member = _membership_in(membership, pool_id)
    demand = _own_demand(member, demand_id)

    def act(data: dict[str, Any]) -> str:
        amended = services.demand_amend(demand=demand, actor=signed_in_user(request), **data)
        return (
            f"Demand #{amended.pk} amended: {amended.gpu_hours:,} GPU-hours of "
            f"{amended.instrument.symbol} at up to {amended.limit_price.normalize():f} $/GPU-hr."
        )

    form = QuantityFields(request.POST, prefix=f"amend-{demand.pk}")
    return _member_write(request, membership, member, form, act)


@trader_required
@require_POST
def pool_demand_withdraw_view(
    request: HttpRequest, pool_id: int, demand_id: int, membership: Membership
) -> HttpResponse:
    member = _membership_in(membership, pool_id)
    demand = _own_demand(member, demand_id)
    try:
        services.demand_withdraw(demand=demand, actor=signed_in_user(request))
    except PoolError as error:
        errors = {f"withdraw-{demand.pk}": refusal_text(error)}
        return _member_page(request, membership, member, errors=errors, status=400)
    messages.success(request, f"Demand #{demand.pk} ({demand.instrument.symbol}) withdrawn.")
    return _to_pool(member.pool)


@trader_required
@require_POST
def pool_credit_repay_view(
    request: HttpRequest, pool_id: int, membership: Membership
) -> HttpResponse:
    member = _membership_in(membership, pool_id)

    def act(data: dict[str, Any]) -> str:
        services.pool_credit_repay(
            member=member, amount=data["amount"], actor=signed_in_user(request)
        )
        return f"{data['amount'].normalize():,f} USD of credit repaid to the pool."

    return _member_write(request, membership, member, RepayForm(request.POST, prefix="repay"), act)
