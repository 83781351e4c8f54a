"""The admin's "List a futures strip" page (``InstrumentAdmin.list_strip_view``)."""

import pytest
from django.urls import reverse

from exchange import calendar
from exchange.models import AuditEntry, Instrument
from exchange.services.listing import futures_list_strip
from tests.exchange.support import listing_month

pytestmark = pytest.mark.django_db

URL = "admin:exchange_instrument_list_strip"


def strip_form(sku, region, **changes) -> dict[str, object]:
    form = {
        "sku": sku.pk,
        "region": region.pk,
        "first_month": f"{listing_month():%Y-%m}",
        "months": 3,
        "settlement": "physical",
        "tick_size": "0.01",
        "lot_size": 2,
        "price_max": "500",
        "position_limit": "",
    }
    form.update(changes)
    return form


def test_the_form_is_shown_to_the_listing_role(client, operations, sku, region):
    client.force_login(operations)

    response = client.get(reverse(URL))

    assert response.status_code == 200
    page = response.content.decode()
    for field in ("sku", "region", "first_month", "months", "settlement", "tick_size"):
        assert f'name="{field}"' in page
    assert "left as they are" in page  # The page says what happens to months already listed.
    assert sku.code in page and region.code in page


def test_the_instruments_list_links_to_the_form(client, operations):
    client.force_login(operations)

    response = client.get(reverse("admin:exchange_instrument_changelist"))

    assert reverse(URL) in response.content.decode()
    assert reverse("admin:exchange_instrument_roll") in response.content.decode()


def test_staff_who_may_not_list_see_the_instruments_without_the_links(client, risk):
    # risk staff browse the instruments (and set limits), but would get a 403 behind the links
    client.force_login(risk)

    response = client.get(reverse("admin:exchange_instrument_changelist"))

    assert response.status_code == 200
    assert reverse(URL) not in response.content.decode()
    assert reverse("admin:exchange_instrument_roll") not in response.content.decode()


def test_a_strip_is_listed_physically_on_the_terms_posted(client, operations, sku, region):
    client.force_login(operations)

    response = client.post(reverse(URL), strip_form(sku, region), follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:exchange_instrument_changelist")
    futures = Instrument.objects.filter(kind=Instrument.Kind.FUTURE).order_by("delivery_start")
    assert [future.delivery_start for future in futures] == [
        calendar.add_months(listing_month(), index) for index in range(3)
    ]
    assert {(f.settlement, str(f.tick_size), f.lot_size) for f in futures} == {
        ("physical", "0.010000", 2)
    }
    assert f"3 futures listed: {futures[0].symbol}" in response.content.decode()
    entries = AuditEntry.objects.filter(action="instrument.list")
    assert {entry.actor_label for entry in entries} == {operations.username}
    assert entries.count() == 3


def test_posting_the_same_strip_again_says_the_months_were_kept(client, operations, sku, region):
    client.force_login(operations)
    client.post(reverse(URL), strip_form(sku, region))

    response = client.post(reverse(URL), strip_form(sku, region), follow=True)

    page = response.content.decode()
    assert "0 futures listed. 3 already listed on these terms, left as they are" in page
    assert Instrument.objects.count() == 3


def test_bad_terms_show_the_named_error_on_the_form_and_list_nothing(
    client, operations, sku, region
):
    client.force_login(operations)

    response = client.post(reverse(URL), strip_form(sku, region, price_max="500.005"))

    assert response.status_code == 400
    assert "CATALOG_INVALID_LISTING" in response.content.decode()
    assert response.context["form"].errors["price_max"]
    assert not Instrument.objects.exists()
    assert not AuditEntry.objects.filter(action="instrument.list").exists()


def test_a_month_on_other_terms_is_refused_on_the_form(client, operations, sku, region):
    futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=1)
    client.force_login(operations)

    response = client.post(reverse(URL), strip_form(sku, region))

    assert response.status_code == 400
    assert "CATALOG_STRIP_TERMS_DIFFER" in response.content.decode()
    assert Instrument.objects.count() == 1


def test_a_position_limit_from_the_listing_role_alone_is_refused(client, operations, sku, region):
    client.force_login(operations)

    response = client.post(reverse(URL), strip_form(sku, region, position_limit="100"))

    assert response.status_code == 400
    assert "RISK_ROLE_REQUIRED" in response.content.decode()
    assert not Instrument.objects.exists()


def test_a_superuser_lists_with_a_position_limit(client, superuser, sku, region):
    client.force_login(superuser)

    client.post(reverse(URL), strip_form(sku, region, position_limit="100"))

    assert [f.position_limit for f in Instrument.objects.all()] == [100, 100, 100]


def test_a_malformed_month_is_refused_by_the_form(client, operations, sku, region):
    client.force_login(operations)

    response = client.post(reverse(URL), strip_form(sku, region, first_month="next spring"))

    assert response.status_code == 400
    assert response.context["form"].errors["first_month"]
    assert not Instrument.objects.exists()


@pytest.mark.parametrize("name", ["risk", "finance", "roleless"])
def test_staff_without_the_listing_role_are_refused(client, users, name, sku, region):
    client.force_login(users[name])

    assert client.get(reverse(URL)).status_code == 403
    assert client.post(reverse(URL), strip_form(sku, region)).status_code == 403
    assert not Instrument.objects.exists()


def test_members_who_are_not_staff_are_sent_to_sign_in(client, member, sku, region):
    client.force_login(member)

    response = client.post(reverse(URL), strip_form(sku, region))

    assert response.status_code == 302
    assert not Instrument.objects.exists()
