"""The sign-up page: an organization with its first user (a trader), signed in at once; refusals
shown next to their field, with nothing written."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from exchange.models import Account, AuditEntry, Membership, Organization
from exchange.services.participants import member_add, organization_create

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"


def _form(**changes):
    data = {
        "name": "Lumen Labs",
        "slug": "lumen-labs",
        "kind": Organization.Kind.STARTUP,
        "username": "alice",
        "email": "alice@lumen.example",
        "password": PASSWORD,
        "password_confirmation": PASSWORD,
    }
    data.update(changes)
    return data


def _rows():
    return {
        "organizations": Organization.objects.count(),
        "accounts": Account.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": Membership.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def _field_errors(response, field):
    return response.context["form"].errors.get(field, [])


def test_the_sign_up_page_offers_the_kinds_that_can_sign_up(client):
    response = client.get(reverse("signup"))

    assert response.status_code == 200
    page = response.content.decode()
    for label in ("Organization name", "Short name", "User name", "Email", "Password again"):
        assert label in page
    kinds = [value for value, _ in response.context["form"].fields["kind"].choices]
    assert kinds == ["startup", "provider", "trading_firm", "sponsor"]
    assert 'for="id_username"' in page and 'id="id_username"' in page


def test_sign_up_creates_the_organization_and_a_trader_and_signs_in(client):
    # when
    response = client.post(reverse("signup"), _form(kind=Organization.Kind.TRADING_FIRM))

    # then the organization, its main account and the trader exist
    assert response.status_code == 302
    assert response["Location"] == reverse("web:portfolio")
    organization = Organization.objects.get(slug="lumen-labs")
    assert (organization.name, organization.kind) == ("Lumen Labs", "trading_firm")
    user = get_user_model().objects.get(username="alice")
    membership = Membership.objects.get(user=user)
    assert (membership.organization, membership.role) == (organization, Membership.Role.TRADER)
    assert Account.objects.filter(organization=organization, name="main").exists()
    # and the new user is signed in: the portfolio opens on the new organization
    assert client.session["_auth_user_id"] == str(user.pk)
    page = client.get(reverse("web:portfolio")).content.decode()
    assert "Lumen Labs" in page and "your role: Trader" in page


def test_a_taken_slug_is_shown_next_to_the_field_and_writes_nothing(client):
    organization_create(slug="lumen-labs", name="Lumen Other", kind=Organization.Kind.STARTUP)
    before = _rows()

    response = client.post(reverse("signup"), _form())

    assert response.status_code == 200
    assert any("taken" in error for error in _field_errors(response, "slug"))
    assert 'id="id_slug_error"' in response.content.decode()
    assert _rows() == before
    assert "_auth_user_id" not in client.session


def test_a_taken_organization_name_is_shown_next_to_the_field_and_writes_nothing(client):
    organization_create(slug="lumen", name="Lumen Labs", kind=Organization.Kind.STARTUP)
    before = _rows()

    response = client.post(reverse("signup"), _form(name=" lumen labs "))

    assert response.status_code == 200
    (error,) = _field_errors(response, "name")
    assert error == (
        "An organization named Lumen Labs already exists: choose another name. "
        "(PARTICIPANT_NAME_TAKEN)"
    )
    assert 'id="id_name_error"' in response.content.decode()
    assert _rows() == before
    assert "_auth_user_id" not in client.session


def test_a_taken_username_is_shown_next_to_the_field_and_writes_nothing(client):
    other = organization_create(slug="helix", name="Helix", kind=Organization.Kind.TRADING_FIRM)
    member_add(organization=other, username="alice", email="a@helix.example", password=PASSWORD)
    before = _rows()

    response = client.post(reverse("signup"), _form())

    assert any("taken" in error for error in _field_errors(response, "username"))
    assert _rows() == before


def test_different_passwords_are_refused_and_write_nothing(client):
    before = _rows()

    response = client.post(reverse("signup"), _form(password_confirmation="something-else-9"))

    assert response.status_code == 200
    assert _field_errors(response, "password_confirmation") == ["The two passwords differ."]
    assert "The two passwords differ." in response.content.decode()
    assert _rows() == before
    assert "_auth_user_id" not in client.session


def test_a_weak_password_fails_the_django_validators_and_writes_nothing(client):
    before = _rows()

    response = client.post(reverse("signup"), _form(password="abc", password_confirmation="abc"))

    errors = " ".join(_field_errors(response, "password"))
    assert "too short" in errors
    assert _rows() == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"slug": "Lumen Labs"}, "slug"),
        ({"kind": "exchange"}, "kind"),
        ({"email": "not-an-address"}, "email"),
        ({"name": ""}, "name"),
        ({"username": ""}, "username"),
    ],
)
def test_bad_fields_are_shown_next_to_them_and_write_nothing(client, changes, field):
    before = _rows()

    response = client.post(reverse("signup"), _form(**changes))

    assert response.status_code == 200
    assert _field_errors(response, field)
    assert _rows() == before


def test_a_signed_in_member_is_sent_to_the_portfolio(client):
    organization = organization_create(slug="helix", name="Helix", kind="trading_firm")
    client.force_login(
        member_add(organization=organization, username="h", email="h@x.example", password="p").user
    )

    response = client.get(reverse("signup"))

    assert response.status_code == 302 and response["Location"] == reverse("web:portfolio")


def test_the_sign_in_page_links_to_sign_up_and_shows_its_errors(client):
    page = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("signup")}"' in page

    response = client.post(reverse("login"), {"username": "nobody", "password": ""})

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_password_error"' in page and "This field is required." in page
