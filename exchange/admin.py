"""The back office. Admin actions call services; nothing here writes orders or trades itself."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from exchange.backoffice.paging import AppendOnlyPaginator
from exchange.backoffice.roles import ALL_ROLES, RISK_STAFF, ROLES_STAFF, Role, has_any_role
from exchange.errors import ExchangeError
from exchange.models import (
    Account,
    ApiKey,
    AuditEntry,
    Deposit,
    Instrument,
    MarginCall,
    Membership,
    Notice,
    Order,
    OrderCommand,
    OrderRejection,
    OrderTransition,
    Organization,
    Region,
    ReservedCapacity,
    RiskCycle,
    SettlementPrice,
    Sku,
    StripeEvent,
    Trade,
    Withdrawal,
)
from exchange.models.catalog import InstrumentQuerySet
from exchange.selectors import backoffice as backoffice_selectors
from exchange.selectors import risk as risk_selectors
from exchange.services.funding import withdrawal_approve, withdrawal_reject
from exchange.services.instruments import (
    instrument_halt,
    instrument_position_limit_set,
    instrument_resume,
    organization_position_limit_exempt_set,
)
from exchange.services.ledger_accounts import micros_to_usd
from exchange.services.listing import (
    FUTURE_TICK_SIZE,
    LISTED_MONTHS_MAX,
    StripListing,
    StripSpec,
    futures_list_new_strip,
    listings_roll,
)
from exchange.services.participants import organization_create
from exchange.services.risk_cycle import account_liquidate, daily_settlement_run
from exchange.services.settlement_prices import (
    last_closed_day,
    settlement_price_check,
    settlement_price_override,
    settlement_prices_set,
)
from exchange.services.staff import (
    admin_changes,
    admin_edit_record,
    api_key_staff_revoke,
    margin_call_staff_review,
    order_staff_cancel,
)

OPERATIONS, RISK, FINANCE = Role.OPERATIONS, Role.RISK, Role.FINANCE

ModelT = TypeVar("ModelT", bound=Model)

# Where save_model leaves the form's changes (before, after) on the object for log_addition and
# log_change, which Django calls with the same object later in the same request.
AUDIT_CHANGES_ATTRIBUTE = "_audit_changes"

# What Django passes log_addition and log_change: the form's change message (a list of what
# changed, as construct_change_message builds it) or a text.
ChangeMessage = str | list[dict[str, Any]]


def staff_user(request: HttpRequest) -> User:
    """The signed-in staff user: the admin serves its pages to active staff only
    (``AdminSite.admin_view``), so the request's user is never anonymous here."""
    user = request.user
    assert isinstance(user, User), "the admin serves signed-in staff only"
    return user


def audit_changes_keep(obj: Model, before: dict[str, Any], after: dict[str, Any]) -> None:
    setattr(obj, AUDIT_CHANGES_ATTRIBUTE, (before, after))


def audit_changes_kept(obj: Model) -> tuple[dict[str, Any], dict[str, Any]]:
    before, after = getattr(obj, AUDIT_CHANGES_ATTRIBUTE, ({}, {}))
    return before, after


class AuditedEdits(admin.ModelAdmin[ModelT]):
    """Every add, change and delete made in an admin form writes an audit row: the fields the
    form changed, before and after (secrets redacted), with the admin's change message for
    inlines. Add and change are recorded where Django logs them, inside the form's transaction;
    a delete is recorded before the row goes, in the delete's transaction."""

    audit_edits = True

    def save_model(
        self, request: HttpRequest, obj: ModelT, form: forms.ModelForm[ModelT], change: bool
    ) -> None:
        if self.audit_edits:
            audit_changes_keep(
                obj,
                *admin_changes(
                    form.changed_data, form.initial if change else None, form.cleaned_data
                ),
            )
        super().save_model(request, obj, form, change)

    def _audit_edit(
        self, request: HttpRequest, obj: ModelT, action: str, message: ChangeMessage
    ) -> None:
        before, after = audit_changes_kept(obj)
        after = dict(after)
        if message:
            after["admin_message"] = message
        admin_edit_record(
            actor=staff_user(request), action=action, target=obj, before=before, after=after
        )

    def log_addition(self, request: HttpRequest, obj: ModelT, message: ChangeMessage) -> LogEntry:
        if self.audit_edits:
            self._audit_edit(request, obj, "admin.add", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: ModelT, message: ChangeMessage) -> LogEntry:
        if self.audit_edits:
            self._audit_edit(request, obj, "admin.change", message)
        return super().log_change(request, obj, message)

    def delete_model(self, request: HttpRequest, obj: ModelT) -> None:
        with transaction.atomic():
            self._audit_delete(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelT]) -> None:
        with transaction.atomic():
            for obj in queryset.order_by("pk"):
                self._audit_delete(request, obj)
            super().delete_queryset(request, queryset)

    def _audit_delete(self, request: HttpRequest, obj: ModelT) -> None:
        if self.audit_edits:
            admin_edit_record(
                actor=staff_user(request),
                action="admin.delete",
                target=obj,
                before={"repr": str(obj)},
            )


