"""Capacity pages: providers register blocks, holders list them for resale, buyers browse
the listings by SKU, region, dates, interconnect, block size and compliance."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from exchange.models import Instrument, Membership, Region, ReservedCapacity
from exchange.services.capacity import capacity_register
from exchange.services.listing import resale_list
from exchange.services.participants import member_add
from tests.exchange.support import listing_month

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"


def _user(account, username, role=Membership.Role.TRADER):
    return member_add(
        organization=account.organization,
        username=username,
        email=f"{username}@x.example",
        password=PASSWORD,
        role=role,
    ).user


def _start(days: int = 10) -> datetime:
    return datetime.combine(listing_month(), time.min, tzinfo=UTC) + timedelta(days=days)


def _register_form(holder_slug: str, **changes):
    starts = _start()
    return {
        "holder": holder_slug,
        "cluster": "nw-ashburn-c",
        "sku": "H100SXM",
        "region": "USEAST",
        "starts_at": starts.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (starts + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"),
        "gpus": "16",
        "interconnect": "infiniband",
        "contiguous_block_gpus": "8",
        **changes,
    }


def _block(provider, holder, sku, region, **changes):
    fields = {
        "cluster": "c1",
        "starts_at": _start(),
        "ends_at": _start() + timedelta(days=30),
        "gpus": 16,
        "interconnect": "infiniband",
        "contiguous_block_gpus": 8,
        **changes,
    }
    return capacity_register(
        provider=provider.organization, holder=holder.organization, sku=sku, region=region, **fields
    )


def test_capacity_needs_a_member_and_listings_are_public(client, seller):
    assert client.get(reverse("web:capacity"))["Location"].startswith(reverse("login"))
    assert client.get(reverse("web:resale_listings")).status_code == 200


def test_a_provider_registers_a_block_for_a_holder(client, seller, buyer, sku, region):
    client.force_login(_user(seller, "nora"))

    response = client.post(reverse("web:capacity_register"), _register_form("lumen"))

    assert response.status_code == 302
    block = ReservedCapacity.objects.get()
    assert (block.provider, block.holder, block.gpus) == (
        seller.organization,
        buyer.organization,
        16,
    )
    assert block.starts_at == _start()
    client.force_login(_user(buyer, "alice"))
    assert list(client.get(reverse("web:capacity")).context["blocks"]) == [block]


def test_a_non_provider_cannot_register(client, buyer, sku, region):
    client.force_login(_user(buyer, "alice"))

    page = client.get(reverse("web:capacity")).content.decode()
    response = client.post(reverse("web:capacity_register"), _register_form("lumen"))

    assert "Only cloud providers register" in page
    assert response.status_code == 400
    assert "provider" in " ".join(response.context["form"].non_field_errors()).lower() or any(
        "provider" in " ".join(errors).lower()
        for errors in response.context["form"].errors.values()
    )
    assert not ReservedCapacity.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gpus": "0"}, "gpus"),
        ({"contiguous_block_gpus": "32"}, None),
        ({"ends_at": _start().strftime("%Y-%m-%dT%H:%M")}, None),
        ({"starts_at": _start().strftime("%Y-%m-%dT%H:30")}, None),
        ({"sku": "NOPE"}, "sku"),
    ],
)
def test_bad_blocks_are_refused_and_write_nothing(client, seller, sku, region, changes, field):
    client.force_login(_user(seller, "nora"))

    response = client.post(reverse("web:capacity_register"), _register_form("northwind", **changes))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors if field is None else field in errors
    assert not ReservedCapacity.objects.exists()


def test_a_viewer_cannot_register_or_list(client, seller, sku, region):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "vic", Membership.Role.VIEWER))

    registered = client.post(reverse("web:capacity_register"), _register_form("northwind"))
    listed = client.post(reverse("web:capacity_list", args=[block.pk]), {})

    assert registered.status_code == listed.status_code == 403
    assert ReservedCapacity.objects.count() == 1
    assert not Instrument.objects.filter(kind=Instrument.Kind.RESALE).exists()


def test_a_holder_lists_a_block_and_buyers_find_it(client, seller, sku, region):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "nora"))

    response = client.post(reverse("web:capacity_list", args=[block.pk]), {"lot_gpus": "4"})

    listing = Instrument.objects.get(reservation=block)
    assert response["Location"] == reverse("web:instrument", args=[listing.symbol])
    assert listing.lot_size == 4
    client.logout()
    found = client.get(reverse("web:resale_listings")).context["listings"]
    assert [row.instrument for row in found] == [listing]


def test_a_bad_lot_is_named_and_lists_nothing(client, seller, sku, region):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "nora"))

    response = client.post(
        reverse("web:capacity_list", args=[block.pk]), {"lot_gpus": "5"}, follow=True
    )

    assert "The lot must divide the block" in response.content.decode()
    assert not Instrument.objects.filter(reservation=block).exists()


def test_another_organizations_block_cannot_be_listed_or_seen(client, seller, buyer, sku, region):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(buyer, "alice"))

    response = client.post(reverse("web:capacity_list", args=[block.pk]), {})

    assert response.status_code == 404
    assert list(client.get(reverse("web:capacity")).context["blocks"]) == []


@pytest.fixture
def listings(seller, sku, region):
    """Four listings that differ in one attribute each from the first."""
    sovereign = Region.objects.create(
        code="EUWEST",
        name="EU West",
        compliance=["gdpr", "sovereign"],
        power_price_usd_per_kwh=Decimal("0.185"),
    )
    base = _block(seller, seller, sku, region)
    later = _block(seller, seller, sku, region, starts_at=_start(40), ends_at=_start(70))
    roce = _block(seller, seller, sku, region, interconnect="roce", contiguous_block_gpus=2)
    europe = _block(seller, seller, sku, sovereign)
    return {
        name: resale_list(reservation=block)
        for name, block in {"base": base, "later": later, "roce": roce, "europe": europe}.items()
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"base", "later", "roce", "europe"}),
        ({"region": "EUWEST"}, {"europe"}),
        ({"interconnect": "roce"}, {"roce"}),
        ({"block_gpus_min": "8"}, {"base", "later", "europe"}),
        ({"compliance": "sovereign"}, {"europe"}),
        ({"compliance": "soc2"}, {"base", "later", "roce"}),
        ({"sku": "H100SXM", "region": "USEAST"}, {"base", "later", "roce"}),
    ],
)
def test_each_filter_narrows_the_listings(client, listings, query, expected):
    response = client.get(reverse("web:resale_listings"), query)

    assert response.status_code == 200
    names = {
        name
        for name, i in listings.items()
        if i in {r.instrument for r in response.context["listings"]}
    }
    assert names == expected


def test_date_filters(client, listings):
    later = listings["later"]

    after = client.get(
        reverse("web:resale_listings"), {"available_from": later.delivery_start.isoformat()}
    )
    before = client.get(
        reverse("web:resale_listings"),
        {"available_until": (later.delivery_start - timedelta(days=1)).isoformat()},
    )

    assert [row.instrument for row in after.context["listings"]] == [later]
    assert later not in {row.instrument for row in before.context["listings"]}


@pytest.mark.parametrize(
    "query", [{"block_gpus_min": "lots"}, {"available_from": "soon"}, {"interconnect": "wifi"}]
)
def test_bad_filters_are_named_not_500(client, listings, query):
    response = client.get(reverse("web:resale_listings"), query)

    assert response.status_code == 400
    assert set(query) <= set(response.context["form"].errors)
