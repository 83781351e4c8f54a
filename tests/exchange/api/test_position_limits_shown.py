"""Position limits where traders and staff look: the instrument's API answer, the typed
client, the instrument page, and the admin pages where the risk role sets a future's limit and
an organization's exemption."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from exchange.models import AuditEntry, Instrument, Organization
from exchange.services.participants import member_add
from tests.exchange.api.test_client_pools import client_of
from tests.exchange.support import place, staff_user

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"


def detail(instrument: Instrument) -> dict:
    return APIClient().get(f"/api/v1/instruments/{instrument.symbol}/").json()


def test_the_api_answers_the_limit_orders_count_against(future, call, listing, settings):
    settings.EXCHANGE_POSITION_LIMIT = 5000

    listed = APIClient().get("/api/v1/instruments/", {"kind": "future"}).json()

    assert detail(future)["position_limit"] == 5000
    assert detail(call)["position_limit"] == 5000  # Its future's.
    assert detail(listing)["position_limit"] is None
    assert "position_limit" not in listed[0]


def test_a_futures_own_limit_and_no_limit(future, call, settings):
    Instrument.objects.filter(pk=future.pk).update(position_limit=250)
    assert (detail(future)["position_limit"], detail(call)["position_limit"]) == (250, 250)

    Instrument.objects.filter(pk=future.pk).update(position_limit=0)
    assert detail(future)["position_limit"] is None

    Instrument.objects.filter(pk=future.pk).update(position_limit=None)
    settings.EXCHANGE_POSITION_LIMIT = 0
    assert detail(future)["position_limit"] is None


def test_the_client_carries_it(future, listing, buyer, settings):
    settings.EXCHANGE_POSITION_LIMIT = 1200
    client = client_of(buyer.organization)

    assert client.instrument(future.symbol).position_limit == 1200
    assert client.instrument(listing.symbol).position_limit is None


def test_the_page_shows_the_limit_and_the_members_net_exposure(
    future, call, buyer, seller, client, settings
):
    settings.EXCHANGE_POSITION_LIMIT = 1200
    place(seller, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")
    anonymous = client.get(f"/instruments/{future.symbol}/").content.decode()
    member = member_add(
        organization=buyer.organization, username="alice", email="a@l.example", password=PASSWORD
    ).user
    client.force_login(member)

    page = client.get(f"/instruments/{future.symbol}/").content.decode()
    option_page = client.get(f"/instruments/{call.symbol}/").content.decode()

    assert f"1,200 contracts net per organization in {future.symbol} with its options" in page
    assert "Your organization: 3 net" in page
    assert "Your organization" not in anonymous and "1,200 contracts" in anonymous
    assert f">{future.symbol}</a> with its options" in option_page


def test_a_page_with_no_limit_says_nothing_of_one(future, client, settings):
    settings.EXCHANGE_POSITION_LIMIT = 0

    assert "Position limit" not in client.get(f"/instruments/{future.symbol}/").content.decode()


def _instrument_form(instrument: Instrument, position_limit: str) -> dict:
    return {"position_limit": position_limit}


def test_the_risk_role_sets_a_futures_limit_in_the_admin(client, future, call):
    risk = staff_user("rita", "risk")
    client.force_login(risk)
    change_url = reverse("admin:exchange_instrument_change", args=[future.pk])

    response = client.post(change_url, _instrument_form(future, "300"))

    assert response.status_code == 302, response.content.decode()[:2000]
    saved = Instrument.objects.get(pk=future.pk)
    # only the limit changed: the terms, status and sequence stay the services'
    assert (saved.position_limit, saved.tick_size, saved.sequence, saved.status) == (
        300,
        future.tick_size,
        future.sequence,
        future.status,
    )
    entry = AuditEntry.objects.get(action="instrument.position_limit")
    assert (entry.actor, entry.after) == (risk, {"position_limit": 300})
    # emptied, it inherits the default again
    assert client.post(change_url, _instrument_form(future, "")).status_code == 302
    assert Instrument.objects.get(pk=future.pk).position_limit is None
    # an option is not edited: it counts against its future's limit
    option_url = reverse("admin:exchange_instrument_change", args=[call.pk])
    assert client.post(option_url, _instrument_form(call, "5")).status_code == 403
    assert Instrument.objects.get(pk=call.pk).position_limit is None


def test_operations_staff_do_not_set_limits(client, future):
    client.force_login(staff_user("otto", "operations"))
    change_url = reverse("admin:exchange_instrument_change", args=[future.pk])

    assert client.post(change_url, _instrument_form(future, "300")).status_code == 403
    assert Instrument.objects.get(pk=future.pk).position_limit is None


def _organization_form(organization: Organization, **changes) -> dict:
    return {
        "slug": organization.slug,
        "name": organization.name,
        "kind": organization.kind,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        **changes,
    }


def test_the_exemption_is_granted_in_the_organizations_admin_page_and_audited(
    admin_client, admin_user, buyer
):
    organization = buyer.organization
    change_url = reverse("admin:exchange_organization_change", args=[organization.pk])

    response = admin_client.post(
        change_url, _organization_form(organization, position_limit_exempt="on")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Organization.objects.get(pk=organization.pk).position_limit_exempt
    # audited by the service that sets it (organization_position_limit_exempt_set)
    entry = AuditEntry.objects.get(
        action="organization.position_limit_exempt", target_type="Organization"
    )
    assert (entry.actor, entry.after["position_limit_exempt"]) == (admin_user, True)


def test_the_exemption_is_read_only_without_the_risk_role(client, buyer):
    # given staff of the operations role who may change organizations (Django's permission)
    from django.contrib.auth.models import Permission

    operations = staff_user("otto", "operations")
    operations.user_permissions.add(Permission.objects.get(codename="change_organization"))
    client.force_login(operations)
    organization = buyer.organization
    change_url = reverse("admin:exchange_organization_change", args=[organization.pk])

    response = client.post(change_url, _organization_form(organization, position_limit_exempt="on"))

    # then the form saves without the exemption, which it shows but does not take
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Organization.objects.get(pk=organization.pk).position_limit_exempt


def test_the_api_refuses_an_order_or_a_dry_run_beyond_the_limit(future, buyer, settings):
    from tests.exchange.api.test_trading import ORDERS, client_for

    settings.EXCHANGE_POSITION_LIMIT = 5
    api = client_for(buyer)
    order = {"instrument": future.symbol, "side": "buy", "quantity": 5, "price": "2.40"}
    assert api.post(ORDERS, order, format="json").status_code == 201

    one_more = {**order, "quantity": 1}
    refused = api.post(ORDERS, one_more, format="json")
    previewed = api.post(f"{ORDERS}?dry_run=true", one_more, format="json")
    selling = api.post(f"{ORDERS}?dry_run=true", {**order, "side": "sell"}, format="json")

    for response in (refused, previewed):
        assert response.status_code == 422
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("RISK_POSITION_LIMIT", "quantity")
        assert "above its position limit of 5" in error["message"]
    assert selling.status_code == 200


def test_an_api_futures_order_runs_two_more_statements_only_when_a_limit_applies(
    future, buyer, settings
):
    from tests.exchange.api.test_trading import ORDERS, client_for
    from tests.exchange.support import statements

    api = client_for(buyer)
    order = {"instrument": future.symbol, "side": "buy", "quantity": 1, "price": "2.40"}
    settings.EXCHANGE_POSITION_LIMIT = 0
    assert api.post(ORDERS, order, format="json").status_code == 201  # Keeps what it reads.

    with statements() as unlimited:
        assert api.post(ORDERS, order, format="json").status_code == 201
    settings.EXCHANGE_POSITION_LIMIT = 100
    with statements() as limited:
        assert api.post(ORDERS, order, format="json").status_code == 201

    assert not [sql for sql in unlimited if ":position:" in sql]
    assert len([sql for sql in limited if ":position:" in sql]) == 1
    assert len(limited) == len(unlimited) + 2  # The organization's lock, then the count.
