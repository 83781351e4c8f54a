"""The ledger in the back office: browsable, never editable (only services write the ledger)."""

from django.contrib import admin

from ledger.models import Account, Commodity, Entry, Hold, HoldConsumption, Posting


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Commodity)
class CommodityAdmin(ReadOnlyAdmin):
    list_display = ["code", "name", "kind", "scale", "created_at"]
    list_filter = ["kind"]
    search_fields = ["code", "name"]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = [
        "code",
        "owner",
        "commodity",
        "type",
        "limit",
        "balance",
        "available",
        "closed",
    ]
    list_filter = ["type", "limit", "closed", "commodity"]
    list_select_related = ["commodity"]
    search_fields = ["code", "owner"]

    @admin.display(description="Balance")
    def balance(self, obj: Account) -> int:
        return obj.balance

    @admin.display(description="Available")
    def available(self, obj: Account) -> int:
        return obj.available


class PostingInline(ReadOnlyInline):
    model = Posting
    fields = ["account", "commodity", "amount"]
    readonly_fields = ["account", "commodity", "amount"]


class HoldConsumptionInline(ReadOnlyInline):
    model = HoldConsumption
    fields = ["hold", "amount"]
    readonly_fields = ["hold", "amount"]


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "description", "idempotency_key", "reverses", "created_at"]
    search_fields = ["idempotency_key", "description"]
    date_hierarchy = "created_at"
    inlines = [PostingInline, HoldConsumptionInline]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "account",
        "side",
        "amount",
        "remaining",
        "released",
        "status",
        "expires_at",
        "created_at",
    ]
    list_filter = ["status", "side"]
    list_select_related = ["account"]
    search_fields = ["idempotency_key", "account__code", "description"]