class RefusalsOnForm(admin.ModelAdmin[ModelT]):
    """A form whose save calls a service: the service's refusal (``ExchangeError``), which
    rolls the save back in the admin's transaction, is told by name on the form's page again,
    nothing saved, not as a server error (the settlement price form's override, checked again
    under the day's lock; an instrument's position limit)."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ExchangeError as error:
            self.message_user(
                request, f"Nothing was saved: {error.code}: {error.message}", messages.ERROR
            )
            return redirect(request.get_full_path())


class BackOfficeAdmin(AuditedEdits[ModelT]):
    """The staff roles open the admin pages of their functions (exchange/backoffice/roles.py;
    a superuser has every role): ``view_roles`` browse the model, ``act_roles`` also run its
    actions, which are declared with ``permissions=["act"]``. Adding, changing and deleting in
    the forms keeps Django's model permissions (superusers, unless granted)."""

    view_roles: tuple[Role, ...] = ()
    act_roles: tuple[Role, ...] = ()

    def _seen_by_role(self, request: HttpRequest) -> bool:
        return has_any_role(request.user, self.view_roles + self.act_roles)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._seen_by_role(request) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return self._seen_by_role(request) or super().has_view_permission(request, obj)

    def has_act_permission(self, request: HttpRequest) -> bool:
        return has_any_role(request.user, self.act_roles)


class ReadOnlyAdmin(BackOfficeAdmin[ModelT]):
    """For records that only services write: browsable, never editable here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return False


# Confirmation of the actions that stop trading or move money --------------------------------

CONFIRM_FIELD = "confirm"
CONFIRM_ROWS_SHOWN_MAX = 100  # The page lists this many of the selection; all are acted on.


class ActionReasonForm(forms.Form):
    """The reason a staff action records in the audit log (and, for a rejected withdrawal,
    shows the customer)."""

    reason = forms.CharField(
        max_length=300,
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded in the audit log with your name (up to 300 characters).",
    )


@dataclass(frozen=True)
class ActionConfirmation(Generic[ModelT]):
    """What the confirmation page of an admin action says: its consequence, one row per
    selected object (``rows`` reads the selection in one go), and whether a reason is asked."""

    title: str
    consequence: str
    columns: tuple[str, ...]
    rows: Callable[[Sequence[ModelT]], list[tuple[Any, ...]]]
    reason_required: bool = True
    reason_help: str = ""


def action_confirmed(
    model_admin: admin.ModelAdmin[ModelT],
    request: HttpRequest,
    queryset: QuerySet[ModelT],
    action: str,
    confirmation: ActionConfirmation[ModelT],
) -> tuple[TemplateResponse | None, str]:
    """(None, the reason) once the confirmation page was submitted with what it asks for;
    else (the confirmation page, ""). Choosing the action in the list only shows the page.

    The page posts back to the list with the selection, the action and ``confirm``, which is
    how Django runs an action after an intermediate page (as its own delete does).
    """
    submitted = CONFIRM_FIELD in request.POST
    form = ActionReasonForm(request.POST if submitted else None)
    if not confirmation.reason_required:
        del form.fields["reason"]
    elif confirmation.reason_help:
        form.fields["reason"].help_text = confirmation.reason_help
    if submitted and form.is_valid():
        return None, form.cleaned_data.get("reason", "")
    selected = list(queryset.order_by("pk"))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": confirmation.title,
        "confirmation": confirmation,
        "opts": model_admin.model._meta,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": [item.pk for item in selected],
        "rows": confirmation.rows(selected[:CONFIRM_ROWS_SHOWN_MAX]),
        "rows_more": max(0, len(selected) - CONFIRM_ROWS_SHOWN_MAX),
        "form": form,
        "confirm_field": CONFIRM_FIELD,
    }
    page = TemplateResponse(
        request,
        "admin/exchange/action_confirm.html",
        context,
        status=400 if form.errors else 200,
    )
    return page, ""


def apply_to_each(
    model_admin: admin.ModelAdmin[ModelT],
    request: HttpRequest,
    queryset: QuerySet[ModelT],
    verb: str,
    service: Callable[..., object],
    object_argument: str,
    **arguments: object,
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
class SkuAdmin(BackOfficeAdmin[Sku]):
    view_roles = (OPERATIONS, RISK)
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
class RegionAdmin(BackOfficeAdmin[Region]):
    view_roles = (OPERATIONS, RISK)
    list_display = ["code", "name", "compliance", "power_price_usd_per_kwh"]


class MembershipInline(admin.TabularInline[Membership, Organization]):
    model = Membership
    extra = 0


# An organization's exemption from the position limits, and the mark its admin save leaves
# when that was all it changed (``OrganizationAdmin.log_change``).
EXEMPT_FIELD = "position_limit_exempt"
EXEMPT_ONLY_ATTRIBUTE = "_position_limit_exempt_only"


@admin.register(Organization)
class OrganizationAdmin(BackOfficeAdmin[Organization]):
    view_roles = ALL_ROLES
    list_display = ["slug", "name", "kind", "position_limit_exempt", "created_at"]
    list_filter = ["kind", "position_limit_exempt"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Organization | None = None
    ) -> list[str]:
        """The kind is chosen when the organization is added and never changed here. What
        was written under it was checked against it: a provider's registered capacity and its
        GPU-hours, a sponsor's pools and their startup members, the operator's accounts, which
        trade nothing (and which the order path reads per process). An organization made
        another kind after it has accounts, positions or orders would break those checks.

        The exemption from position limits is the risk role's to grant (its change is audited
        with the others), on an organization once opened: sign-up opens none exempt."""
        if obj is None:
            return ["position_limit_exempt"]
        if not RISK_STAFF.allows(request.user):
            return ["kind", "position_limit_exempt"]
        if not super().has_change_permission(request, obj):
            # Risk staff without Django's permission to edit organizations: the exemption only.
            return [
                field.name
                for field in Organization._meta.concrete_fields
                if field.editable and not field.primary_key and field.name != EXEMPT_FIELD
            ]
        return ["kind"]

    def has_change_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        """Django's model permission (superusers), or the risk role on an organization opened
        already, for its exemption alone (``get_readonly_fields``). Until 2026-12-07 risk staff
        were shown the page read-only and a save got a 403: the exemption the settings and the
        limit's refusal send customers to staff for could only be granted by a superuser."""
        if super().has_change_permission(request, obj):
            return True
        return obj is not None and RISK_STAFF.allows(request.user)

    def save_model(
        self,
        request: HttpRequest,
        obj: Organization,
        form: forms.ModelForm[Organization],
        change: bool,
    ) -> None:
        """A new organization is opened as sign-up opens one, with its main trading account
        (``organization_create``); without it its members could neither fund nor trade. A
        change of the exemption from the position limits goes through its service
        (``organization_position_limit_exempt_set``: the risk role, its own audit row); the
        other fields are saved and audited as the admin's other forms are."""
        if change:
            others = [field for field in form.changed_data if field != EXEMPT_FIELD]
            if EXEMPT_FIELD in form.changed_data:
                organization_position_limit_exempt_set(
                    organization=obj,
                    exempt=form.cleaned_data[EXEMPT_FIELD],
                    actor=staff_user(request),
                )
                if not others:
                    setattr(obj, EXEMPT_ONLY_ATTRIBUTE, True)
                    return None
            audit_changes_keep(obj, *admin_changes(others, form.initial, form.cleaned_data))
            # Django's own save: AuditedEdits' would record the exemption a second time.
            return admin.ModelAdmin.save_model(self, request, obj, form, change)
        audit_changes_keep(obj, *admin_changes(form.changed_data, None, form.cleaned_data))
        created = organization_create(
            slug=obj.slug, name=obj.name, kind=obj.kind, actor=staff_user(request)
        )
        # The form's object becomes the created row, for the inlines and the admin's log.
        obj.pk, obj.name, obj.created_at = created.pk, created.name, created.created_at
        obj._state.adding, obj._state.db = False, created._state.db

    def log_change(
        self, request: HttpRequest, obj: Organization, message: ChangeMessage
    ) -> LogEntry:
        """No ``admin.change`` row for a save that changed the exemption alone: its service
        wrote the audit row. A change of the members (the inline) is still recorded."""
        members_changed = isinstance(message, list) and any(
            "name" in details for part in message for details in part.values()
        )
        if getattr(obj, EXEMPT_ONLY_ATTRIBUTE, False) and not members_changed:
            return admin.ModelAdmin.log_change(self, request, obj, message)
        return super().log_change(request, obj, message)


