"""Portfolio pools (issue 7; the cycle is in ``exchange.services.pools``): a sponsor pools its
startups' demand, buys as one big buyer from the pool's own account, and allocates the fills.

Who sees what is the rule of ``exchange.selectors.pools``: the sponsor's organization sees its
pool whole (settings, the pool account's cash, members, all demand, the tier orders of each
round, all allocations, the report); a member organization sees the pool's terms and only its
own membership, demand, allocations, transfers, holdings and report. Anyone else gets 404 for the
pool, and a member gets 404 for the ids of other members' objects, as if they did not exist.
A member asking for what only the sponsor does gets 403 ``POOL_SPONSOR_ONLY``; the sponsor asking
to act as a member (submit demand, repay credit), 403 ``POOL_NOT_A_MEMBER``.

Reads need the ``read`` scope, the cycle's writes ``trade``, moving cash (fund, withdraw, repay)
``transfer``. Money is USD as decimal strings (the ledger's micro-USD are converted here, at the
edge), prices $/GPU-hr, quantities contracts (one GPU for the delivery month each).
"""

# DRF ships no type stubs: its classes are Any to mypy, and the API's subclass them.
# mypy: allow-subclassing-any

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.http import Http404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from exchange.api.errors import ErrorSerializer, not_found
from exchange.api.fields import (
    BodySerializer,
    CodeRelatedField,
    DecimalStringField,
    IntegerInputField,
    QuerySerializer,
    TextField,
)
from exchange.api.pagination import NewestFirst, PageQuery, newest_first_page, page_of
from exchange.api.scopes import ReadOrTrade
from exchange.api.trading import AwareDateTimeField, OrderSerializer, PriceInputField
from exchange.api.views import ApiView
from exchange.errors import PoolError, PoolErrorCode
from exchange.models import ApiKey, Instrument, Organization, Region, Sku
from exchange.models.pools import (
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolOrder,
    PoolRound,
    PoolTransfer,
)
from exchange.selectors import market
from exchange.selectors import pools as selectors
from exchange.selectors.funding import CashBalance, cash_balance
from exchange.selectors.orders import ID_MAX
from exchange.services import pools as services
from exchange.services.ledger_accounts import micros_to_usd

PRICE = {"max_digits": 18, "decimal_places": 6}
USD = {"max_digits": 24, "decimal_places": 6}
# A decimal string as requests write money and percentages: no sign, exponent or JSON number.
# Ranges and places are the service's rule, so that they are refused with its named code.
DECIMAL_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
# Text inputs never hold NUL (the database cannot store it); the pattern says so in the schema.
MONTHS_MAX = 36  # Delivery months in one demand: three years of monthly futures.
SYMBOL_LENGTH_MAX = 64
NAME_INPUT_LENGTH_MAX = 1000  # Longer than any name: the service refuses past its own limit.
# Cut-offs are of this century: the bounds keep time arithmetic far from year 9999.
MOMENT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
MOMENT_MAX = datetime(2100, 1, 1, tzinfo=UTC)
ROLE_SPONSOR, ROLE_MEMBER = "sponsor", "member"

ERRORS: dict[int, Any] = {401: ErrorSerializer, 403: ErrorSerializer, 429: ErrorSerializer}
READ_ERRORS: dict[int, Any] = {404: ErrorSerializer, **ERRORS}
LIST_ERRORS: dict[int, Any] = {400: ErrorSerializer, **READ_ERRORS}
WRITE_ERRORS: dict[int, Any] = {400: ErrorSerializer, 422: ErrorSerializer, **READ_ERRORS}


def _id_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"type": "integer", "format": "int64", "minimum": 1, "maximum": ID_MAX},
        OpenApiParameter.PATH,
        description=what,
    )


POOL_ID = _id_parameter("pool_id", "A pool the caller sponsors or belongs to.")
MEMBER_ID = _id_parameter("member_id", "A member of the pool (not an organization id).")
DEMAND_ID = _id_parameter("demand_id", "A demand in the pool.")
ROUND_ID = _id_parameter("round_id", "A round (cut-off) of the pool.")


def _number(text: str) -> int | None:
    """An id from the path: the routes take any text, so that an id that is no number gets the
    API's 404 rather than Django's page."""
    if text.isascii() and text.isdigit() and len(text) <= len(str(ID_MAX)):
        number = int(text)
        return number if 0 < number <= ID_MAX else None
    return None


# Who the caller is in a pool ----------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    pool: Pool
    member: PoolMember | None  # The caller's membership; None: the caller is the sponsor.


def _access(request: Request, pool_id: str) -> Access:
    """The caller's pool: as its sponsor, or as a member (graduated members still read their
    own rows); 404 for everyone else."""
    number = _number(pool_id)
    organization = request.caller.organization
    if number is not None:
        pool = selectors.pool_of_sponsor(organization, number)
        if pool is not None:
            return Access(pool, None)
        member = selectors.member_of(organization, number)
        if member is not None:
            return Access(member.pool, member)
    raise Http404(pool_id)


def _sponsored(request: Request, pool_id: str) -> Pool:
    access = _access(request, pool_id)
    if access.member is not None:
        raise PoolError(PoolErrorCode.SPONSOR_ONLY, "Only the pool's sponsor does this.")
    return access.pool


def _membership(request: Request, pool_id: str) -> PoolMember:
    access = _access(request, pool_id)
    if access.member is None:
        raise PoolError(
            PoolErrorCode.NOT_A_MEMBER, "Only the pool's members do this; the sponsor reads it."
        )
    return access.member


def _member_or_404(pool: Pool, member_id: int | str, field: str = "") -> PoolMember:
    number = member_id if isinstance(member_id, int) else _number(member_id)
    member = selectors.members_of(pool).filter(pk=number).first() if number else None
    if member is None:
        if field:  # Named in the body rather than the path.
            raise not_found(f"No member {member_id} in this pool.", field)
        raise Http404(member_id)
    return member


def _member_filter(access: Access, member_id: int | None) -> PoolMember | None:
    """Whose rows a read shows: a member sees only its own (another member's id is 404); the
    sponsor every member's, or one's with ``?member=``."""
    if access.member is not None:
        if member_id is not None and member_id != access.member.pk:
            raise not_found(f"No member {member_id} in this pool.", "member")
        return access.member
    return _member_or_404(access.pool, member_id, "member") if member_id is not None else None


def _instrument(symbol: str) -> Instrument:
    instrument = market.instrument_by_symbol(symbol)
    if instrument is None:
        raise PoolError(
            PoolErrorCode.INSTRUMENT_INVALID, f"No instrument {symbol!r}.", field="instrument"
        )
    return instrument


