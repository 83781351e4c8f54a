"""The back office's view of portfolio pools (registered from ``exchange.admin``).

Pools, their members, demand, rounds and allocations are written by the pool services only
(``exchange.services.pools``); staff browse them here, and operations can close a round whose
orders should stop working, with a reason the audit row keeps (the service cancels what works
and allocates, as the sponsor's button does).
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from exchange.admin import (
    OPERATIONS,
    RISK,
    ActionConfirmation,
    ReadOnlyAdmin,
    action_confirmed,
    apply_to_each,
    staff_user,
)
from exchange.backoffice.roles import ALL_ROLES
from exchange.models import (
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolOrder,
    PoolRound,
    PoolTransfer,
)
from exchange.services.ledger_accounts import micros_to_usd
from exchange.services.pools import pool_round_close

ChildT = TypeVar("ChildT", bound=Model)
ParentT = TypeVar("ParentT", bound=Model)


class ReadOnlyInline(admin.TabularInline[ChildT, ParentT]):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: ParentT | None = None) -> bool:
        return False

    # Django passes the inline's parent; the signature also takes the child, as the model
    # admins' own does, so it fits both.
    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


MEMBER_FIELDS = ("organization", "account", "priority", "status", "joined_at", "left_at")


class PoolMemberInline(ReadOnlyInline[PoolMember, Pool]):
    model = PoolMember
    fields = MEMBER_FIELDS
    readonly_fields = MEMBER_FIELDS


@admin.register(Pool)
class PoolAdmin(ReadOnlyAdmin[Pool]):
    view_roles = ALL_ROLES
    list_display = [
        "name",
        "sponsor",
        "rule",
        "subsidy_percent",
        "credit_line_usd",
        "cutoff_at",
        "status",
    ]
    list_filter = ["status", "rule"]
    search_fields = ["name", "sponsor__slug", "sponsor__name"]
    list_select_related = ["sponsor"]
    inlines = [PoolMemberInline]

    @admin.display(description="Credit line per member (USD)")
    def credit_line_usd(self, obj: Pool) -> Decimal:
        return micros_to_usd(obj.credit_line)


@admin.register(PoolDemand)
class PoolDemandAdmin(ReadOnlyAdmin[PoolDemand]):
    view_roles = ALL_ROLES
    list_display = [
        "id",
        "pool",
        "member",
        "instrument",
        "quantity",
        "gpu_hours",
        "limit_price",
        "status",
        "updated_at",
    ]
    list_filter = ["status", "pool"]
    search_fields = ["member__organization__slug", "instrument__symbol"]
    list_select_related = ["pool__sponsor", "member__organization", "member__pool", "instrument"]


ORDER_FIELDS = (
    "instrument",
    "price",
    "quantity",
    "order",
    "refusal_code",
    "refusal_message",
    "placement_note",
)


class PoolOrderInline(ReadOnlyInline[PoolOrder, PoolRound]):
    model = PoolOrder
    fields = ORDER_FIELDS
    readonly_fields = ORDER_FIELDS


ALLOCATION_FIELDS = (
    "member",
    "instrument",
    "status",
    "requested",
    "quantity",
    "cost_usd",
    "fee_usd",
    "subsidy_usd",
    "margin_usd",
    "credit_usd",
    "entry",
)


class PoolAllocationInline(ReadOnlyInline[PoolAllocation, PoolRound]):
    model = PoolAllocation
    fields = ALLOCATION_FIELDS
    readonly_fields = ALLOCATION_FIELDS

    @admin.display(description="Cost (USD)")
    def cost_usd(self, obj: PoolAllocation) -> Decimal:
        return micros_to_usd(obj.cost)

    @admin.display(description="Fee share (USD)")
    def fee_usd(self, obj: PoolAllocation) -> Decimal:
        return micros_to_usd(obj.fee)

    @admin.display(description="Subsidy (USD)")
    def subsidy_usd(self, obj: PoolAllocation) -> Decimal:
        return micros_to_usd(obj.subsidy)

    @admin.display(description="Margin (USD)")
    def margin_usd(self, obj: PoolAllocation) -> Decimal:
        return micros_to_usd(obj.margin)

    @admin.display(description="Credit drawn (USD)")
    def credit_usd(self, obj: PoolAllocation) -> Decimal:
        return micros_to_usd(obj.credit)


@admin.register(PoolRound)
class PoolRoundAdmin(ReadOnlyAdmin[PoolRound]):
    view_roles = (RISK,)
    act_roles = (OPERATIONS,)
    list_display = [
        "__str__",
        "status",
        "cut_off_at",
        "closes_at",
        "allocated_at",
        "close_reason",
        "cut_off_by",
    ]
    list_filter = ["status"]
    list_select_related = ["pool__sponsor", "cut_off_by"]
    inlines = [PoolOrderInline, PoolAllocationInline]
    actions = ["close"]

    @staticmethod
    def _round_rows(rounds: Sequence[PoolRound]) -> list[tuple[Any, ...]]:
        return [
            (
                str(round_),
                round_.get_status_display(),
                round_.closes_at.strftime("%Y-%m-%d %H:%M"),
                ", ".join(
                    f"{o.instrument.symbol} {o.quantity} @ {o.price}" for o in round_.orders.all()
                ),
            )
            for round_ in rounds
        ]

    @admin.action(description="Close the selected rounds and allocate", permissions=["act"])
    def close(self, request: HttpRequest, queryset: QuerySet[PoolRound]) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Close pool rounds",
            consequence=(
                "What is still working of each round's pool orders is cancelled, and the fills "
                "are allocated to the members by the pool's rule: positions, fees, subsidy and "
                "credit move in the ledger. This cannot be undone."
            ),
            columns=("Round", "Status", "Closes at", "Tier orders"),
            rows=self._round_rows,
            reason_help=(
                "Why the rounds close before their time (an incident, a halted instrument, the "
                "sponsor's request). Recorded in the audit log with your name (up to 300 "
                "characters)."
            ),
        )
        page, reason = action_confirmed(
            self,
            request,
            queryset.select_related("pool__sponsor").prefetch_related("orders__instrument"),
            "close",
            confirmation,
        )
        if page is not None:
            return page
        apply_to_each(
            self,
            request,
            queryset,
            "closed",
            pool_round_close,
            "round_",
            actor=staff_user(request),
            reason=reason,
        )
        return None


@admin.register(PoolAllocation)
class PoolAllocationAdmin(ReadOnlyAdmin[PoolAllocation]):
    view_roles = ALL_ROLES
    list_display = ["round", "member", "instrument", "status", "requested", "quantity", "entry"]
    list_filter = ["status"]
    list_select_related = [
        "round__pool__sponsor",
        "member__organization",
        "member__pool",
        "instrument",
    ]


@admin.register(PoolTransfer)
class PoolTransferAdmin(ReadOnlyAdmin[PoolTransfer]):
    view_roles = ALL_ROLES
    list_display = [
        "created_at",
        "pool",
        "member",
        "kind",
        "instrument",
        "quantity",
        "price",
        "actor",
    ]
    list_filter = ["kind"]
    list_select_related = [
        "pool__sponsor",
        "member__organization",
        "member__pool",
        "instrument",
        "actor",
    ]