@admin.register(Account)
class AccountAdmin(BackOfficeAdmin[Account]):
    view_roles = ALL_ROLES
    list_display = ["id", "organization", "name", "status"]
    list_filter = ["status"]

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> list[str]:
        """The organization is chosen when the account is added and never changed here: its
        positions, cash and orders are that organization's, counted in its position limits,
        and the matcher keeps each account's organization for as long as it runs, as the
        self-trade prevention group of the account's orders (``Matcher._organizations``)."""
        return [] if obj is None else ["organization"]


@admin.register(ReservedCapacity)
class ReservedCapacityAdmin(ReadOnlyAdmin[ReservedCapacity]):
    """Blocks are written only by ``capacity_register``, which issues their GPU-hours in the
    same transaction. A block added here would issue none, yet its holder would hold its GPUs
    (``block_holdings``) and could sell GPU-hours of other blocks on its listing; a block
    changed here (its GPUs, holder or term) would no longer match the GPU-hours issued for it,
    nor its listing's contract."""

    view_roles = (OPERATIONS, RISK)
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


class InstrumentTradingStatusFilter(admin.SimpleListFilter):
    """The status as trading sees it (``InstrumentQuerySet.in_trading_status``): the options
    of a halted future are halted with it, not trading, though their own status says active,
    as on the dashboard and the trading status page. Its parameter is Django's field filter's,
    so links to the list filtered by status keep working."""

    title = "status"
    parameter_name = "status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), str(label)) for value, label in Instrument.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        assert isinstance(queryset, InstrumentQuerySet), "the admin lists Instrument.objects"
        return queryset.in_trading_status(value) if value else queryset


class CodeChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """A SKU or region by its code, as symbols name it, and its name."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.code}: {obj.name}"


class StripListingForm(forms.Form):
    """A futures strip's SKU, region, months and terms. The form reads the input's types; the
    service (``futures_list_new_strip``) judges the values and names what is wrong."""

    sku = CodeChoiceField(queryset=Sku.objects.all(), label="SKU")
    region = CodeChoiceField(queryset=Region.objects.all())
    first_month = forms.DateField(
        input_formats=["%Y-%m", "%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
        help_text="Year and month (YYYY-MM) of the first delivery month.",
    )
    months = forms.IntegerField(
        initial=12, help_text=f"Consecutive monthly futures, 1 to {LISTED_MONTHS_MAX}."
    )
    settlement = forms.ChoiceField(
        choices=Instrument.Settlement.choices,
        initial=Instrument.Settlement.CASH,
        help_text="Cash against the final settlement price, or delivery of the month's "
        "GPU-hour entitlements at expiry.",
    )
    tick_size = forms.DecimalField(initial=FUTURE_TICK_SIZE, help_text="$/GPU-hr.")
    lot_size = forms.IntegerField(initial=1, help_text="Contracts per lot.")
    price_max = forms.DecimalField(
        initial=Decimal("1000"),
        label="Price limit",
        help_text="Highest accepted price, $/GPU-hr: a multiple of the tick.",
    )
    position_limit = forms.IntegerField(
        required=False,
        help_text="Contracts one organization may hold net in each month. Empty: the "
        "exchange's default; 0: no limit. Needs the risk role too.",
    )

    def spec(self) -> StripSpec:
        data = self.cleaned_data
        return StripSpec(
            tick_size=data["tick_size"],
            lot_size=data["lot_size"],
            settlement=data["settlement"],
            price_max=data["price_max"],
            position_limit=data["position_limit"],
        )


def _strip_listed_message(listing: StripListing) -> str:
    listed, kept = listing.listed, listing.already_listed
    message = f"{len(listed)} futures listed" + (
        f": {', '.join(future.symbol for future in listed)}." if listed else "."
    )
    if kept:
        message += (
            f" {len(kept)} already listed on these terms, left as they are: "
            f"{', '.join(future.symbol for future in kept)}."
        )
    return message


@admin.register(Instrument)
class InstrumentAdmin(RefusalsOnForm[Instrument], ReadOnlyAdmin[Instrument]):
    """Instruments are listed by the services (``futures_list_strip``, ``options_list_chain``,
    ``resale_list``, the roll), which check what they list, and change status only through
    the halt and resume actions. Their terms are not edited here: the book's resting orders are
    in ticks and lots, their holds were computed from the GPU-hours per contract, and a resale
    listing's last trading day is the day before its block's term starts."""

    view_roles = (RISK,)
    act_roles = (OPERATIONS,)
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
        "position_limit",
    ]
    list_filter = ["kind", InstrumentTradingStatusFilter, "sku", "region"]
    search_fields = ["symbol"]
    readonly_fields = ["sequence", "status"]
    actions = ["halt", "resume"]
    change_list_template = "admin/exchange/instrument/change_list.html"
    # A future's position limit is the one thing edited here, by the risk role, through
    # ``instrument_position_limit_set``, which writes only that column and the audit row.
    audit_edits = False

    def has_change_permission(self, request: HttpRequest, obj: Instrument | None = None) -> bool:
        if obj is not None and obj.kind != Instrument.Kind.FUTURE:
            return False
        return RISK_STAFF.allows(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Instrument | None = None) -> list[str]:
        return [
            field.name
            for field in Instrument._meta.concrete_fields
            if field.name not in ("id", "position_limit")
        ]

    def save_model(
        self,
        request: HttpRequest,
        obj: Instrument,
        form: forms.ModelForm[Instrument],
        change: bool,
    ) -> None:
        instrument_position_limit_set(
            instrument=obj,
            position_limit=form.cleaned_data["position_limit"],
            actor=staff_user(request),
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The links to listing a strip and rolling the listings, for those who may (others,
        # risk staff browsing the instruments, would follow them to a 403).
        context = {**(extra_context or {}), "can_list": self.has_act_permission(request)}
        return super().changelist_view(request, context)

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "roll/", self.admin_site.admin_view(self.roll_view), name="exchange_instrument_roll"
            ),
            path(
                "list-strip/",
                self.admin_site.admin_view(self.list_strip_view),
                name="exchange_instrument_list_strip",
            ),
        ]
        return extra + super().get_urls()

    def roll_view(self, request: HttpRequest) -> HttpResponse:
        """List the next futures months and the strikes around current prices (idempotent)."""
        if not self.has_act_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                listed = listings_roll(actor=staff_user(request))
            except ExchangeError as error:
                self.message_user(request, f"{error.code}: {error.message}", messages.ERROR)
                return redirect("admin:exchange_instrument_changelist")
            self.message_user(
                request,
                f"{len(listed)} instruments listed"
                + (f": {', '.join(i.symbol for i in listed[:10])}" if listed else "."),
            )
            return redirect("admin:exchange_instrument_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Roll the listings",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/exchange/instrument/roll.html", context)

    def list_strip_view(self, request: HttpRequest) -> HttpResponse:
        """List a futures strip for a SKU and region on the terms staff choose; the roll then
        continues it on those terms. A refusal is shown on the form, nothing listed."""
        if not self.has_act_permission(request):
            raise PermissionDenied
        form = StripListingForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                listing = futures_list_new_strip(
                    sku=form.cleaned_data["sku"],
                    region=form.cleaned_data["region"],
                    first_month=form.cleaned_data["first_month"],
                    months=form.cleaned_data["months"],
                    spec=form.spec(),
                    actor=staff_user(request),
                )
            except ExchangeError as error:
                field = error.field if error.field in form.fields else None
                form.add_error(field, f"{error.code}: {error.message}")
            else:
                self.message_user(request, _strip_listed_message(listing))
                return redirect("admin:exchange_instrument_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "List a futures strip",
            "opts": self.model._meta,
            "form": form,
            "months_max": LISTED_MONTHS_MAX,
        }
        return TemplateResponse(
            request,
            "admin/exchange/instrument/list_strip.html",
            context,
            status=400 if form.errors else 200,
        )

    @staticmethod
    def _status_rows(instruments: Sequence[Instrument]) -> list[tuple[Any, ...]]:
        resting = backoffice_selectors.resting_orders_by_instrument([i.pk for i in instruments])
        return [
            (i.symbol, i.get_kind_display(), i.get_status_display(), resting.get(i.pk, 0))
            for i in instruments
        ]

    def _change_status(
        self,
        request: HttpRequest,
        queryset: QuerySet[Instrument],
        action: str,
        confirmation: ActionConfirmation[Instrument],
        service: Callable[..., Instrument],
        verb: str,
    ) -> TemplateResponse | None:
        page, reason = action_confirmed(self, request, queryset, action, confirmation)
        if page is not None:
            return page
        apply_to_each(
            self,
            request,
            queryset,
            verb,
            service,
            "instrument",
            actor=staff_user(request),
            reason=reason,
        )
        return None

    @admin.action(description="Halt trading in the selected instruments", permissions=["act"])
    def halt(self, request: HttpRequest, queryset: QuerySet[Instrument]) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Halt trading",
            consequence=(
                "New orders and amendments in these instruments will be refused "
                "(ORDER_INSTRUMENT_HALTED) until trading resumes. Resting orders stay on the book; "
                "their owners can still cancel them."
            ),
            columns=("Instrument", "Kind", "Status now", "Resting orders"),
            rows=self._status_rows,
        )
        return self._change_status(
            request, queryset, "halt", confirmation, instrument_halt, "halted"
        )

    @admin.action(description="Resume trading in the selected instruments", permissions=["act"])
    def resume(
        self, request: HttpRequest, queryset: QuerySet[Instrument]
    ) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Resume trading",
            consequence=(
                "These instruments will accept orders again; their resting orders can trade "
                "at once."
            ),
            columns=("Instrument", "Kind", "Status now", "Resting orders"),
            rows=self._status_rows,
        )
        return self._change_status(
            request, queryset, "resume", confirmation, instrument_resume, "resumed"
        )


class TransitionInline(admin.TabularInline[OrderTransition, Order]):
    model = OrderTransition
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "reason", "sequence", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin[Order]):
    """Orders are never deleted and grow to millions: the list never counts the whole table
    (``AppendOnlyPaginator``; no "N total" beside a filter's count)."""

    view_roles = (RISK,)
    act_roles = (OPERATIONS,)
    paginator = AppendOnlyPaginator
    show_full_result_count = False
    list_display = [
        "id",
        "instrument",
        "account",
        "side",
        "type",
        "price",
        "quantity",
        "filled_quantity",
        "cancelled_quantity",
        "status",
        "done_reason",
        "created_at",
    ]
    list_filter = ["status", "done_reason", "side", "type", "time_in_force", "instrument__kind"]
    search_fields = ["instrument__symbol", "client_order_id", "account__organization__slug"]
    list_select_related = ["instrument", "account__organization"]
    inlines = [TransitionInline]
    actions = ["cancel"]

    @staticmethod
    def _cancel_rows(orders: Sequence[Order]) -> list[tuple[Any, ...]]:
        return [
            (
                f"#{order.pk}",
                order.instrument.symbol,
                str(order.account),
                order.get_side_display(),
                order.price if order.price is not None else "market",
                order.open_quantity,  # Less what was filled and what the matcher cut.
                order.get_status_display(),
            )
            for order in orders
        ]

    @admin.action(description="Cancel the selected orders", permissions=["act"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Order]) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Cancel customers' orders",
            consequence=(
                "The matcher takes the unfilled remainder of each order off the book; "
                "what has filled stays filled. The customers see the cancellation."
            ),
            columns=(
                "Order",
                "Instrument",
                "Account",
                "Side",
                "Price ($/GPU-hr)",
                "Open (contracts)",
                "Status",
            ),
            rows=self._cancel_rows,
        )
        page, reason = action_confirmed(
            self,
            request,
            queryset.select_related(*self.list_select_related),
            "cancel",
            confirmation,
        )
        if page is not None:
            return page
        apply_to_each(
            self,
            request,
            queryset,
            "cancelled",
            order_staff_cancel,
            "order",
            actor=staff_user(request),
            reason=reason,
        )
        return None


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin[Trade]):
    """Trades are never deleted and grow to millions: the list never counts the whole table
    (``AppendOnlyPaginator``; no "N total" beside a filter's count)."""

    view_roles = ALL_ROLES
    paginator = AppendOnlyPaginator
    show_full_result_count = False
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
class OrderCommandAdmin(ReadOnlyAdmin[OrderCommand]):
    view_roles = (OPERATIONS,)
    list_display = [
        "id",
        "kind",
        "order",
        "instrument",
        "status",
        "reject_code",
        "cancel_reason",
        "requested_by",
        "created_at",
        "processed_at",
    ]
    list_filter = ["kind", "status", "cancel_reason"]
    list_select_related = ["order", "instrument", "requested_by"]


