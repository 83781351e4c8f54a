"""The back office. Admin actions call services; nothing here writes orders or trades itself."""

from django.contrib import admin, messages

from exchange.errors import ExchangeError
from exchange.models import (
    Account,
    AuditEntry,
    Deposit,
    Instrument,
    Membership,
    Order,
    OrderCommand,
    OrderRejection,
    OrderTransition,
    Organization,
    Region,
    ReservedCapacity,
    Sku,
    StripeEvent,
    Trade,
    Withdrawal,
)
from exchange.services.funding import withdrawal_approve, withdrawal_reject
from exchange.services.instruments import instrument_halt, instrument_resume
from exchange.services.orders import order_cancel


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records that only services write: browsable, never editable here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def apply_to_each(
    model_admin, request, queryset, verb: str, service, object_argument: str, **arguments
) -> None:
    """Run one service per selected object, in id order, reporting each refusal by name.

    Admin actions are thin: the service does the work (and its audit row); a refusal of one
    object does not stop the others.
    """
    done = 0
    # The count is taken before the loop: a status change may move items out of a filtered list.
    selected = queryset.count()
    for item in queryset.order_by("pk"):
        try:
            service(**{object_argument: item}, **arguments)
            done += 1
        except ExchangeError as error:
            model_admin.message_user(request, f"#{item.pk}: {error.message}", messages.ERROR)
    plural = queryset.model._meta.verbose_name_plural
    model_admin.message_user(request, f"{done} of {selected} selected {plural} {verb}.")


@admin.register(Sku)
class SkuAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "vendor",
        "generation",
        "memory_gb",
        "interconnect",
        "release_date",
    ]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "compliance", "power_price_usd_per_kwh"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "kind", "created_at"]
    list_filter = ["kind"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["id", "organization", "name", "status"]
    list_filter = ["status"]


@admin.register(ReservedCapacity)
class ReservedCapacityAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "provider",
        "holder",
        "cluster",
        "sku",
        "region",
        "gpus",
        "starts_at",
        "ends_at",
    ]
    list_filter = ["sku", "region"]


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = [
        "symbol",
        "kind",
        "status",
        "sku",
        "region",
        "delivery_start",
        "last_trading_day",
        "tick_size",
        "lot_size",
    ]
    list_filter = ["kind", "status", "sku", "region"]
    search_fields = ["symbol"]
    readonly_fields = ["sequence", "status"]
    actions = ["halt", "resume"]

    @admin.action(description="Halt trading in the selected instruments")
    def halt(self, request, queryset):
        reason = f"admin action by {request.user}"
        apply_to_each(
            self,
            request,
            queryset,
            "halted",
            instrument_halt,
            "instrument",
            actor=request.user,
            reason=reason,
        )

    @admin.action(description="Resume trading in the selected instruments")
    def resume(self, request, queryset):
        reason = f"admin action by {request.user}"
        apply_to_each(
            self,
            request,
            queryset,
            "resumed",
            instrument_resume,
            "instrument",
            actor=request.user,
            reason=reason,
        )


class TransitionInline(admin.TabularInline):
    model = OrderTransition
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "reason", "sequence", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "instrument",
        "account",
        "side",
        "type",
        "price",
        "quantity",
        "filled_quantity",
        "status",
        "created_at",
    ]
    list_filter = ["status", "side", "type", "time_in_force", "instrument__kind"]
    search_fields = ["instrument__symbol", "client_order_id", "account__organization__slug"]
    list_select_related = ["instrument", "account__organization"]
    inlines = [TransitionInline]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected orders")
    def cancel(self, request, queryset):
        apply_to_each(
            self, request, queryset, "cancelled", order_cancel, "order", requested_by=request.user
        )


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "instrument",
        "sequence",
        "price",
        "quantity",
        "taker_side",
        "buyer_account",
        "seller_account",
        "executed_at",
    ]
    list_filter = ["instrument__kind"]
    search_fields = ["instrument__symbol"]
    list_select_related = [
        "instrument",
        "buyer_account__organization",
        "seller_account__organization",
    ]


@admin.register(OrderCommand)
class OrderCommandAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "order",
        "instrument",
        "status",
        "reject_code",
        "created_at",
        "processed_at",
    ]
    list_filter = ["kind", "status"]


@admin.register(OrderRejection)
class OrderRejectionAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "instrument_symbol", "code", "field", "message", "created_at"]
    list_filter = ["code"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "reason",
    ]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_label", "target_id"]


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        "amount",
        "method",
        "status",
        "stripe_checkout_session_id",
        "ledger_entry_id",
        "created_at",
    ]
    list_filter = ["method", "status"]
    search_fields = ["stripe_checkout_session_id", "stripe_payment_intent_id"]
    list_select_related = ["account__organization"]


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        "amount",
        "status",
        "requested_by",
        "reviewed_by",
        "stripe_payout_id",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["account__organization", "requested_by", "reviewed_by"]
    actions = ["approve", "reject"]

    @admin.action(description="Approve and pay out the selected withdrawals")
    def approve(self, request, queryset):
        apply_to_each(
            self,
            request,
            queryset,
            "approved",
            withdrawal_approve,
            "withdrawal",
            actor=request.user,
        )

    @admin.action(description="Reject the selected withdrawals (release the funds)")
    def reject(self, request, queryset):
        reason = f"rejected in the back office by {request.user}"
        apply_to_each(
            self,
            request,
            queryset,
            "rejected",
            withdrawal_reject,
            "withdrawal",
            actor=request.user,
            reason=reason,
        )


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "event_id", "type", "status", "error_code", "received_at", "processed_at"]
    list_filter = ["type", "status"]
    search_fields = ["event_id"]
