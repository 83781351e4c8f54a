"""The API keys page: traders create keys (the secret shown once) and revoke them; viewers
only see them; nobody sees another organization's keys. The cancel-all-after switch is shown,
and a trader disarms it."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from exchange.models import ApiKey, CancelAllTimer, Membership
from exchange.services.api_keys import api_key_create
from exchange.services.cancel_after import cancel_all_after_set
from exchange.services.participants import member_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def trader(buyer):
    return member_add(
        organization=buyer.organization, username="tess", email="t@x.example", password="pw-1234!x"
    ).user


@pytest.fixture
def viewer(buyer):
    return member_add(
        organization=buyer.organization,
        username="vic",
        email="v@x.example",
        password="pw-1234!x",
        role=Membership.Role.VIEWER,
    ).user


def test_a_trader_creates_a_key_shown_once_that_works(client, trader, buyer):
    client.force_login(trader)

    response = client.post(
        reverse("web:api_keys"),
        {
            "name": "quoter",
            "scopes": ["read", "trade"],
            "ip_allowlist": "",
            "require_signature": "",
        },
    )

    assert response.status_code == 200
    token = response.context["created"].token
    assert token in response.content.decode()
    key = ApiKey.objects.get()
    assert (key.organization, key.name, key.scopes, key.created_by) == (
        buyer.organization,
        "quoter",
        ["read", "trade"],
        trader,
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/me/").json()["scopes"] == ["read", "trade"]
    # shown once: the list page does not show it again
    assert token not in client.get(reverse("web:api_keys")).content.decode()


def test_bad_input_is_shown_next_to_the_field_and_nothing_is_created(client, trader):
    client.force_login(trader)

    response = client.post(
        reverse("web:api_keys"), {"name": "x", "scopes": ["read"], "ip_allowlist": "not-an-ip"}
    )

    assert (
        "is not an IP address or network. (API_KEY_IP_ALLOWLIST_INVALID)"
        in response.content.decode()
    )
    assert response.context["form"].errors["ip_allowlist"]
    assert not ApiKey.objects.exists()


def test_a_trader_revokes_a_key(client, trader, buyer):
    key = api_key_create(organization=buyer.organization, name="old", scopes=["read"]).key
    client.force_login(trader)

    response = client.post(reverse("web:api_key_revoke", args=[key.prefix]))

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_viewer_sees_keys_but_cannot_create_or_revoke(client, viewer, buyer):
    key = api_key_create(organization=buyer.organization, name="bot", scopes=["read"]).key
    client.force_login(viewer)

    page = client.get(reverse("web:api_keys"))
    created = client.post(reverse("web:api_keys"), {"name": "x", "scopes": ["read"]})
    revoked = client.post(reverse("web:api_key_revoke", args=[key.prefix]))

    assert key.prefix in page.content.decode()
    assert "Create a key" not in page.content.decode()
    assert (created.status_code, revoked.status_code) == (403, 403)
    assert ApiKey.objects.count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None


def test_another_organizations_keys_are_invisible_and_untouchable(client, trader, seller):
    theirs = api_key_create(organization=seller.organization, name="theirs", scopes=["read"]).key
    client.force_login(trader)

    page = client.get(reverse("web:api_keys"))
    revoked = client.post(reverse("web:api_key_revoke", args=[theirs.prefix]))

    assert theirs.prefix not in page.content.decode()
    assert revoked.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_the_page_needs_a_sign_in(client):
    response = client.get(reverse("web:api_keys"))

    assert response.status_code == 302
    assert reverse("login") in response.url


def test_the_page_shows_the_armed_switch_and_a_trader_disarms_it(client, trader, buyer, seller):
    timer = cancel_all_after_set(account=buyer, timeout_seconds=30)
    cancel_all_after_set(account=seller, timeout_seconds=60)  # Another organization's.
    client.force_login(trader)

    page = client.get(reverse("web:api_keys")).content.decode()
    disarmed = client.post(reverse("web:cancel_all_after_disarm"))

    assert "30-second timeout" in page and timer.fires_at.strftime("%Y-%m-%d %H:%M:%S") in page
    assert "60-second" not in page
    assert disarmed.status_code == 302
    assert list(CancelAllTimer.objects.values_list("account", flat=True)) == [seller.pk]
    assert "Not armed" in client.get(reverse("web:api_keys")).content.decode()


def test_a_viewer_sees_the_switch_but_cannot_disarm_it(client, viewer, buyer):
    cancel_all_after_set(account=buyer, timeout_seconds=30)
    client.force_login(viewer)

    page = client.get(reverse("web:api_keys")).content.decode()
    refused = client.post(reverse("web:cancel_all_after_disarm"))

    assert "30-second timeout" in page and "Disarm" not in page
    assert refused.status_code == 403
    assert CancelAllTimer.objects.filter(account=buyer).exists()