@admin.register(OrderRejection)
class OrderRejectionAdmin(ReadOnlyAdmin[OrderRejection]):
    view_roles = (OPERATIONS,)
    list_display = ["id", "account", "instrument_symbol", "code", "field", "message", "created_at"]
    list_filter = ["code"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin[ApiKey]):
    """Customers' API keys, without their secrets. Operations revoke one (a key leaked, or a
    program running wild) through ``api_key_staff_revoke``, which asks for the reason and
    writes the audit row; until 2026-12-07 staff had no way to revoke a key but the shell."""

    view_roles = (OPERATIONS,)
    act_roles = (OPERATIONS,)
    exclude = ["secret_digest", "signing_key_encrypted"]
    list_display = [
        "prefix",
        "organization",
        "name",
        "scopes",
        "require_signature",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "organization__slug"]
    list_select_related = ["organization", "revoked_by"]
    actions = ["revoke"]

    @staticmethod
    def _revoke_rows(keys: Sequence[ApiKey]) -> list[tuple[Any, ...]]:
        return [
            (
                key.prefix,
                key.organization.slug,
                key.name,
                ", ".join(key.scopes),
                key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never",
                "revoked" if key.revoked_at else "active",
            )
            for key in keys
        ]

    @admin.action(description="Revoke the selected API keys", permissions=["act"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Revoke API keys",
            consequence=(
                "Each key is refused at once by this web process and within "
                "EXCHANGE_API_KEY_CACHE_SECONDS by the others (AUTH_KEY_REVOKED), and its push "
                "feed connections are closed. Its orders stay: cancel them in Orders, or "
                "halt the instrument. A revoked key cannot be restored; the customer makes "
                "a new one."
            ),
            columns=("Key", "Organization", "Name", "Scopes", "Last used", "Status"),
            rows=self._revoke_rows,
        )
        page, reason = action_confirmed(
            self, request, queryset.select_related("organization"), "revoke", confirmation
        )
        if page is not None:
            return page
        apply_to_each(
            self,
            request,
            queryset,
            "revoked",
            api_key_staff_revoke,
            "key",
            actor=staff_user(request),
            reason=reason,
        )
        return None


class _AuditChoiceFilter(admin.SimpleListFilter):
    """A filter on one indexed column of the audit log, offering the values that occur in it
    read one index seek each (``audit_choices``): Django's filter on a field's values reads
    them with a SELECT DISTINCT of the whole log on every page."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        actions, target_types = backoffice_selectors.audit_choices()
        values = actions if self.parameter_name == "action" else target_types
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class AuditActionFilter(_AuditChoiceFilter):
    title = "action"
    parameter_name = "action"


class AuditTargetTypeFilter(_AuditChoiceFilter):
    title = "target type"
    parameter_name = "target_type"


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin[AuditEntry]):
    """The audit log, read-only for everyone (the model also refuses updates and deletes).
    Its pages never count the whole log (``AppendOnlyPaginator``; no "N total" beside a filter's
    count), nor read its distinct values (the filters' choices)."""

    view_roles = ALL_ROLES
    paginator = AppendOnlyPaginator
    show_full_result_count = False
    list_display = [
        "id",
        "created_at",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "reason",
    ]
    list_filter = [AuditActionFilter, AuditTargetTypeFilter]
    search_fields = ["actor_label", "target_id"]


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdmin[Notice]):
    """What the exchange told organizations (margin calls, liquidations, funds, deliveries),
    and whether each was emailed: a notice whose ``emailed_at`` stays empty is retried by the
    ``notices_email_unsent`` task every 10 minutes."""

    view_roles = ALL_ROLES
    paginator = AppendOnlyPaginator
    show_full_result_count = False
    list_display = [
        "id",
        "created_at",
        "organization",
        "account",
        "kind",
        "subject",
        "emailed_at",
        "email_recipients",
    ]
    list_filter = ["kind"]
    list_select_related = ["organization", "account"]
    search_fields = ["organization__slug", "subject"]


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin[Deposit]):
    view_roles = (FINANCE,)
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
class WithdrawalAdmin(ReadOnlyAdmin[Withdrawal]):
    act_roles = (FINANCE,)
    list_display = [
        "id",
        "account",
        "amount",
        "status",
        "requester",
        "reviewed_by",
        "stripe_payout_id",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["account__organization", "requested_by", "requested_with", "reviewed_by"]
    actions = ["approve", "reject"]
    confirm_columns = ("Withdrawal", "Account", "Amount (USD)", "Status", "Requested by", "Asked")

    @staticmethod
    def _review_rows(withdrawals: Sequence[Withdrawal]) -> list[tuple[Any, ...]]:
        return [
            (
                f"#{withdrawal.pk}",
                str(withdrawal.account),
                withdrawal.amount,
                withdrawal.get_status_display(),
                withdrawal.requester,
                withdrawal.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for withdrawal in withdrawals
        ]

    def _selection(self, queryset: QuerySet[Withdrawal]) -> QuerySet[Withdrawal]:
        return queryset.select_related("account__organization", "requested_by", "requested_with")

    @admin.action(description="Approve and pay out the selected withdrawals", permissions=["act"])
    def approve(
        self, request: HttpRequest, queryset: QuerySet[Withdrawal]
    ) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Approve and pay out withdrawals",
            consequence=(
                "Each withdrawal is paid out through Stripe (no payout in test mode) and posted "
                "to the ledger: the money leaves the exchange, and this cannot be undone."
            ),
            columns=self.confirm_columns,
            rows=self._review_rows,
            reason_required=False,
        )
        page, _ = action_confirmed(
            self, request, self._selection(queryset), "approve", confirmation
        )
        if page is not None:
            return page
        apply_to_each(
            self,
            request,
            queryset,
            "approved",
            withdrawal_approve,
            "withdrawal",
            actor=staff_user(request),
        )
        return None

    @admin.action(
        description="Reject the selected withdrawals (release the funds)", permissions=["act"]
    )
    def reject(
        self, request: HttpRequest, queryset: QuerySet[Withdrawal]
    ) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Reject withdrawals",
            consequence=(
                "The funds held for each withdrawal become available to its account again; "
                "nothing is paid out."
            ),
            columns=self.confirm_columns,
            rows=self._review_rows,
            reason_help=(
                "Shown to the customer on the withdrawal and recorded in the audit log with "
                "your name (up to 300 characters)."
            ),
        )
        page, reason = action_confirmed(
            self, request, self._selection(queryset), "reject", confirmation
        )
        if page is not None:
            return page
        apply_to_each(
            self,
            request,
            queryset,
            "rejected",
            withdrawal_reject,
            "withdrawal",
            actor=staff_user(request),
            reason=reason,
        )
        return None


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin[StripeEvent]):
    view_roles = (FINANCE,)
    list_display = ["id", "event_id", "type", "status", "error_code", "received_at", "processed_at"]
    list_filter = ["type", "status"]
    search_fields = ["event_id"]


