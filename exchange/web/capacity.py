"""Reserved capacity in the browser: providers register blocks (their GPU-hours go to the
holder), holders list blocks for resale, and buyers browse the listings by SKU, region,
dates, interconnect, contiguous block size and compliance. The same services as the API's
capacity endpoints, with the same refusals."""

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from exchange.errors import CatalogError
from exchange.models import Membership, Organization, Region, Sku
from exchange.models.catalog import Interconnect
from exchange.selectors.capacity import capacity_held
from exchange.selectors.resale import ListingFilter, blocks_of, compliance_tags, resale_listings
from exchange.services.capacity import GPUS_MAX, capacity_register
from exchange.services.listing import resale_list
from exchange.web.membership import can_trade, membership_of, signed_in_user, trader_required

CLUSTER_LENGTH_MAX = 100
# As the API's bounds: reservations are of this century, which keeps the service's calendar
# arithmetic far from year 9999.
MOMENT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
MOMENT_MAX = datetime(2100, 1, 1, tzinfo=UTC)
HOUR_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local", "step": 3600})


class RegisterForm(forms.Form):
    holder = forms.ModelChoiceField(
        # Not the exchange operator, to which no GPU-hours are issued (the service refuses it).
        queryset=Organization.objects.exclude(kind=Organization.Kind.EXCHANGE).order_by("name"),
        to_field_name="slug",
        label="Holder",
        help_text="Who the GPU-hours are issued to: your organization or the customer.",
    )
    cluster = forms.CharField(max_length=CLUSTER_LENGTH_MAX, label="Cluster")
    sku = forms.ModelChoiceField(queryset=Sku.objects.order_by("code"), to_field_name="code")
    region = forms.ModelChoiceField(
        queryset=Region.objects.order_by("code"), to_field_name="code", label="Region"
    )
    starts_at = forms.DateTimeField(label="Starts (UTC)", widget=HOUR_INPUT)
    ends_at = forms.DateTimeField(label="Ends (UTC)", widget=HOUR_INPUT)
    gpus = forms.IntegerField(min_value=1, max_value=GPUS_MAX, label="GPUs")
    interconnect = forms.ChoiceField(choices=Interconnect.choices, label="Interconnect")
    contiguous_block_gpus = forms.IntegerField(
        min_value=1, max_value=GPUS_MAX, label="Contiguous block (GPUs)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sku"].label = "SKU"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in ("starts_at", "ends_at"):  # Typed as UTC, whatever the server's zone.
            if cleaned.get(name) is None:
                continue
            moment = cleaned[name].replace(tzinfo=UTC)
            if MOMENT_MIN <= moment < MOMENT_MAX:
                cleaned[name] = moment
            else:
                self.add_error(name, f"Between {MOMENT_MIN:%Y} and {MOMENT_MAX:%Y}, please.")
        return cleaned


class ResaleForm(forms.Form):
    lot_gpus = forms.IntegerField(
        min_value=1,
        max_value=GPUS_MAX,
        required=False,
        label="GPUs per contract lot",
        help_text="Must divide the block; empty: the contiguous block.",
    )


