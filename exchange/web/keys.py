"""The API keys page: an organization's keys, created by its traders (the secret is shown
once, on the page that creates it) and revoked after a confirmation; and the cancel-all-after
switch its programs arm, which a trader can disarm here."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from exchange.errors import ExchangeError
from exchange.models import ApiKey
from exchange.selectors.api_keys import api_key_of, api_keys_of
from exchange.selectors.orders import cancel_all_timer_of
from exchange.services.api_keys import api_key_create, api_key_revoke
from exchange.services.cancel_after import cancel_all_after_set
from exchange.web.membership import (
    can_trade,
    forbidden,
    membership_of,
    signed_in_user,
    trading_account_of,
)
from exchange.web.refusals import refusal_text


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name", help_text="To recognise the key by.")
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKey.Scope.READ],
        label="Scopes",
    )
    ip_allowlist = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Allowed networks",
        help_text="One address or CIDR network per line; empty: any.",
    )
    require_signature = forms.BooleanField(required=False, label="Require HMAC-signed requests")


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    organization = membership.organization
    can_manage = can_trade(membership)
    form = KeyForm(request.POST or None)
    created = None
    if request.method == "POST":
        if not can_manage:
            return forbidden(request, "Only traders manage API keys.")
        if form.is_valid():
            networks = [
                line.strip()
                for line in form.cleaned_data["ip_allowlist"].splitlines()
                if line.strip()
            ]
            try:
                created = api_key_create(
                    organization=organization,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    ip_allowlist=networks,
                    require_signature=form.cleaned_data["require_signature"],
                    actor=signed_in_user(request),
                )
            except ExchangeError as error:
                form.add_error(error.field or None, refusal_text(error))
            else:
                form = KeyForm()
    context = {
        "organization": organization,
        "keys": api_keys_of(organization),
        "form": form,
        "created": created,
        "can_manage": can_manage,
        "switch": cancel_all_timer_of(trading_account_of(membership)),
    }
    return render(request, "exchange/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, prefix: str) -> HttpResponse:
    membership = membership_of(request)
    if not can_trade(membership):
        return forbidden(request, "Only traders manage API keys.")
    key = api_key_of(membership.organization, prefix)
    if key is None:
        raise Http404(prefix)
    api_key_revoke(key=key, actor=signed_in_user(request))
    return redirect("web:api_keys")


@login_required
@require_POST
def cancel_all_after_disarm(request: HttpRequest) -> HttpResponse:
    """Disarm the switch (a program that is stopped on purpose, its orders kept). A switch
    already past its time fires first, as from the API."""
    membership = membership_of(request)
    if not can_trade(membership):
        return forbidden(request, "Only traders disarm the cancel-all-after switch.")
    cancel_all_after_set(account=trading_account_of(membership), timeout_seconds=0)
    return redirect("web:api_keys")