# The daily risk cycle ---------------------------------------------------------------------


class SettlementPriceForm(forms.ModelForm[SettlementPrice]):
    """Staff override: the service checks the price, the day and the staff's role, and writes
    the audit row. ``actor``: who overrides, set by the admin (``get_form``)."""

    actor: User | None = None

    class Meta:
        model = SettlementPrice
        fields = ["instrument", "trading_date", "price", "reason"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        instrument = cleaned.get("instrument") or getattr(self.instance, "instrument", None)
        trading_date = cleaned.get("trading_date") or self.instance.trading_date
        if instrument is not None and trading_date and cleaned.get("price") is not None:
            try:
                settlement_price_check(
                    instrument=instrument,
                    trading_date=trading_date,
                    price=cleaned["price"],
                    reason=cleaned.get("reason") or "",
                    actor=self.actor,
                )
            except ExchangeError as error:
                if error.field in self.fields:
                    raise forms.ValidationError({error.field: error.message}) from error
                # A field the change form shows read-only (a settled day's date): the form's
                # own error, as a dict keyed None would fail with a 500.
                raise forms.ValidationError(error.message) from error
        return cleaned


@admin.register(SettlementPrice)
class SettlementPriceAdmin(RefusalsOnForm[SettlementPrice], BackOfficeAdmin[SettlementPrice]):
    """Prices come from the cycle; staff override one (with a reason) until its day settles.

    The form is the override service's (which writes the audit row), so the risk role adds and
    changes here, and the admin's own edit audit is off. Prices are never deleted, one per
    instrument and day: the list never counts the whole table (``AppendOnlyPaginator``; no
    "N total" beside a filter's count)."""

    act_roles = (RISK,)
    audit_edits = False
    paginator = AppendOnlyPaginator
    show_full_result_count = False

    form = SettlementPriceForm
    list_display = [
        "trading_date",
        "instrument",
        "price",
        "source",
        "volume",
        "implied_volatility",
        "set_by",
        "reason",
    ]
    list_filter = ["trading_date", "source", "instrument__kind"]
    search_fields = ["instrument__symbol"]
    list_select_related = ["instrument", "set_by"]
    autocomplete_fields = ["instrument"]
    date_hierarchy = "trading_date"

    def get_readonly_fields(
        self, request: HttpRequest, obj: SettlementPrice | None = None
    ) -> list[str]:
        return ["instrument", "trading_date"] if obj is not None else []

    def get_form(
        self,
        request: HttpRequest,
        obj: SettlementPrice | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm[SettlementPrice]]:
        """The form checks the override as the service will, for the signed-in staff: one
        with Django's model permission but not the risk role is refused there, by name."""
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"actor": staff_user(request)})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_act_permission(request) or super().has_add_permission(request)

    def has_change_permission(
        self, request: HttpRequest, obj: SettlementPrice | None = None
    ) -> bool:
        return self.has_act_permission(request) or super().has_change_permission(request, obj)

    def has_delete_permission(
        self, request: HttpRequest, obj: SettlementPrice | None = None
    ) -> bool:
        return False

    def save_model(
        self,
        request: HttpRequest,
        obj: SettlementPrice,
        form: forms.ModelForm[SettlementPrice],
        change: bool,
    ) -> None:
        saved = settlement_price_override(
            instrument=obj.instrument,
            trading_date=obj.trading_date,
            price=obj.price,
            reason=obj.reason,
            actor=staff_user(request),
        )
        obj.pk = saved.pk


