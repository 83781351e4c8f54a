"""Capacity pages: providers register blocks, holders list them for resale, buyers browse
the listings by SKU, region, dates, interconnect, block size and compliance."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from exchange.models import AuditEntry, Instrument, Membership, Region, ReservedCapacity, Sku
from exchange.selectors.entitlements import entitlements_of
from exchange.services.capacity import capacity_register
from exchange.services.listing import listable_until, resale_list
from exchange.services.participants import member_add, organization_create
from tests.exchange.support import (
    ending_before_any_resale_start,
    listing_month,
    place,
    resale_start_after,
)

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


@pytest.mark.parametrize("role", [Membership.Role.TRADER, Membership.Role.VIEWER])
def test_members_and_viewers_read_both_pages(client, seller, sku, region, role):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "nora", role))

    page = client.get(reverse("web:capacity"))
    listings = client.get(reverse("web:resale_listings"))

    assert page.status_code == listings.status_code == 200
    html = page.content.decode()
    assert f'id="block-{block.pk}"' in html
    # 16 GPUs for 30 days of 24 hours.
    assert [(row.hours, row.gpu_hours) for row in page.context["blocks"]] == [(720, 16 * 720)]
    assert '<td class="num">720</td>' in html
    assert "11,520" in html
    trader = role == Membership.Role.TRADER
    assert ("Register reserved capacity" in html) is trader
    assert ("List for resale" in html) is trader
    assert '<label for="id_contiguous_block_gpus">Contiguous block (GPUs)</label>' in html or (
        not trader
    )


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
    # The holder got the block's GPU-hours, as the service issues them: 16 GPUs x 30 days.
    issued = entitlements_of(buyer)
    assert sum(holding.gpu_hours for holding in issued) == 16 * 30 * 24
    assert {holding.sku_code for holding in issued} == {"H100SXM"}
    assert entitlements_of(seller) == []
    assert AuditEntry.objects.filter(action="capacity.register").count() == 1
    client.force_login(_user(buyer, "alice"))
    blocks = client.get(reverse("web:capacity")).context["blocks"]
    assert [row.reservation for row in blocks] == [block]


def test_a_non_provider_cannot_register(client, buyer, sku, region):
    client.force_login(_user(buyer, "alice"))

    page = client.get(reverse("web:capacity")).content.decode()
    response = client.post(reverse("web:capacity_register"), _register_form("lumen"))

    assert "Only cloud providers register" in page
    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "Only providers register capacity; lumen is registered as “Startup (buyer)”. "
        "(CATALOG_PROVIDER_REQUIRED)"
    ]
    assert not ReservedCapacity.objects.exists()
    assert entitlements_of(buyer) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gpus": "0"}, "gpus"),
        ({"gpus": "many"}, "gpus"),
        ({"contiguous_block_gpus": "32"}, "contiguous_block_gpus"),
        ({"contiguous_block_gpus": "6"}, "contiguous_block_gpus"),  # 16 GPUs: not whole blocks
        ({"ends_at": _start().strftime("%Y-%m-%dT%H:%M")}, "ends_at"),
        ({"starts_at": "2020-01-01T00:00", "ends_at": "2020-02-01T00:00"}, "ends_at"),  # over
        ({"ends_at": (_start() + timedelta(days=7 * 366)).strftime("%Y-%m-%dT%H:%M")}, "ends_at"),
        ({"starts_at": _start().strftime("%Y-%m-%dT%H:30")}, "starts_at"),
        ({"starts_at": "9999-12-01T00:00", "ends_at": "9999-12-31T00:00"}, "starts_at"),
        ({"cluster": "   "}, "cluster"),
        ({"sku": "NOPE"}, "sku"),
        ({"region": ""}, "region"),
        ({"holder": "nobody"}, "holder"),
        ({"interconnect": "wifi"}, "interconnect"),
    ],
)
def test_bad_blocks_are_refused_next_to_the_field_and_write_nothing(
    client, seller, sku, region, changes, field
):
    client.force_login(_user(seller, "nora"))

    response = client.post(reverse("web:capacity_register"), _register_form("northwind", **changes))

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not ReservedCapacity.objects.exists()
    assert entitlements_of(seller) == []


def test_the_exchange_operator_is_offered_as_no_holder(client, seller, sku, region):
    organization_create(slug="gpux", name="GPU Exchange (operator)", kind="exchange")
    client.force_login(_user(seller, "nora"))

    page = client.get(reverse("web:capacity")).content.decode()
    response = client.post(reverse("web:capacity_register"), _register_form("gpux"))

    assert 'value="northwind"' in page and 'value="gpux"' not in page
    assert response.status_code == 400
    assert "holder" in response.context["form"].errors
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


def test_the_page_shows_what_the_organization_holds_of_a_block_it_sold_part_of(
    client, seller, buyer, sku, region
):
    # given Northwind's block of 16, listed, of which Lumen bought 8
    block = _block(seller, seller, sku, region)
    listing = resale_list(reservation=block)
    place(seller, listing, "sell", 8, "2.30")
    place(buyer, listing, "buy", 8, "2.30")
    client.force_login(_user(seller, "nora"))

    # when Northwind reads its capacity
    response = client.get(reverse("web:capacity"))

    # then the block shows its 16 GPUs, of which Northwind holds 8 now
    (row,) = response.context["blocks"]
    assert (row.reservation.gpus, row.held_gpus) == (16, 8)
    page = response.content.decode()
    assert "You hold (GPUs)" in page
    assert '<td class="num held">8</td>' in page


def test_a_buyer_on_a_blocks_resale_listing_sees_what_it_holds_of_it(
    client, seller, buyer, sku, region
):
    # given Northwind's block of 16, listed, of which Lumen bought 8
    block = _block(seller, seller, sku, region, cluster="northwind-listed")
    listing = resale_list(reservation=block)
    place(seller, listing, "sell", 8, "2.30")
    place(buyer, listing, "buy", 8, "2.30")
    client.force_login(_user(buyer, "alice"))

    # when Lumen reads its capacity
    response = client.get(reverse("web:capacity"))

    # then the block is there with the 8 GPUs Lumen holds, its listing linked, nothing to list
    (row,) = response.context["blocks"]
    assert (row.reservation, row.held_gpus) == (block, 8)
    page = response.content.decode()
    assert "No reserved capacity" not in page
    assert '<td class="num held">8</td>' in page
    assert listing.symbol in page
    assert f'action="{reverse("web:capacity_list", args=[block.pk])}"' not in page


def test_a_block_registered_during_its_term_shows_the_hours_issued(client, seller, sku, region):
    # given a 16-GPU block whose 5-day term began 2 days before it was registered
    began = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    block = _block(seller, seller, sku, region, starts_at=began, ends_at=began + timedelta(days=5))
    client.force_login(_user(seller, "nora"))

    # when the provider reads its capacity
    response = client.get(reverse("web:capacity"))

    # then the hours shown are those issued (3 days), and GPU-hours are GPUs x those hours, as
    # the holder's ledger has them; the term's 120 hours are named beside
    (row,) = response.context["blocks"]
    issued = sum(holding.gpu_hours for holding in entitlements_of(seller))
    assert (row.hours, row.term_hours, row.gpu_hours) == (72, 120, 16 * 72)
    assert row.gpu_hours == issued
    page = response.content.decode()
    assert "72<br>" in page and "of 120 (registered during the term)" in page
    assert f'<td class="num">{16 * 72:,}</td>' in page
    assert block.pk == row.reservation.pk


def test_a_bad_lot_is_named_and_lists_nothing(client, seller, sku, region):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "nora"))

    response = client.post(reverse("web:capacity_list", args=[block.pk]), {"lot_gpus": "5"})

    assert response.status_code == 400
    assert (
        f'<ul class="errorlist" id="lot-{block.pk}-error"><li>Block #{block.pk} not listed: '
        "The lot must divide the block&#x27;s GPUs. (CATALOG_INVALID_LISTING)</li></ul>"
    ) in response.content.decode()
    # The lot typed stays in its field, to be corrected rather than typed again.
    assert f'id="lot-{block.pk}" name="lot_gpus" type="number"' in response.content.decode()
    assert 'value="5" aria-invalid="true"' in response.content.decode()
    assert not Instrument.objects.filter(reservation=block).exists()


@pytest.mark.parametrize("lot", ["four", "0"])
def test_a_lot_that_is_no_number_is_named_and_lists_nothing(client, seller, sku, region, lot):
    block = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "nora"))

    response = client.post(reverse("web:capacity_list", args=[block.pk]), {"lot_gpus": lot})

    assert response.status_code == 400
    assert f'id="lot-{block.pk}-error"' in response.content.decode()
    assert f'value="{lot}" aria-invalid="true"' in response.content.decode()
    assert not Instrument.objects.filter(reservation=block).exists()


def test_a_block_is_listed_once_and_not_once_its_term_is_near(client, seller, sku, region):
    block = _block(seller, seller, sku, region)
    now = datetime.now(UTC)
    soon = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
    ends = ending_before_any_resale_start(now, soon + timedelta(days=2), soon)
    starting = _block(seller, seller, sku, region, starts_at=soon, ends_at=ends)
    client.force_login(_user(seller, "nora"))
    client.post(reverse("web:capacity_list", args=[block.pk]), {})

    again = client.post(reverse("web:capacity_list", args=[block.pk]), {})
    late = client.post(reverse("web:capacity_list", args=[starting.pk]), {})

    assert again.status_code == late.status_code == 400
    assert Instrument.objects.filter(reservation=block).count() == 1
    assert not Instrument.objects.filter(reservation=starting).exists()
    assert "more than a day from now" in late.content.decode()
    assert "CATALOG_RESERVATION_ALREADY_LISTED" in again.content.decode()


def test_a_running_block_with_no_day_left_offers_no_listing(client, seller, sku, region):
    now = datetime.now(UTC)
    began = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    ends = ending_before_any_resale_start(now, began + timedelta(days=5))
    block = _block(seller, seller, sku, region, starts_at=began, ends_at=ends)
    client.force_login(_user(seller, "nora"))

    page = client.get(reverse("web:capacity"))
    refused = client.post(reverse("web:capacity_list", args=[block.pk]), {})

    html = page.content.decode()
    assert [(row.started, row.next_term) for row in page.context["blocks"]] == [(True, None)]
    assert "not listable: the term ends before the next day a listing could sell from" in html
    assert f'action="{reverse("web:capacity_list", args=[block.pk])}"' not in html
    assert refused.status_code == 400
    assert "CATALOG_RESERVATION_ALREADY_STARTED" in refused.content.decode()
    assert not Instrument.objects.filter(reservation=block).exists()


def test_a_running_block_is_listed_from_the_next_day_it_can_be_to_the_end_of_its_term(
    client, seller, sku, region
):
    """A holder three weeks into a 4-month reservation resells the hours it will not use, the
    rest of the month under way included."""
    now = datetime.now(UTC)
    began = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=21)
    block = _block(
        seller, seller, sku, region, starts_at=began, ends_at=began + timedelta(days=120)
    )
    month = resale_start_after(now)
    term = f"{month:%Y%m}" if month.day == 1 else f"{month:%Y%m%d}"
    client.force_login(_user(seller, "nora"))

    page = client.get(reverse("web:capacity")).content.decode()
    response = client.post(reverse("web:capacity_list", args=[block.pk]), {})

    assert f"from {month:%Y-%m-%d} to the end of the term" in page
    assert f'action="{reverse("web:capacity_list", args=[block.pk])}"' in page
    listing = Instrument.objects.get(reservation=block)
    assert response["Location"] == reverse("web:instrument", args=[listing.symbol])
    assert listing.symbol == f"{sku.code}-{region.code}-R{block.pk}-{term}"
    assert listing.resale_starts_at == month
    contract = client.get(response["Location"]).content.decode()
    assert f"resold from {month:%Y-%m-%d} 00:00 UTC (the rest of the term)" in contract
    # and buyers browse it with the hours it sells
    listings = client.get(reverse("web:resale_listings")).content.decode()
    assert f"{month:%Y-%m-%d} 00:00" in listings
    assert f"rest of a term from {began:%Y-%m-%d}" in listings
    # and the capacity page shows it listed, with no form until it ends
    again = client.get(reverse("web:capacity")).content.decode()
    assert f'action="{reverse("web:capacity_list", args=[block.pk])}"' not in again
    assert listing.symbol in again


def test_a_block_within_a_day_of_its_term_offers_no_listing_with_no_day_left(
    client, seller, sku, region
):
    """A block starting within a day can no longer be listed for its whole term, and this one
    ends before any day a listing could sell from: the page says so and offers no form."""
    now = datetime.now(UTC)
    soon = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=20)
    ends = ending_before_any_resale_start(now, soon + timedelta(days=2), soon)
    block = _block(seller, seller, sku, region, starts_at=soon, ends_at=ends)
    later = _block(seller, seller, sku, region)
    client.force_login(_user(seller, "nora"))

    html = client.get(reverse("web:capacity")).content.decode()

    assert f'action="{reverse("web:capacity_list", args=[block.pk])}"' not in html
    assert f'action="{reverse("web:capacity_list", args=[later.pk])}"' in html
    assert listable_until(block.starts_at) <= soon - timedelta(days=1)
    assert "not listable: the term starts within a day and ends before the next day" in html


def test_a_provider_cannot_list_a_block_its_customer_holds(client, seller, buyer, sku, region):
    block = _block(seller, buyer, sku, region)
    client.force_login(_user(seller, "nora"))

    page = client.get(reverse("web:capacity")).content.decode()
    response = client.post(reverse("web:capacity_list", args=[block.pk]), {})

    assert f'id="block-{block.pk}"' in page
    assert f'action="{reverse("web:capacity_list", args=[block.pk])}"' not in page
    assert response.status_code == 404
    assert not Instrument.objects.exists()


def test_another_organizations_block_cannot_be_listed_or_seen(client, seller, buyer, sku, region):
    # A cluster name no random token on the page (CSRF) can contain by chance.
    block = _block(seller, seller, sku, region, cluster="northwind-secret-cluster")
    client.force_login(_user(buyer, "alice"))

    response = client.post(reverse("web:capacity_list", args=[block.pk]), {})
    page = client.get(reverse("web:capacity"))

    assert response.status_code == 404
    assert page.context["blocks"] == []
    assert "northwind-secret-cluster" not in page.content.decode()
    assert not Instrument.objects.filter(reservation=block).exists()


def test_a_listing_shows_its_blocks_term_to_the_hour(client, seller, sku, region):
    """The listings page wrote the term as dates: a block ending at 12:00 read as ending on
    the next day (the listing's delivery end is the date after its last hour)."""
    starts = _start().replace(hour=6)
    block = _block(
        seller, seller, sku, region, starts_at=starts, ends_at=starts + timedelta(days=3, hours=6)
    )
    resale_list(reservation=block)

    page = client.get(reverse("web:resale_listings")).content.decode()

    assert f"{starts:%Y-%m-%d} 06:00<br>to {block.ends_at:%Y-%m-%d} 12:00" in page


@pytest.fixture
def listings(seller, sku, region):
    """Five listings that differ in one attribute each from the first."""
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
    other_sku = Sku.objects.create(
        code="A100SXM",
        name="NVIDIA A100 SXM",
        vendor="NVIDIA",
        generation="Ampere",
        memory_gb=80,
        interconnect="nvlink",
        release_date=date(2020, 5, 14),
        power_watts=400,
    )
    ampere = _block(seller, seller, other_sku, region)
    blocks = {"base": base, "later": later, "roce": roce, "europe": europe, "ampere": ampere}
    return {name: resale_list(reservation=block) for name, block in blocks.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"base", "later", "roce", "europe", "ampere"}),
        ({"sku": "A100SXM"}, {"ampere"}),
        ({"sku": "H100SXM"}, {"base", "later", "roce", "europe"}),
        ({"region": "EUWEST"}, {"europe"}),
        ({"interconnect": "roce"}, {"roce"}),
        ({"interconnect": "infiniband"}, {"base", "later", "europe", "ampere"}),
        ({"block_gpus_min": "8"}, {"base", "later", "europe", "ampere"}),
        ({"block_gpus_min": "9"}, set()),
        ({"compliance": "sovereign"}, {"europe"}),
        ({"compliance": "soc2"}, {"base", "later", "roce", "ampere"}),
        ({"sku": "H100SXM", "region": "USEAST"}, {"base", "later", "roce"}),
        ({"sku": "H100SXM", "interconnect": "infiniband", "compliance": "soc2"}, {"base", "later"}),
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
    # The others run from day 10 to day 40; "later" from day 40 to day 70.
    later = listings["later"]

    after = client.get(
        reverse("web:resale_listings"),
        {"available_from": (listings["base"].delivery_start + timedelta(days=1)).isoformat()},
    )
    before = client.get(
        reverse("web:resale_listings"),
        {"available_until": (later.delivery_end - timedelta(days=1)).isoformat()},
    )
    neither = client.get(
        reverse("web:resale_listings"),
        {
            "available_from": later.delivery_start.isoformat(),
            "available_until": (later.delivery_end - timedelta(days=1)).isoformat(),
        },
    )

    assert [row.instrument for row in after.context["listings"]] == [later]
    assert neither.context["listings"] == []
    assert {row.instrument for row in before.context["listings"]} == {
        listings[name] for name in ("base", "roce", "europe", "ampere")
    }