class BrowseForm(forms.Form):
    sku = forms.ModelChoiceField(
        queryset=Sku.objects.order_by("code"),
        to_field_name="code",
        required=False,
        empty_label="Any",
        label="SKU",
    )
    region = forms.ModelChoiceField(
        queryset=Region.objects.order_by("code"),
        to_field_name="code",
        required=False,
        empty_label="Any",
        label="Region",
    )
    available_from = forms.DateField(
        required=False, label="Starts on or after", widget=forms.DateInput(attrs={"type": "date"})
    )
    available_until = forms.DateField(
        required=False, label="Ends on or before", widget=forms.DateInput(attrs={"type": "date"})
    )
    interconnect = forms.ChoiceField(
        choices=[("", "Any"), *Interconnect.choices], required=False, label="Interconnect"
    )
    block_gpus_min = forms.IntegerField(
        min_value=1, max_value=GPUS_MAX, required=False, label="Contiguous block of at least (GPUs)"
    )
    compliance = forms.ChoiceField(choices=[], required=False, label="Compliance")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        compliance = self.fields["compliance"]
        assert isinstance(compliance, forms.ChoiceField)
        compliance.choices = [("", "Any")] + [(tag, tag) for tag in compliance_tags()]

    def criteria(self) -> ListingFilter:
        data = self.cleaned_data
        return ListingFilter(
            sku=data["sku"].code if data.get("sku") else None,
            region=data["region"].code if data.get("region") else None,
            available_from=data.get("available_from"),
            available_until=data.get("available_until"),
            interconnect=data.get("interconnect") or None,
            block_gpus_min=data.get("block_gpus_min"),
            compliance=data.get("compliance") or None,
        )


def _page(
    request: HttpRequest,
    membership: Membership,
    form: RegisterForm | None = None,
    resale_error: tuple[int, str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The capacity page; ``resale_error`` is (block id, message, lot as typed) of a refused
    listing: the message is shown next to that block's lot field, which keeps what was typed."""
    organization = membership.organization
    context = {
        "organization": organization,
        "blocks": blocks_of(organization),
        "can_trade": can_trade(membership),
        "is_provider": organization.kind == Organization.Kind.PROVIDER,
        "form": form or RegisterForm(initial={"holder": organization.slug}),
        "resale_error_block": resale_error[0] if resale_error else None,
        "resale_error": resale_error[1] if resale_error else "",
        "resale_lot_typed": resale_error[2] if resale_error else "",
    }
    return render(request, "exchange/capacity.html", context, status=status)


@login_required
@require_GET
def capacity(request: HttpRequest) -> HttpResponse:
    return _page(request, membership_of(request))


@trader_required
@require_POST
def capacity_register_view(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = RegisterForm(request.POST)
    if form.is_valid():
        try:
            block = capacity_register(
                provider=membership.organization, actor=signed_in_user(request), **form.cleaned_data
            )
        except CatalogError as error:
            field = error.field if error.field in form.fields else None
            form.add_error(field, f"{error.message} ({error.code})")
        else:
            messages.success(
                request,
                f"Block #{block.pk} registered: {block.gpus} GPUs; its GPU-hours are issued to "
                f"{block.holder.name}.",
            )
            return redirect("web:capacity")
    return _page(request, membership, form, status=400)


@trader_required
@require_POST
def capacity_list_view(request: HttpRequest, membership: Membership, block_id: int) -> HttpResponse:
    block = capacity_held(membership.organization, block_id)
    if block is None:
        raise Http404("No such block held by your organization.")
    form = ResaleForm(request.POST)
    typed = request.POST.get("lot_gpus", "")
    if not form.is_valid():
        refusal = " ".join(str(error) for error in form.errors["lot_gpus"])
        return _page(request, membership, resale_error=(block.pk, refusal, typed), status=400)
    try:
        instrument = resale_list(
            reservation=block, lot_gpus=form.cleaned_data["lot_gpus"], actor=signed_in_user(request)
        )
    except CatalogError as error:
        refusal = f"{error.message} ({error.code})"
        return _page(request, membership, resale_error=(block.pk, refusal, typed), status=400)
    messages.success(request, f"Block #{block.pk} listed for resale as {instrument.symbol}.")
    return redirect("web:instrument", symbol=instrument.symbol)


@require_GET
def listings(request: HttpRequest) -> HttpResponse:
    form = BrowseForm(request.GET or None)
    if not form.is_bound:
        found = resale_listings(ListingFilter())
    elif form.is_valid():
        found = resale_listings(form.criteria())
    else:
        found = []
    return render(
        request,
        "exchange/capacity_listings.html",
        {"form": form, "listings": found},
        status=400 if form.is_bound and form.errors else 200,
    )