@admin.register(RiskCycle)
class RiskCycleAdmin(ReadOnlyAdmin[RiskCycle]):
    """Each trading day's cycle. "Run the daily cycle" previews the prices and the variation
    margin, then settles on confirmation."""

    act_roles = (RISK,)
    list_display = ["trading_date", "status", "priced_at", "settled_at", "settled_by"]
    list_filter = ["status"]
    readonly_fields = ["trading_date", "status", "close_at", "settled_at", "settled_by", "summary"]
    change_list_template = "admin/exchange/riskcycle/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "run/",
                self.admin_site.admin_view(self.run_view),
                name="exchange_riskcycle_run",
            )
        ]
        return extra + super().get_urls()

    def run_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_act_permission(request):
            raise PermissionDenied
        form = RunCycleForm(
            request.POST or None,
            initial={"trading_date": last_closed_day()},
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Run the daily cycle",
            "opts": self.model._meta,
            "form": form,
            "confirm_date_field": CONFIRM_DATE_FIELD,
        }
        if request.method == "POST" and form.is_valid():
            trading_date = form.cleaned_data["trading_date"]
            # The confirm button settles the day its page previewed (CONFIRM_DATE_FIELD), the
            # one its label names: a date edited after the preview is previewed, not settled.
            previewed = request.POST.get(CONFIRM_DATE_FIELD, "")
            confirmed = "confirm" in request.POST and previewed == trading_date.isoformat()
            if "confirm" in request.POST and not confirmed:
                self.message_user(
                    request,
                    f"Nothing was settled: {trading_date} is not the day previewed"
                    + (f" ({previewed})" if previewed else "")
                    + ". Check its preview below, then confirm.",
                    messages.WARNING,
                )
            try:
                if confirmed:
                    cycle = daily_settlement_run(
                        trading_date=trading_date, actor=staff_user(request), refuse_settled=True
                    )
                    self.message_user(
                        request,
                        f"{trading_date} settled: {cycle.summary.get('variation_entries', 0)} "
                        "variation margin entries.",
                    )
                    return redirect("admin:exchange_riskcycle_change", cycle.pk)
                cycle = settlement_prices_set(trading_date=trading_date, actor=staff_user(request))
            except ExchangeError as error:
                self.message_user(request, f"{error.code}: {error.message}", messages.ERROR)
                if error.field in form.fields:
                    form.add_error(error.field, error.message)
            else:
                context.update(
                    cycle=cycle,
                    missing=risk_selectors.prices_missing(trading_date, cycle.close_at),
                    prices=risk_selectors.day_prices(trading_date),
                    variation=risk_selectors.variation_preview(trading_date),
                    trading_date=trading_date,
                )
        return TemplateResponse(request, "admin/exchange/riskcycle/run.html", context)