def test_listings_show_best_bid_ask_and_last_and_link_the_ticket(client, listings, buyer, seller):
    base = listings["base"]
    place(buyer, base, "buy", 8, "2.10")
    place(seller, base, "sell", 8, "2.10")  # Trades with the bid: last 2.10.
    place(buyer, base, "buy", 8, "2.05")
    place(seller, base, "sell", 8, "2.40")

    response = client.get(reverse("web:resale_listings"), {"region": "USEAST", "sku": "H100SXM"})

    row = next(row for row in response.context["listings"] if row.instrument == base)
    assert (row.quote.best_bid.price, row.quote.best_ask.price, row.quote.last_price) == (
        Decimal("2.05"),
        Decimal("2.40"),
        Decimal("2.10"),
    )
    html = response.content.decode()
    assert f'href="{reverse("web:instrument", args=[base.symbol])}"' in html
    for price in ("2.050", "2.400", "2.100"):
        assert price in html


def test_stopped_listings_are_not_offered(client, listings):
    halted = listings["later"]
    halted.status = Instrument.Status.HALTED
    halted.save(update_fields=["status"])

    response = client.get(reverse("web:resale_listings"))

    assert halted not in {row.instrument for row in response.context["listings"]}
    assert len(response.context["listings"]) == 4


def test_a_listing_whose_trading_ended_today_is_not_offered(client, listings, monkeypatch):
    from types import SimpleNamespace

    from exchange.calendar import close_at
    from exchange.selectors import resale

    # given a listing's last trading day is today, and today's close has passed
    ending = listings["later"]
    day = ending.last_trading_day
    after_close = close_at(day) + timedelta(minutes=1)
    monkeypatch.setattr(resale, "timezone", SimpleNamespace(now=lambda: after_close))

    response = client.get(reverse("web:resale_listings"))

    # then it is not offered: an order on it would be ORDER_INSTRUMENT_EXPIRED
    shown = {row.instrument for row in response.context["listings"]}
    assert ending not in shown
    assert all(row.instrument.last_trading_day > day for row in response.context["listings"])