# Fields ------------------------------------------------------------------------------------


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN, "example": "2500.00"}
)
class DecimalInputField(DecimalStringField):
    """A decimal string of at most 12 digits before the point and 6 after."""

    pattern = DECIMAL_PATTERN
    default_error_messages = {
        "format": 'Give a decimal string such as "2500.00" (at most 6 decimals).'
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**PRICE, **kwargs)


class MicrosAsUsdField(serializers.DecimalField):
    """An amount the ledger keeps in micro-USD, shown as a USD decimal string."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**USD, read_only=True, **kwargs)

    def to_representation(self, value: int) -> str:
        usd: str = super().to_representation(micros_to_usd(value))
        return usd


@extend_schema_field({"type": "string", "pattern": MONTH_PATTERN, "example": "2027-01"})
class MonthField(serializers.Field):
    """A delivery month as ``YYYY-MM`` (read: the first day of that month)."""

    default_error_messages = {"format": 'Give a month as "YYYY-MM".'}

    def to_internal_value(self, data: Any) -> date:
        if not isinstance(data, str) or re.fullmatch(MONTH_PATTERN, data) is None:
            self.fail("format")
        year, month = int(data[:4]), int(data[5:])
        if year < 1:
            self.fail("format")
        return date(year, month, 1)

    def to_representation(self, value: date) -> str:
        return f"{value:%Y-%m}"


# What the API shows -------------------------------------------------------------------------


class PoolCashSerializer(serializers.Serializer):
    posted = serializers.DecimalField(**USD, help_text="USD held by the pool account.")
    pending = serializers.DecimalField(**USD, help_text="Held for its live orders.")
    available = serializers.DecimalField(**USD, help_text="posted - pending.")


class PoolMemberSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.slug")
    organization_name = serializers.CharField(source="organization.name")

    class Meta:
        model = PoolMember
        fields = [
            "id",
            "organization",
            "organization_name",
            "priority",
            "status",
            "joined_at",
            "left_at",
        ]
        read_only_fields = fields


class PoolMemberDetailSerializer(PoolMemberSerializer):
    credit_owed = serializers.SerializerMethodField(
        help_text="USD the member owes the pool under the credit line."
    )

    class Meta(PoolMemberSerializer.Meta):
        fields = [*PoolMemberSerializer.Meta.fields, "credit_owed"]
        read_only_fields = fields

    @extend_schema_field(serializers.DecimalField(**USD))
    def get_credit_owed(self, member: PoolMember) -> str:
        owed: str = serializers.DecimalField(**USD).to_representation(selectors.credit_owed(member))
        return owed


class PoolDemandTotalSerializer(serializers.Serializer):
    instrument = serializers.CharField(source="instrument.symbol")
    members = serializers.IntegerField(help_text="Members with open demand for it.")
    quantity = serializers.IntegerField(help_text="Contracts.")
    gpu_hours = serializers.IntegerField()
    lowest_limit = serializers.DecimalField(**PRICE)
    highest_limit = serializers.DecimalField(**PRICE)


@dataclass(frozen=True)
class PoolView:
    """A pool as one caller sees it: the sponsor's parts are None for a member, the member's
    for the sponsor."""

    pool: Pool
    role: str
    membership: PoolMember | None = None
    cash: CashBalance | None = None
    members: list[PoolMember] | None = None
    open_demand: list[selectors.DemandTotal] | None = None


class PoolSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pool.id")
    name = serializers.CharField(source="pool.name")
    sponsor = serializers.CharField(source="pool.sponsor.slug")
    sponsor_name = serializers.CharField(source="pool.sponsor.name")
    role = serializers.ChoiceField(
        choices=[ROLE_SPONSOR, ROLE_MEMBER], help_text="The caller's role in the pool."
    )
    rule = serializers.ChoiceField(source="pool.rule", choices=Pool.Rule.choices)
    subsidy_percent = serializers.DecimalField(
        source="pool.subsidy_percent",
        max_digits=5,
        decimal_places=2,
        help_text="Share of each allocation's cost the sponsor pays.",
    )
    credit_line = MicrosAsUsdField(
        source="pool.credit_line", help_text="USD of credit the sponsor guarantees each member."
    )
    cutoff_at = serializers.DateTimeField(
        source="pool.cutoff_at", allow_null=True, help_text="The next cut-off, if set."
    )
    status = serializers.ChoiceField(source="pool.status", choices=Pool.Status.choices)
    created_at = serializers.DateTimeField(source="pool.created_at")


class PoolDetailSerializer(PoolSerializer):
    membership = PoolMemberDetailSerializer(
        allow_null=True, help_text="The caller's own membership (members); null for the sponsor."
    )
    cash = PoolCashSerializer(
        allow_null=True, help_text="The pool account's cash (sponsor); null for members."
    )
    members = PoolMemberSerializer(
        many=True, allow_null=True, help_text="Every member (sponsor); null for members."
    )
    open_demand = PoolDemandTotalSerializer(
        many=True,
        allow_null=True,
        help_text="What the next cut-off would aggregate, per instrument (sponsor); null for "
        "members.",
    )


def _pool_view(access: Access) -> PoolView:
    pool = access.pool
    if access.member is not None:
        return PoolView(pool, ROLE_MEMBER, membership=access.member)
    return PoolView(
        pool,
        ROLE_SPONSOR,
        cash=cash_balance(pool.account),
        members=list(selectors.members_of(pool)),
        open_demand=selectors.open_demand_by_instrument(pool),
    )


class PoolDemandSerializer(serializers.ModelSerializer):
    member = serializers.IntegerField(source="member_id", help_text="The member's id.")
    organization = serializers.CharField(source="member.organization.slug")
    instrument = serializers.CharField(source="instrument.symbol")
    sku = serializers.CharField(source="instrument.sku.code")
    region = serializers.CharField(source="instrument.region.code")
    month = MonthField(source="instrument.delivery_start", help_text="The delivery month.")
    pool_order = serializers.IntegerField(
        source="pool_order_id",
        allow_null=True,
        help_text="The tier order it went into at the cut-off (the first of its tier's orders "
        "when the tier was above the instrument's quantity_max).",
    )

    class Meta:
        model = PoolDemand
        fields = [
            "id",
            "member",
            "organization",
            "instrument",
            "sku",
            "region",
            "month",
            "quantity",
            "gpu_hours",
            "limit_price",
            "status",
            "pool_order",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"quantity": {"help_text": "Contracts (one GPU for the month each)."}}


class PoolTierSerializer(serializers.ModelSerializer):
    """One price tier of one instrument: the pool order placed for it. A tier above the
    instrument's quantity_max is several, each an order of at most that many contracts (whole
    lots) at the tier's price; the round allocates their fills as one tier."""

    instrument = serializers.CharField(source="instrument.symbol")
    order = OrderSerializer(allow_null=True, help_text="Null when the exchange refused it.")

    class Meta:
        model = PoolOrder
        fields = [
            "id",
            "instrument",
            "price",
            "quantity",
            "order",
            "refusal_code",
            "refusal_message",
            "placement_note",
        ]
        read_only_fields = fields


class PoolAllocationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    round = serializers.IntegerField(source="round_id")
    round_number = serializers.IntegerField(source="round.number")
    demand = serializers.IntegerField(source="demand_id")
    member = serializers.IntegerField(source="member_id")
    organization = serializers.CharField(source="member.organization.slug")
    instrument = serializers.CharField(source="instrument.symbol")
    status = serializers.ChoiceField(
        choices=PoolAllocation.Status.choices,
        help_text="settled; unfunded: the member could not pay, the pool keeps the lots; none: "
        "nothing filled for it.",
    )
    requested = serializers.IntegerField(help_text="Contracts asked for.")
    quantity = serializers.IntegerField(help_text="Contracts allocated.")
    cost = MicrosAsUsdField(help_text="USD: the demand's share of the tier's traded value.")
    fee = MicrosAsUsdField(help_text="USD: its share of the pool's fees, paid by the member.")
    subsidy = MicrosAsUsdField(help_text="USD paid by the sponsor.")
    margin = MicrosAsUsdField(help_text="USD of initial margin the member set aside.")
    credit = MicrosAsUsdField(help_text="USD the pool lent the member for it.")
    created_at = serializers.DateTimeField()


@dataclass(frozen=True)
class RoundView:
    round: PoolRound
    orders: list[PoolOrder] | None = None
    allocations: list[PoolAllocation] | None = None


class PoolRoundSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="round.id")
    number = serializers.IntegerField(source="round.number")
    status = serializers.ChoiceField(source="round.status", choices=PoolRound.Status.choices)
    cut_off_at = serializers.DateTimeField(source="round.cut_off_at")
    closes_at = serializers.DateTimeField(
        source="round.closes_at", help_text="When what still works is cancelled and allocated."
    )
    allocated_at = serializers.DateTimeField(source="round.allocated_at", allow_null=True)
    close_reason = serializers.ChoiceField(
        source="round.close_reason",
        choices=PoolRound.CloseReason.choices,
        allow_blank=True,
        help_text="Why the round closed: scheduled (its time was up), sponsor, staff, or "
        "instrument_expired (a future it was buying stopped trading, so it closed early and "
        "allocated what had filled); empty while it works and no close was asked for.",
    )
    close_message = serializers.CharField(
        source="round.close_message", help_text="The same in words; empty while open."
    )


class PoolRoundDetailSerializer(PoolRoundSerializer):
    orders = PoolTierSerializer(
        many=True, allow_null=True, help_text="The tier orders (sponsor); null for members."
    )
    allocations = PoolAllocationSerializer(
        many=True, help_text="Every allocation (sponsor), or the caller's own (member)."
    )


def _round_view(access: Access, round_: PoolRound) -> RoundView:
    pool = access.pool
    orders = list(selectors.pool_orders(round_)) if access.member is None else None
    rows = list(selectors.allocations(pool, member=access.member, round_=round_))
    return RoundView(round_, orders, rows)


class PoolTransferSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PoolTransfer.Kind.choices)
    member = serializers.IntegerField(source="member_id")
    organization = serializers.CharField(source="member.organization.slug")
    instrument = serializers.CharField(source="instrument.symbol")
    quantity = serializers.IntegerField(help_text="Contracts.")
    price = serializers.DecimalField(**PRICE, help_text="The mark it moved at, $/GPU-hr.")
    created_at = serializers.DateTimeField()


class PoolHoldingSerializer(serializers.Serializer):
    instrument = serializers.CharField(source="instrument.symbol")
    contracts = serializers.IntegerField()


class PoolReportLineSerializer(serializers.Serializer):
    allocation = serializers.IntegerField(source="allocation.id")
    round_number = serializers.IntegerField(source="allocation.round.number")
    member = serializers.IntegerField(source="allocation.member_id")
    organization = serializers.CharField(source="allocation.member.organization.slug")
    instrument = serializers.CharField(source="allocation.instrument.symbol")
    status = serializers.ChoiceField(
        source="allocation.status", choices=PoolAllocation.Status.choices
    )
    gpu_hours_requested = serializers.IntegerField()
    gpu_hours_filled = serializers.IntegerField(help_text="Settled GPU-hours only.")
    average_price = serializers.DecimalField(**PRICE, allow_null=True)
    market_price = serializers.DecimalField(
        **PRICE, allow_null=True, help_text="Others' volume-weighted price around the round."
    )
    on_demand_price = serializers.DecimalField(
        **PRICE, allow_null=True, help_text="The SKU's on-demand benchmark."
    )
    cost = serializers.DecimalField(**USD)
    subsidy = serializers.DecimalField(**USD)
    fee = serializers.DecimalField(**USD)
    savings_vs_market = serializers.DecimalField(**USD, allow_null=True)
    savings_vs_on_demand = serializers.DecimalField(**USD, allow_null=True)


class PoolReportSerializer(serializers.Serializer):
    gpu_hours_requested = serializers.IntegerField()
    gpu_hours_filled = serializers.IntegerField()
    fill_ratio = serializers.DecimalField(
        max_digits=7, decimal_places=2, allow_null=True, help_text="Percent filled."
    )
    average_price = serializers.DecimalField(**PRICE, allow_null=True)
    cost = serializers.DecimalField(**USD)
    subsidy = serializers.DecimalField(**USD)
    fee = serializers.DecimalField(**USD)
    savings_vs_market = serializers.DecimalField(**USD)
    savings_vs_on_demand = serializers.DecimalField(**USD)
    lines = PoolReportLineSerializer(many=True, help_text="One per allocated demand, newest first.")


class PoolCashMovedSerializer(serializers.Serializer):
    entry = serializers.IntegerField(help_text="The ledger entry that moved it.")
    amount = serializers.DecimalField(**USD)
    cash = PoolCashSerializer(help_text="The pool account's cash after.")


class PoolCreditRepaidSerializer(serializers.Serializer):
    entry = serializers.IntegerField(help_text="The ledger entry that moved it.")
    amount = serializers.DecimalField(**USD)
    credit_owed = serializers.DecimalField(**USD, help_text="What the member still owes.")


# What the API reads ------------------------------------------------------------------------


