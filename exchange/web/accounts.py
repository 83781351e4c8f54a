"""Signing up: a new organization with its first user, a trader, who is then signed in.

The form only checks the shape of the input (required fields, the two passwords equal); the
service checks the rest (slug and user name free, the password validators) and writes the
organization, its main account and the membership in one transaction.
"""

from django import forms
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from exchange.errors import ParticipantError
from exchange.services.participants import (
    EMAIL_LENGTH_MAX,
    NAME_LENGTH_MAX,
    SIGN_UP_KINDS,
    SLUG_LENGTH_MAX,
    USERNAME_LENGTH_MAX,
    organization_sign_up,
)
from exchange.web.refusals import refusal_text


class SignUpForm(forms.Form):
    name = forms.CharField(max_length=NAME_LENGTH_MAX, label="Organization name")
    slug = forms.CharField(
        max_length=SLUG_LENGTH_MAX,
        label="Short name",
        help_text="Lower-case letters, digits and hyphens, such as lumen-labs. It cannot change.",
    )
    kind = forms.ChoiceField(
        choices=[(kind.value, kind.label) for kind in SIGN_UP_KINDS],
        label="Kind of organization",
    )
    username = forms.CharField(max_length=USERNAME_LENGTH_MAX, label="User name")
    email = forms.CharField(
        max_length=EMAIL_LENGTH_MAX, label="Email", widget=forms.EmailInput(attrs={"size": 30})
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirmation = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        confirmation = cleaned.get("password_confirmation")
        if password and confirmation and password != confirmation:
            self.add_error("password_confirmation", "The two passwords differ.")
        return cleaned


@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("web:portfolio")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            membership = organization_sign_up(
                name=data["name"],
                slug=data["slug"],
                kind=data["kind"],
                username=data["username"],
                email=data["email"],
                password=data["password"],
            )
        except ParticipantError as error:
            form.add_error(error.field if error.field in form.fields else None, refusal_text(error))
        else:
            login(request, membership.user)
            return redirect("web:portfolio")
    return render(request, "registration/signup.html", {"form": form})