@pytest.mark.parametrize(
    "query",
    [
        {"block_gpus_min": "lots"},
        {"block_gpus_min": "0"},
        {"available_from": "soon"},
        {"available_until": "2026-13-40"},
        {"interconnect": "wifi"},
        {"sku": "NOPE"},
        {"region": "MARS"},
        {"compliance": "itar"},
    ],
)
def test_bad_filters_are_named_not_500(client, listings, query):
    response = client.get(reverse("web:resale_listings"), query)

    assert response.status_code == 400
    assert set(query) <= set(response.context["form"].errors)
    assert f'id="id_{next(iter(query))}_error"' in response.content.decode()
    assert response.context["listings"] == []


def test_a_listings_page_writes_its_gpu_hours_with_thousands_separators(
    client, seller, sku, region
):
    """A listing of a 90-day term is 2,160 GPU-hours a contract, as the capacity page writes
    its hours; the instrument page wrote 2160 in its contract, ticket and units."""
    block = _block(seller, seller, sku, region, ends_at=_start() + timedelta(days=90))
    listing = resale_list(reservation=block)
    client.force_login(_user(seller, "nora"))

    page = client.get(reverse("web:instrument", args=[listing.symbol])).content.decode()

    assert listing.gpu_hours_per_contract == 2160
    assert "<dd>2,160 GPU-hours; tick" in page
    assert "Contracts of 2,160 GPU-hours." in page
    assert "1 contract = 2,160 GPU-hours" in page
    assert "2,160 GPU-hours per contract; a seller delivers" in page