class PoolCreateSerializer(BodySerializer):
    # None in a subclass: DRF leaves the field out (``PoolSettingsSerializer``).
    name: TextField | None = TextField(
        max_length=NAME_INPUT_LENGTH_MAX,
        allow_blank=True,
        help_text=f"1 to {services.NAME_LENGTH_MAX} characters, unique among the sponsor's pools.",
    )
    rule = TextField(
        trim_whitespace=True,
        default=Pool.Rule.PRO_RATA,
        max_length=SYMBOL_LENGTH_MAX,
        help_text="pro_rata (by requested quantity) or priority (by member priority).",
    )
    subsidy_percent = DecimalInputField(
        default=Decimal(0), help_text="0 to 100, at most two decimals."
    )
    credit_line = DecimalInputField(
        default=Decimal(0), help_text="USD of credit guaranteed to each member; 0: none."
    )
    cutoff_at = AwareDateTimeField(
        default=None, allow_null=True, help_text="The next cut-off (future, with a time zone)."
    )

    def validate_cutoff_at(self, value: datetime | None) -> datetime | None:
        if value is not None and not MOMENT_MIN <= value < MOMENT_MAX:
            raise serializers.ValidationError(
                f"Between {MOMENT_MIN:%Y} and {MOMENT_MAX:%Y}, please."
            )
        return value


class PoolSettingsSerializer(PoolCreateSerializer):
    """Any of the settings; those left out keep their value."""

    name = None  # A pool keeps its name.
    rule = TextField(trim_whitespace=True, max_length=SYMBOL_LENGTH_MAX, required=False)
    subsidy_percent = DecimalInputField(required=False, help_text="0 to 100, two decimals.")
    credit_line = DecimalInputField(required=False, help_text="USD per member; 0: none.")
    cutoff_at = AwareDateTimeField(
        required=False, allow_null=True, help_text="The next cut-off; null: none."
    )


class PoolAmountSerializer(BodySerializer):
    amount = DecimalInputField(help_text="USD above zero, at most 6 decimals.")


class PoolMemberAddSerializer(BodySerializer):
    organization = CodeRelatedField(
        slug_field="slug",
        queryset=Organization.objects.all(),
        help_text="The startup's slug.",
    )
    priority = IntegerInputField(
        default=100, help_text="0 to 10000; lower is served first under the priority rule."
    )


class PoolMemberPrioritySerializer(BodySerializer):
    priority = IntegerInputField(help_text="0 to 10000; lower is served first.")


class PoolDemandCreateSerializer(BodySerializer):
    sku = CodeRelatedField(slug_field="code", queryset=Sku.objects.all())
    region = CodeRelatedField(slug_field="code", queryset=Region.objects.all())
    months = serializers.ListField(
        child=MonthField(),
        allow_empty=True,
        max_length=MONTHS_MAX,
        help_text="Delivery months (YYYY-MM): one demand each.",
    )
    gpu_hours = IntegerInputField(
        default=None,
        allow_null=True,
        help_text="GPU-hours per month, whole contracts; give this or gpus.",
    )
    gpus = IntegerInputField(
        default=None, allow_null=True, help_text="GPUs for each whole month; or gpu_hours."
    )
    limit_price = PriceInputField(help_text="The most the member pays, $/GPU-hr.")


class PoolDemandAmendSerializer(BodySerializer):
    """Any of the terms; the quantity and limit left out stay as they are."""

    gpu_hours = IntegerInputField(required=False, help_text="Or gpus, not both.")
    gpus = IntegerInputField(required=False, help_text="Or gpu_hours, not both.")
    limit_price = PriceInputField(required=False, help_text="$/GPU-hr.")


class NoBodySerializer(BodySerializer):
    """An action that takes no body (cut-off, close, graduate): any key in one is refused, as
    a key the action does not take (a cut-off sent with an ``instrument`` would cut off every
    instrument)."""


def _no_body(request: Request) -> None:
    NoBodySerializer(data=request.data).is_valid(raise_exception=True)


def _member_parameter() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        help_text="The sponsor: one member's (its id); a member: only its own id.",
    )


class MemberQuery(QuerySerializer):
    member = _member_parameter()


class DemandQuery(PageQuery):
    status = serializers.ChoiceField(choices=PoolDemand.Status.choices, required=False)


class AllocationQuery(PageQuery):
    member = _member_parameter()
    round = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, required=False, help_text="One round's (its id)."
    )


class TransferQuery(PageQuery):
    member = _member_parameter()


class PoolTransferCreateSerializer(BodySerializer):
    member = IntegerInputField(min_value=1, max_value=ID_MAX, help_text="A member's id.")
    instrument = TextField(max_length=SYMBOL_LENGTH_MAX, help_text="A future.")
    quantity = IntegerInputField(help_text="Contracts, whole lots.")


class PoolOfferSerializer(BodySerializer):
    instrument = TextField(max_length=SYMBOL_LENGTH_MAX, help_text="A future.")
    quantity = IntegerInputField(help_text="Contracts the pool holds, whole lots.")
    price = PriceInputField(help_text="The limit, $/GPU-hr.")


# Views -------------------------------------------------------------------------------------


class PoolList(ReadOrTrade):
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[PageQuery],
        responses={200: PoolSerializer(many=True), **LIST_ERRORS},
        operation_id="pools_list",
        summary="Pools the caller sponsors or belongs to, with its role in each (scope read)",
        description="Newest first. 404 for a cursor that is not valid.",
    )
    def get(self, request: Request) -> Response:
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        organization = request.caller.organization
        pools = selectors.pools_visible_to(organization).select_related("sponsor")

        def serialize(page: list[Pool]) -> Any:
            rows = [
                PoolView(p, ROLE_SPONSOR if p.sponsor_id == organization.pk else ROLE_MEMBER)
                for p in page
            ]
            return PoolSerializer(rows, many=True).data

        return newest_first_page(self, request, pools, serialize)

    @extend_schema(
        request=PoolCreateSerializer,
        responses={201: PoolDetailSerializer, 409: ErrorSerializer, **WRITE_ERRORS},
        operation_id="pools_create",
        summary="Create a pool (portfolio program sponsors only; scope trade)",
        description=(
            "With a trading account of its own, funded with POST .../fund/. 422 "
            "POOL_SPONSOR_REQUIRED, POOL_NAME_INVALID, POOL_RULE_INVALID, POOL_SUBSIDY_INVALID, "
            "POOL_CREDIT_LINE_INVALID, POOL_CUTOFF_INVALID; 409 POOL_NAME_TAKEN."
        ),
    )
    def post(self, request: Request) -> Response:
        body = PoolCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        pool = services.pool_create(
            sponsor=request.caller.organization,
            actor=request.caller.user,
            api_key=request.caller.key,
            **body.validated_data,
        )
        view = _pool_view(Access(pool, None))
        return Response(PoolDetailSerializer(view).data, status=status.HTTP_201_CREATED)