# The day the run page previewed, posted with its confirm button.
CONFIRM_DATE_FIELD = "confirm_date"


class RunCycleForm(forms.Form):
    trading_date = forms.DateField(help_text="The trading day to settle (YYYY-MM-DD).")


@admin.register(MarginCall)
class MarginCallAdmin(ReadOnlyAdmin[MarginCall]):
    act_roles = (RISK,)
    list_display = [
        "id",
        "account",
        "trading_date",
        "status",
        "called_usd",
        "required_usd",
        "held_usd",
        "deficit_usd",
        "created_at",
        "figured_at",
        "resolved_at",
    ]
    list_filter = ["status", "trading_date"]
    list_select_related = ["account__organization"]
    actions = ["review", "liquidate"]

    @admin.display(description="Called (USD)")
    def called_usd(self, obj: MarginCall) -> Decimal:
        return micros_to_usd(obj.amount_called)

    @admin.display(description="Required (USD)")
    def required_usd(self, obj: MarginCall) -> Decimal:
        return micros_to_usd(obj.required)

    @admin.display(description="Held (USD)")
    def held_usd(self, obj: MarginCall) -> Decimal:
        return micros_to_usd(obj.held)

    @admin.display(description="Deficit (USD)")
    def deficit_usd(self, obj: MarginCall) -> Decimal:
        return micros_to_usd(obj.deficit)

    def _skipped(self, request: HttpRequest, call: MarginCall, verb: str) -> None:
        self.message_user(
            request,
            f"#{call.pk} {call.account}: skipped, the call is "
            f"{call.get_status_display().lower()}; only open calls are {verb}.",
            messages.WARNING,
        )

    @admin.action(description="Top up from cash and cure the covered calls", permissions=["act"])
    def review(self, request: HttpRequest, queryset: QuerySet[MarginCall]) -> None:
        cured = 0
        actor = staff_user(request)
        # The count is taken before the loop: a review moves cured calls out of a filtered list.
        selected = queryset.count()
        for call in queryset.select_related("account__organization").order_by("pk"):
            if call.status != MarginCall.Status.OPEN:
                self._skipped(request, call, "reviewed")
                continue
            try:
                reviewed = margin_call_staff_review(call=call, actor=actor)
            except ExchangeError as error:
                self.message_user(request, f"#{call.pk}: {error.message}", messages.ERROR)
                continue
            if reviewed.status == MarginCall.Status.CURED:
                cured += 1
        self.message_user(request, f"{cured} of {selected} selected calls cured.")

    @staticmethod
    def _liquidation_rows(calls: Sequence[MarginCall]) -> list[tuple[Any, ...]]:
        positions = backoffice_selectors.positions_by_account([call.account_id for call in calls])
        return [
            (
                f"#{call.pk}",
                str(call.account),
                call.get_status_display(),
                micros_to_usd(call.deficit),
                ", ".join(
                    f"{symbol} {contracts:+d}"
                    for symbol, contracts in positions.get(call.account_id, [])
                )
                or "none",
            )
            for call in calls
        ]

    @admin.action(
        description="Liquidate the accounts of the selected open calls", permissions=["act"]
    )
    def liquidate(
        self, request: HttpRequest, queryset: QuerySet[MarginCall]
    ) -> TemplateResponse | None:
        confirmation = ActionConfirmation(
            title="Liquidate accounts",
            consequence=(
                "For each open call, the account's resting orders are cancelled, its margin is "
                "returned to cash, and every position is closed with a market order against "
                "the book, at whatever prices the book offers. Calls that are not open are "
                "skipped. This cannot be undone."
            ),
            columns=("Call", "Account", "Status", "Deficit (USD)", "Positions (contracts)"),
            rows=self._liquidation_rows,
        )
        page, reason = action_confirmed(
            self,
            request,
            queryset.select_related("account__organization"),
            "liquidate",
            confirmation,
        )
        if page is not None:
            return page
        for call in queryset.select_related("account__organization").order_by("pk"):
            if call.status != MarginCall.Status.OPEN:
                self._skipped(request, call, "liquidated")
                continue
            try:
                result = account_liquidate(
                    account=call.account,
                    call=call,
                    actor=staff_user(request),
                    reason=f"margin call #{call.pk}: {reason}",
                )
            except ExchangeError as error:
                self.message_user(request, f"#{call.pk}: {error.message}", messages.ERROR)
                continue
            closed = ", ".join(
                f"{row['symbol']}: {row.get('filled', row.get('error'))}"
                for row in result["orders"]
            )
            self.message_user(request, f"#{call.pk} {call.account}: {closed or 'nothing open'}")
        return None


# Users and groups: staff accounts and their roles (the role groups). Django's own admins, with
# every edit audited. Their forms grant roles (a user's groups, its staff and superuser status,
# a group's name), so they add, change and delete for superusers only, as ``staff_roles_grant``
# does (``ROLES_STAFF``): Django's model permissions alone would let staff given them make
# themselves or others anything. Viewing keeps Django's permissions.

admin.site.unregister(User)
admin.site.unregister(Group)


class RolesGrantedByForm(AuditedEdits[ModelT]):
    def _grants_roles(self, request: HttpRequest) -> bool:
        return ROLES_STAFF.allows(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._grants_roles(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return self._grants_roles(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return self._grants_roles(request) and super().has_delete_permission(request, obj)


@admin.register(User)
class AuditedUserAdmin(RolesGrantedByForm[User], UserAdmin[User]):
    pass


@admin.register(Group)
class AuditedGroupAdmin(RolesGrantedByForm[Group], GroupAdmin):
    pass


# Portfolio pools register their pages from their own module.
from exchange import pools_admin  # noqa: E402, F401
