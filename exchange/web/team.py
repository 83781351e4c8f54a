"""The team page: an organization's members and their roles. Traders add members (with a first
password to hand over) and make members traders or viewers; viewers see the list."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from exchange.errors import ParticipantError
from exchange.models import Membership
from exchange.services.participants import (
    EMAIL_LENGTH_MAX,
    USERNAME_LENGTH_MAX,
    member_invite,
    member_role_set,
)
from exchange.web.membership import can_trade, membership_of, signed_in_user, trader_required
from exchange.web.refusals import refusal_text


class MemberForm(forms.Form):
    username = forms.CharField(max_length=USERNAME_LENGTH_MAX, label="User name")
    email = forms.CharField(max_length=EMAIL_LENGTH_MAX, label="Email")
    password = forms.CharField(
        label="First password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Hand it over privately; the member signs in with it.",
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, label="Role")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices, label="Role")


def _members(membership: Membership) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization_id=membership.organization_id)
        .select_related("user")
        .order_by("user__username")
    )


def _page(
    request: HttpRequest, membership: Membership, form: MemberForm, status: int = 200
) -> HttpResponse:
    context = {
        "organization": membership.organization,
        "members": _members(membership),
        "form": form,
        "can_manage": can_trade(membership),
        "roles": Membership.Role.choices,
    }
    return render(request, "exchange/team.html", context, status=status)


@login_required
@require_GET
def team(request: HttpRequest) -> HttpResponse:
    return _page(request, membership_of(request), MemberForm())


@trader_required
@require_POST
def member_add_view(request: HttpRequest, membership: Membership) -> HttpResponse:
    form = MemberForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            added = member_invite(
                organization=membership.organization,
                username=data["username"],
                email=data["email"],
                password=data["password"],
                role=data["role"],
                actor=signed_in_user(request),
            )
        except ParticipantError as error:
            form.add_error(error.field if error.field in form.fields else None, refusal_text(error))
        else:
            messages.success(
                request, f"{added.user.username} joined as {added.get_role_display()}."
            )
            return redirect("web:team")
    return _page(request, membership, form, status=400)


@trader_required
@require_POST
def member_role_view(request: HttpRequest, membership: Membership, member_id: int) -> HttpResponse:
    member = _members(membership).filter(pk=member_id).first()
    if member is None:
        raise Http404("No such member of your organization.")
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose trader or viewer.")
        return redirect("web:team")
    try:
        member_role_set(
            membership=member, role=form.cleaned_data["role"], actor=signed_in_user(request)
        )
    except ParticipantError as error:
        messages.error(request, refusal_text(error))
    else:
        messages.success(request, f"{member.user.username} is now {form.cleaned_data['role']}.")
    return redirect("web:team")