class PoolDetail(ReadOrTrade):
    @extend_schema(
        parameters=[POOL_ID],
        responses={200: PoolDetailSerializer, **READ_ERRORS},
        operation_id="pool_retrieve",
        summary="One pool: whole for its sponsor; its terms and the caller's membership for a "
        "member (scope read)",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        return Response(PoolDetailSerializer(_pool_view(_access(request, pool_id))).data)

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolSettingsSerializer,
        responses={200: PoolDetailSerializer, **WRITE_ERRORS},
        operation_id="pool_settings",
        summary="Change the rule, subsidy, credit line or next cut-off (sponsor; scope trade)",
        description=(
            "Settings left out keep their value (a cut-off already set may stay even once "
            "past; a new one must be in the future). 403 POOL_SPONSOR_ONLY for a member; 422 "
            "POOL_*_INVALID, POOL_CLOSED."
        ),
    )
    def patch(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        body = PoolSettingsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        current = {
            "rule": pool.rule,
            "subsidy_percent": pool.subsidy_percent,
            "credit_line": micros_to_usd(pool.credit_line),
            "cutoff_at": pool.cutoff_at,
        }
        pool = services.pool_settings_set(
            pool=pool,
            actor=request.caller.user,
            api_key=request.caller.key,
            **{**current, **body.validated_data},
        )
        pool = selectors.pool_of_sponsor(request.caller.organization, pool.pk) or pool
        return Response(PoolDetailSerializer(_pool_view(Access(pool, None))).data)


class PoolCash(ApiView):
    required_scope = ApiKey.Scope.TRANSFER
    withdraw = False

    def post(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        body = PoolAmountSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        amount = body.validated_data["amount"]
        entry = services.pool_fund(
            pool=pool,
            amount=amount,
            actor=request.caller.user,
            api_key=request.caller.key,
            withdraw=self.withdraw,
        )
        moved = {"entry": entry.pk, "amount": amount, "cash": cash_balance(pool.account)}
        return Response(PoolCashMovedSerializer(moved).data)


class PoolFund(PoolCash):
    @extend_schema(
        parameters=[POOL_ID],
        request=PoolAmountSerializer,
        responses={200: PoolCashMovedSerializer, **WRITE_ERRORS},
        operation_id="pool_fund",
        summary="Move USD from the sponsor's main account to the pool's (scope transfer)",
        description="403 POOL_SPONSOR_ONLY for a member; 422 POOL_AMOUNT_INVALID, "
        "POOL_INSUFFICIENT_FUNDS, POOL_MARGIN_CALL_OPEN (the sponsor's main account is under a "
        "margin call: no cash leaves it until the call is met).",
    )
    def post(self, request: Request, pool_id: str) -> Response:
        return super().post(request, pool_id)


class PoolWithdraw(PoolCash):
    withdraw = True

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolAmountSerializer,
        responses={200: PoolCashMovedSerializer, **WRITE_ERRORS},
        operation_id="pool_withdraw",
        summary="Move USD from the pool's account back to the sponsor's (scope transfer)",
        description="403 POOL_SPONSOR_ONLY for a member; 422 POOL_AMOUNT_INVALID, "
        "POOL_INSUFFICIENT_FUNDS (more than the pool account has available), "
        "POOL_MARGIN_CALL_OPEN (the pool's account is under a margin call: no cash leaves it "
        "until the call is met).",
    )
    def post(self, request: Request, pool_id: str) -> Response:
        return super().post(request, pool_id)


class MemberList(ReadOrTrade):
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[POOL_ID, PageQuery],
        responses={200: PoolMemberSerializer(many=True), **LIST_ERRORS},
        operation_id="pool_members_list",
        summary="The pool's members, newest first (sponsor; scope read)",
        description="403 POOL_SPONSOR_ONLY for a member.",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        return newest_first_page(
            self,
            request,
            selectors.members_of(pool),
            lambda page: PoolMemberSerializer(page, many=True).data,
        )

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolMemberAddSerializer,
        responses={201: PoolMemberDetailSerializer, 409: ErrorSerializer, **WRITE_ERRORS},
        operation_id="pool_members_add",
        summary="Add a startup to the pool (sponsor; scope trade)",
        description="404 NOT_FOUND (field organization) for an unknown organization; 409 "
        "POOL_ALREADY_MEMBER; 422 "
        "POOL_MEMBER_NOT_STARTUP (any kind but a startup), POOL_MEMBER_INVALID (no main "
        "account), POOL_PRIORITY_INVALID, POOL_CLOSED.",
    )
    def post(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        body = PoolMemberAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        member = services.pool_member_add(
            pool=pool, actor=request.caller.user, api_key=request.caller.key, **body.validated_data
        )
        member = _member_or_404(pool, member.pk)
        return Response(PoolMemberDetailSerializer(member).data, status=status.HTTP_201_CREATED)


class MemberDetail(ReadOrTrade):
    @extend_schema(
        parameters=[POOL_ID, MEMBER_ID],
        responses={200: PoolMemberDetailSerializer, **READ_ERRORS},
        operation_id="pool_member_retrieve",
        summary="One member, with the credit it owes (sponsor; scope read)",
    )
    def get(self, request: Request, pool_id: str, member_id: str) -> Response:
        member = _member_or_404(_sponsored(request, pool_id), member_id)
        return Response(PoolMemberDetailSerializer(member).data)

    @extend_schema(
        parameters=[POOL_ID, MEMBER_ID],
        request=PoolMemberPrioritySerializer,
        responses={200: PoolMemberDetailSerializer, **WRITE_ERRORS},
        operation_id="pool_member_priority",
        summary="Set a member's priority (sponsor; scope trade)",
        description="422 POOL_PRIORITY_INVALID (0 to 10000).",
    )
    def patch(self, request: Request, pool_id: str, member_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        member = _member_or_404(pool, member_id)
        body = PoolMemberPrioritySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.pool_member_priority_set(
            member=member,
            priority=body.validated_data["priority"],
            actor=request.caller.user,
            api_key=request.caller.key,
        )
        return Response(PoolMemberDetailSerializer(_member_or_404(pool, member.pk)).data)


class MemberGraduate(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[POOL_ID, MEMBER_ID],
        request=None,
        responses={200: PoolMemberDetailSerializer, **WRITE_ERRORS},
        operation_id="pool_member_graduate",
        summary="A member leaves the pool: its demand not yet allocated is withdrawn (sponsor; "
        "scope trade)",
        description="Its demand open or in a working round is withdrawn: the round allocates it "
        "nothing, and the round's tier orders are replaced down to what the tier's remaining "
        "demand still needs (what a tier filled beyond that before stays with the pool). What "
        "it was allocated stays its own until taken back (POST .../take-back/). "
        "422 POOL_MEMBER_GRADUATED when it already left.",
    )
    def post(self, request: Request, pool_id: str, member_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        member = _member_or_404(pool, member_id)
        _no_body(request)
        services.pool_member_graduate(
            member=member, actor=request.caller.user, api_key=request.caller.key
        )
        return Response(PoolMemberDetailSerializer(_member_or_404(pool, member.pk)).data)


PoolDemandPageSerializer = page_of(PoolDemandSerializer, "PoolDemandPage")


class DemandList(ReadOrTrade):
    @extend_schema(
        parameters=[POOL_ID, DemandQuery],
        responses={200: PoolDemandPageSerializer, **LIST_ERRORS},
        operation_id="pool_demands_list",
        summary="Demand, newest first: a member's own, or every member's for the sponsor "
        "(scope read)",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        access = _access(request, pool_id)
        query = DemandQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.demands(
            access.pool, member=access.member, status=query.validated_data.get("status", "")
        )
        return newest_first_page(
            self, request, rows, lambda page: PoolDemandSerializer(page, many=True).data
        )

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolDemandCreateSerializer,
        responses={201: PoolDemandSerializer(many=True), 409: ErrorSerializer, **WRITE_ERRORS},
        operation_id="pool_demands_submit",
        summary="Submit demand: one per delivery month (member; scope trade)",
        description=(
            "Give either gpu_hours (whole contracts of each month) or gpus (GPUs for the whole "
            "month). Amend or withdraw it until the cut-off. 409 POOL_CUTOFF_PASSED once the "
            "pool's cutoff_at has passed, until the cut-off has run. 403 POOL_NOT_A_MEMBER for "
            "the sponsor; 422 POOL_MONTHS_INVALID, POOL_QUANTITY_INVALID, "
            "POOL_NOT_WHOLE_CONTRACTS, POOL_PRICE_INVALID, POOL_MEMBER_GRADUATED, POOL_CLOSED."
        ),
    )
    def post(self, request: Request, pool_id: str) -> Response:
        member = _membership(request, pool_id)
        body = PoolDemandCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = services.demand_submit(
            member=member,
            actor=request.caller.user,
            api_key=request.caller.key,
            **body.validated_data,
        )
        rows = selectors.demands(member.pool, member=member).filter(pk__in=[d.pk for d in created])
        return Response(PoolDemandSerializer(rows, many=True).data, status=status.HTTP_201_CREATED)


def _demand_or_404(access: Access, demand_id: str) -> PoolDemand:
    """A member's own demand, or any in the pool for the sponsor; 404 otherwise."""
    number = _number(demand_id)
    demand = None
    if number is not None:
        if access.member is not None:
            demand = selectors.demand_of(access.member, number)
        else:
            demand = selectors.demands(access.pool).filter(pk=number).first()
    if demand is None:
        raise Http404(demand_id)
    return demand


class DemandDetail(ReadOrTrade):
    @extend_schema(
        parameters=[POOL_ID, DEMAND_ID],
        responses={200: PoolDemandSerializer, **READ_ERRORS},
        operation_id="pool_demand_retrieve",
        summary="One demand: the member's own, or any for the sponsor (scope read)",
    )
    def get(self, request: Request, pool_id: str, demand_id: str) -> Response:
        demand = _demand_or_404(_access(request, pool_id), demand_id)
        return Response(PoolDemandSerializer(demand).data)

    def _own(self, request: Request, pool_id: str, demand_id: str) -> PoolDemand:
        """The caller's own demand: the sponsor reads demand but does not change it."""
        access = _access(request, pool_id)
        demand = _demand_or_404(access, demand_id)
        if access.member is None:
            raise PoolError(
                PoolErrorCode.NOT_A_MEMBER, "Only the member that submitted it changes it."
            )
        return demand

    @extend_schema(
        parameters=[POOL_ID, DEMAND_ID],
        request=PoolDemandAmendSerializer,
        responses={200: PoolDemandSerializer, 409: ErrorSerializer, **WRITE_ERRORS},
        operation_id="pool_demand_amend",
        summary="Amend an open demand's quantity or limit (its member; scope trade)",
        description="409 POOL_DEMAND_LOCKED after the cut-off or once withdrawn; "
        "POOL_CUTOFF_PASSED from the pool's cutoff_at until the cut-off has run; 422 "
        "POOL_QUANTITY_INVALID, POOL_NOT_WHOLE_CONTRACTS, POOL_PRICE_INVALID, "
        "POOL_MEMBER_GRADUATED.",
    )
    def patch(self, request: Request, pool_id: str, demand_id: str) -> Response:
        demand = self._own(request, pool_id, demand_id)
        body = PoolDemandAmendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        terms = body.validated_data
        sized = "gpu_hours" in terms or "gpus" in terms
        amended = services.demand_amend(
            demand=demand,
            limit_price=terms.get("limit_price", demand.limit_price),
            gpu_hours=terms.get("gpu_hours"),
            # Left out, the quantity stays: the demand's contracts are its GPUs for the month.
            gpus=terms.get("gpus") if sized else demand.quantity,
            actor=request.caller.user,
            api_key=request.caller.key,
        )
        return Response(PoolDemandSerializer(selectors.demand_of(demand.member, amended.pk)).data)

    @extend_schema(
        parameters=[POOL_ID, DEMAND_ID],
        responses={200: PoolDemandSerializer, 409: ErrorSerializer, **READ_ERRORS},
        operation_id="pool_demand_withdraw",
        summary="Withdraw an open demand (its member; scope trade)",
        description="409 POOL_DEMAND_LOCKED after the cut-off or once withdrawn; "
        "POOL_CUTOFF_PASSED from the pool's cutoff_at until the cut-off has run.",
    )
    def delete(self, request: Request, pool_id: str, demand_id: str) -> Response:
        demand = self._own(request, pool_id, demand_id)
        services.demand_withdraw(
            demand=demand, actor=request.caller.user, api_key=request.caller.key
        )
        demand.refresh_from_db(fields=["status", "updated_at"])
        return Response(PoolDemandSerializer(demand).data)


class CutOff(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[POOL_ID],
        request=None,
        responses={201: PoolRoundDetailSerializer, 409: ErrorSerializer, **WRITE_ERRORS},
        operation_id="pool_cut_off",
        summary="Cut off now: aggregate the open demand into tier orders (sponsor; scope trade)",
        description=(
            "Answers the new round with its tier orders as the exchange left them (a tier it "
            "refused has no order and a refusal_code; while the pool's account is under a "
            "margin call no tier is placed, each with refusal_code POOL_MARGIN_CALL_OPEN). "
            "409 POOL_ROUND_WORKING while the "
            "previous round works; 422 POOL_NO_DEMAND, POOL_CLOSED."
        ),
    )
    def post(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        _no_body(request)
        round_ = services.pool_cut_off(
            pool=pool, actor=request.caller.user, api_key=request.caller.key
        )
        view = _round_view(Access(pool, None), round_)
        return Response(PoolRoundDetailSerializer(view).data, status=status.HTTP_201_CREATED)


class RoundList(ApiView):
    required_scope = ApiKey.Scope.READ
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[POOL_ID, PageQuery],
        responses={200: PoolRoundSerializer(many=True), **LIST_ERRORS},
        operation_id="pool_rounds_list",
        summary="The pool's rounds, newest first (sponsor and members; scope read)",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        access = _access(request, pool_id)
        PageQuery(data=request.query_params).is_valid(raise_exception=True)
        return newest_first_page(
            self,
            request,
            selectors.rounds(access.pool),
            lambda page: PoolRoundSerializer([RoundView(r) for r in page], many=True).data,
        )


def _round_or_404(access: Access, round_id: str) -> PoolRound:
    number = _number(round_id)
    round_ = selectors.round_of(access.pool, number) if number is not None else None
    if round_ is None:
        raise Http404(round_id)
    return round_


class RoundDetail(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        parameters=[POOL_ID, ROUND_ID],
        responses={200: PoolRoundDetailSerializer, **READ_ERRORS},
        operation_id="pool_round_retrieve",
        summary="One round: its tier orders and every allocation for the sponsor, the caller's "
        "own allocations for a member (scope read)",
    )
    def get(self, request: Request, pool_id: str, round_id: str) -> Response:
        access = _access(request, pool_id)
        round_ = _round_or_404(access, round_id)
        return Response(PoolRoundDetailSerializer(_round_view(access, round_)).data)


class RoundClose(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[POOL_ID, ROUND_ID],
        request=None,
        responses={200: PoolRoundDetailSerializer, **WRITE_ERRORS},
        operation_id="pool_round_close",
        summary="Close a round now: cancel what still works and allocate the fills (sponsor; "
        "scope trade)",
        description=(
            "With the inline matcher the round is allocated at once; with external matchers it "
            "stays working until the cancels are processed, then the scheduler allocates it. "
            "422 POOL_ROUND_NOT_WORKING when it is already allocated."
        ),
    )
    def post(self, request: Request, pool_id: str, round_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        access = Access(pool, None)
        round_ = _round_or_404(access, round_id)
        _no_body(request)
        round_ = services.pool_round_close(
            round_=round_,
            actor=request.caller.user,
            api_key=request.caller.key,
            organization=request.caller.organization,
        )
        return Response(PoolRoundDetailSerializer(_round_view(access, round_)).data)


class AllocationList(ApiView):
    required_scope = ApiKey.Scope.READ
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[POOL_ID, AllocationQuery],
        responses={200: PoolAllocationSerializer(many=True), **LIST_ERRORS},
        operation_id="pool_allocations_list",
        summary="Allocations, newest first: a member's own, or every member's for the sponsor "
        "(scope read)",
        description="404 (field round or member) for a round of another pool or another "
        "member's id.",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        access = _access(request, pool_id)
        query = AllocationQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = _member_filter(access, query.validated_data.get("member"))
        round_id = query.validated_data.get("round")
        round_ = None
        if round_id is not None:
            round_ = selectors.round_of(access.pool, round_id)
            if round_ is None:
                raise not_found(f"No round {round_id} in this pool.", "round")
        rows = selectors.allocations(access.pool, member=member, round_=round_)
        return newest_first_page(
            self, request, rows, lambda page: PoolAllocationSerializer(page, many=True).data
        )


class TransferList(ApiView):
    required_scope = ApiKey.Scope.READ
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[POOL_ID, TransferQuery],
        responses={200: PoolTransferSerializer(many=True), **LIST_ERRORS},
        operation_id="pool_transfers_list",
        summary="Contracts taken back or reallocated, newest first: a member's own, or all for "
        "the sponsor (scope read)",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        access = _access(request, pool_id)
        query = TransferQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = _member_filter(access, query.validated_data.get("member"))
        rows = selectors.transfers(access.pool, member=member)
        return newest_first_page(
            self, request, rows, lambda page: PoolTransferSerializer(page, many=True).data
        )


class Report(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        parameters=[POOL_ID, MemberQuery],
        responses={200: PoolReportSerializer, **LIST_ERRORS},
        operation_id="pool_report",
        summary="Demand against fills, average price, savings against the market and the "
        "on-demand price, subsidy: a member's own, the pool's (or one member's) for the sponsor "
        "(scope read)",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        access = _access(request, pool_id)
        query = MemberQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = _member_filter(access, query.validated_data.get("member"))
        return Response(PoolReportSerializer(selectors.report(access.pool, member=member)).data)


class Holdings(ApiView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(
        parameters=[POOL_ID, MemberQuery],
        responses={200: PoolHoldingSerializer(many=True), **LIST_ERRORS},
        operation_id="pool_holdings",
        summary="Contracts held: the pool account's (sponsor), one member's from the pool "
        "(sponsor with ?member=), or the caller's own (member) (scope read)",
    )
    def get(self, request: Request, pool_id: str) -> Response:
        access = _access(request, pool_id)
        query = MemberQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = _member_filter(access, query.validated_data.get("member"))
        held = (
            selectors.pool_holdings(access.pool)
            if member is None
            else selectors.member_holdings(member)
        )
        return Response(PoolHoldingSerializer(held, many=True).data)


class TransferView(ApiView):
    required_scope = ApiKey.Scope.TRADE
    service: ClassVar[Callable[..., PoolTransfer]]  # Each subclass's, as a staticmethod.

    def post(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        body = PoolTransferCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        member = _member_or_404(pool, body.validated_data["member"], "member")
        transfer = type(self).service(
            member=member,
            instrument=_instrument(body.validated_data["instrument"]),
            quantity=body.validated_data["quantity"],
            actor=request.caller.user,
            api_key=request.caller.key,
        )
        transfer = selectors.transfers(pool).get(pk=transfer.pk)
        return Response(PoolTransferSerializer(transfer).data, status=status.HTTP_201_CREATED)


TRANSFER_REFUSALS = (
    "422 POOL_INSTRUMENT_INVALID (unknown, not a trading future), POOL_QUANTITY_INVALID, "
    "POOL_NOT_ENOUGH_HELD, POOL_NO_MARK, POOL_INSUFFICIENT_FUNDS (the margin); 404 (field "
    "member) for a member of no such id in this pool."
)


class Reallocate(TransferView):
    service = staticmethod(services.pool_reallocate)

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolTransferCreateSerializer,
        responses={201: PoolTransferSerializer, **WRITE_ERRORS},
        operation_id="pool_reallocate",
        summary="Give contracts the pool holds to an active member at the latest mark "
        "(sponsor; scope trade)",
        description=f"{TRANSFER_REFUSALS} POOL_MEMBER_GRADUATED for a member that left; "
        "POOL_REALLOCATION_BEYOND_DEMAND (field member: no demand of the member for that month "
        "left uncovered; field quantity: more than is uncovered); "
        "POOL_REALLOCATION_ABOVE_LIMIT when the mark is above the limit price of the uncovered "
        "demand (field quantity: less of it is at or above the mark; member: none is).",
    )
    def post(self, request: Request, pool_id: str) -> Response:
        return super().post(request, pool_id)


class TakeBack(TransferView):
    service = staticmethod(services.pool_take_back)

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolTransferCreateSerializer,
        responses={201: PoolTransferSerializer, **WRITE_ERRORS},
        operation_id="pool_take_back",
        summary="Take contracts a member no longer needs back into the pool at the latest mark "
        "(sponsor; scope trade)",
        description=TRANSFER_REFUSALS,
    )
    def post(self, request: Request, pool_id: str) -> Response:
        return super().post(request, pool_id)


class Offer(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolOfferSerializer,
        responses={201: OrderSerializer, **WRITE_ERRORS},
        operation_id="pool_offer",
        summary="Sell contracts the pool holds: a GTC limit sell from the pool account "
        "(sponsor; scope trade)",
        description="422 POOL_INSTRUMENT_INVALID, POOL_QUANTITY_INVALID, POOL_NOT_ENOUGH_HELD "
        "(held less what live sells already offer), and the exchange's ORDER_* and RISK_* "
        "refusals of the order.",
    )
    def post(self, request: Request, pool_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        body = PoolOfferSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        order = services.pool_offer(
            pool=pool,
            instrument=_instrument(body.validated_data["instrument"]),
            quantity=body.validated_data["quantity"],
            price=body.validated_data["price"],
            actor=request.caller.user,
            api_key=request.caller.key,
        )
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


ORDER_ID = _id_parameter("order_id", "An offer of the pool (POST .../offer/ answered it).")


class OfferCancel(ApiView):
    required_scope = ApiKey.Scope.TRADE

    @extend_schema(
        parameters=[POOL_ID, ORDER_ID],
        request=None,
        responses={200: OrderSerializer, 409: ErrorSerializer, 422: ErrorSerializer, **READ_ERRORS},
        operation_id="pool_offer_cancel",
        summary="Withdraw an offer: cancel what is left of a sell from the pool account "
        "(sponsor; scope trade)",
        description="Answers the order as the matcher left it; its contracts are the pool's to "
        "reallocate or offer again. 404 for an id that is no sell of the pool's account (a "
        "round's tier buys end with their round); 409 ORDER_NOT_LIVE once it has ended.",
    )
    def delete(self, request: Request, pool_id: str, order_id: str) -> Response:
        pool = _sponsored(request, pool_id)
        number = _number(order_id)
        order = selectors.pool_offer_of(pool, number) if number is not None else None
        if order is None:
            raise Http404(order_id)
        order = services.pool_offer_cancel(
            pool=pool, order=order, actor=request.caller.user, api_key=request.caller.key
        )
        return Response(OrderSerializer(order).data)


class CreditRepay(ApiView):
    required_scope = ApiKey.Scope.TRANSFER

    @extend_schema(
        parameters=[POOL_ID],
        request=PoolAmountSerializer,
        responses={200: PoolCreditRepaidSerializer, **WRITE_ERRORS},
        operation_id="pool_credit_repay",
        summary="Pay back credit the pool lent the caller, from its cash (member; scope transfer)",
        description="403 POOL_NOT_A_MEMBER for the sponsor; 422 POOL_AMOUNT_INVALID (zero, or "
        "more than owed), POOL_INSUFFICIENT_FUNDS, POOL_MARGIN_CALL_OPEN (the member's account "
        "is under a margin call: its cash goes to the call first).",
    )
    def post(self, request: Request, pool_id: str) -> Response:
        member = _membership(request, pool_id)
        body = PoolAmountSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        amount = body.validated_data["amount"]
        entry = services.pool_credit_repay(
            member=member, amount=amount, actor=request.caller.user, api_key=request.caller.key
        )
        repaid = {"entry": entry.pk, "amount": amount, "credit_owed": selectors.credit_owed(member)}
        return Response(PoolCreditRepaidSerializer(repaid).data)


POOL = "pools/<text:pool_id>/"

urlpatterns = [
    path("pools/", PoolList.as_view(), name="pools"),
    path(POOL, PoolDetail.as_view(), name="pool"),
    path(f"{POOL}fund/", PoolFund.as_view(), name="pool-fund"),
    path(f"{POOL}withdraw/", PoolWithdraw.as_view(), name="pool-withdraw"),
    path(f"{POOL}members/", MemberList.as_view(), name="pool-members"),
    path(f"{POOL}members/<text:member_id>/", MemberDetail.as_view(), name="pool-member"),
    path(
        f"{POOL}members/<text:member_id>/graduate/",
        MemberGraduate.as_view(),
        name="pool-member-graduate",
    ),
    path(f"{POOL}demands/", DemandList.as_view(), name="pool-demands"),
    path(f"{POOL}demands/<text:demand_id>/", DemandDetail.as_view(), name="pool-demand"),
    path(f"{POOL}cut-off/", CutOff.as_view(), name="pool-cut-off"),
    path(f"{POOL}rounds/", RoundList.as_view(), name="pool-rounds"),
    path(f"{POOL}rounds/<text:round_id>/", RoundDetail.as_view(), name="pool-round"),
    path(f"{POOL}rounds/<text:round_id>/close/", RoundClose.as_view(), name="pool-round-close"),
    path(f"{POOL}allocations/", AllocationList.as_view(), name="pool-allocations"),
    path(f"{POOL}transfers/", TransferList.as_view(), name="pool-transfers"),
    path(f"{POOL}report/", Report.as_view(), name="pool-report"),
    path(f"{POOL}holdings/", Holdings.as_view(), name="pool-holdings"),
    path(f"{POOL}reallocate/", Reallocate.as_view(), name="pool-reallocate"),
    path(f"{POOL}take-back/", TakeBack.as_view(), name="pool-take-back"),
    path(f"{POOL}offer/", Offer.as_view(), name="pool-offer"),
    path(f"{POOL}offer/<text:order_id>/", OfferCancel.as_view(), name="pool-offer-cancel"),
    path(f"{POOL}credit/repay/", CreditRepay.as_view(), name="pool-credit-repay"),
]
