"""Staff's listing of a futures strip on the terms they choose (``futures_list_new_strip``)."""

from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.errors import CatalogError, CatalogErrorCode, RiskError, RiskErrorCode
from exchange.models import AuditEntry, Instrument
from exchange.services.instruments import instrument_position_limit_set
from exchange.services.listing import (
    LISTED_MONTHS_MAX,
    StripSpec,
    futures_list_new_strip,
    futures_list_strip,
)
from tests.exchange.support import listing_month, staff_user

pytestmark = pytest.mark.django_db

PHYSICAL = StripSpec(
    tick_size=Decimal("0.01"),
    lot_size=2,
    settlement=Instrument.Settlement.PHYSICAL,
    price_max=Decimal("500"),
    position_limit=300,
)


def listing_audits() -> int:
    return AuditEntry.objects.filter(action="instrument.list").count()


def this_month() -> date:
    return calendar.month_start(timezone.now().date())


def test_a_new_strip_is_listed_on_its_terms_and_audited(sku, region, admin_user):
    # when
    listing = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=3,
        spec=PHYSICAL,
        actor=admin_user,
    )

    # then every month carries the strip's terms
    assert listing.already_listed == []
    assert [future.delivery_start for future in listing.listed] == [
        calendar.add_months(listing_month(), index) for index in range(3)
    ]
    for future in Instrument.objects.filter(kind=Instrument.Kind.FUTURE):
        assert future.settlement == Instrument.Settlement.PHYSICAL
        assert future.tick_size == Decimal("0.01")
        assert future.lot_size == 2
        assert future.price_max == Decimal("500")
        assert future.position_limit == 300
    # and each listing is audited with its actor and terms
    entries = AuditEntry.objects.filter(action="instrument.list").order_by("id")
    assert [entry.target_id for entry in entries] == [str(f.pk) for f in listing.listed]
    assert {entry.actor_label for entry in entries} == {admin_user.username}
    assert entries[0].after["terms"] == {
        "settlement": "physical",
        "tick_size": "0.01",
        "lot_size": 2,
        "price_max": "500",
        "position_limit": 300,
    }


def test_the_listing_role_lists_with_the_default_position_limit(sku, region):
    operations = staff_user("olivia", Role.OPERATIONS)
    spec = StripSpec(settlement=Instrument.Settlement.PHYSICAL)

    listing = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=2,
        spec=spec,
        actor=operations,
    )

    assert [future.position_limit for future in listing.listed] == [None, None]
    assert [future.settlement for future in listing.listed] == ["physical", "physical"]


def test_a_position_limit_needs_the_risk_role_and_nothing_is_written(sku, region):
    operations = staff_user("olivia", Role.OPERATIONS)

    with pytest.raises(RiskError) as raised:
        futures_list_new_strip(
            sku=sku,
            region=region,
            first_month=listing_month(),
            months=2,
            spec=PHYSICAL,
            actor=operations,
        )

    assert raised.value.code == RiskErrorCode.ROLE_REQUIRED
    assert not Instrument.objects.exists()
    assert listing_audits() == 0


@pytest.mark.parametrize("roles", [(), (Role.RISK,), (Role.FINANCE,)])
def test_staff_without_the_listing_role_are_refused(sku, region, roles):
    with pytest.raises(CatalogError) as raised:
        futures_list_new_strip(
            sku=sku,
            region=region,
            first_month=listing_month(),
            months=2,
            spec=StripSpec(),
            actor=staff_user("desk", *roles),
        )

    assert raised.value.code == CatalogErrorCode.ROLE_REQUIRED
    assert not Instrument.objects.exists()


@pytest.mark.parametrize(
    ("terms", "months", "code", "field"),
    [
        ({"tick_size": Decimal("0")}, 2, "CATALOG_INVALID_LISTING", "tick_size"),
        ({"tick_size": Decimal("-0.01")}, 2, "CATALOG_INVALID_LISTING", "tick_size"),
        ({"tick_size": Decimal("0.0000001")}, 2, "CATALOG_INVALID_LISTING", "tick_size"),
        ({"tick_size": Decimal("NaN")}, 2, "CATALOG_INVALID_LISTING", "tick_size"),
        ({"price_max": Decimal("0")}, 2, "CATALOG_INVALID_LISTING", "price_max"),
        ({"price_max": Decimal("1000000")}, 2, "CATALOG_INVALID_LISTING", "price_max"),
        ({"price_max": Decimal("999.997")}, 2, "CATALOG_INVALID_LISTING", "price_max"),
        ({"lot_size": 0}, 2, "CATALOG_INVALID_LISTING", "lot_size"),
        ({"lot_size": 100_001}, 2, "CATALOG_INVALID_LISTING", "lot_size"),
        ({"settlement": "barter"}, 2, "CATALOG_INVALID_LISTING", "settlement"),
        ({"position_limit": -1}, 2, "CATALOG_POSITION_LIMIT_INVALID", "position_limit"),
        ({}, 0, "CATALOG_INVALID_LISTING", "months"),
        ({}, LISTED_MONTHS_MAX + 1, "CATALOG_INVALID_LISTING", "months"),
    ],
)
def test_bad_terms_are_refused_by_name_and_nothing_is_written(
    sku, region, admin_user, terms, months, code, field
):
    with pytest.raises(CatalogError) as raised:
        futures_list_new_strip(
            sku=sku,
            region=region,
            first_month=listing_month(),
            months=months,
            spec=StripSpec(**terms),
            actor=admin_user,
        )

    assert (raised.value.code, raised.value.field) == (code, field)
    assert not Instrument.objects.exists()
    assert listing_audits() == 0


def test_a_strip_starting_at_a_month_that_stopped_trading_is_refused(sku, region, admin_user):
    # This month's future stopped trading on the last business day of last month.
    with pytest.raises(CatalogError) as raised:
        futures_list_new_strip(
            sku=sku,
            region=region,
            first_month=this_month(),
            months=3,
            spec=StripSpec(),
            actor=admin_user,
        )

    assert (raised.value.code, raised.value.field) == ("CATALOG_INVALID_LISTING", "first_month")
    assert not Instrument.objects.exists()


def test_a_strip_ends_at_most_the_deepest_strip_ahead(sku, region, admin_user):
    deepest = calendar.add_months(this_month(), LISTED_MONTHS_MAX)

    with pytest.raises(CatalogError) as raised:
        futures_list_new_strip(
            sku=sku,
            region=region,
            first_month=deepest,
            months=2,
            spec=StripSpec(),
            actor=admin_user,
        )
    assert (raised.value.code, raised.value.field) == ("CATALOG_INVALID_LISTING", "months")
    assert not Instrument.objects.exists()

    listing = futures_list_new_strip(
        sku=sku, region=region, first_month=deepest, months=1, spec=StripSpec(), actor=admin_user
    )
    assert [future.delivery_start for future in listing.listed] == [deepest]


def test_listing_the_same_strip_again_lists_nothing_and_says_so(sku, region, admin_user):
    first = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=2,
        spec=PHYSICAL,
        actor=admin_user,
    )
    audits = listing_audits()

    # when the same strip, one month longer, is listed again
    again = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=3,
        spec=PHYSICAL,
        actor=admin_user,
    )

    # then the two months listed are kept as they are and only the third is new
    assert again.already_listed == first.listed
    assert [future.delivery_start for future in again.listed] == [
        calendar.add_months(listing_month(), 2)
    ]
    assert listing_audits() == audits + 1


def test_a_month_listed_with_its_own_position_limit_keeps_it(sku, region, admin_user):
    (first,) = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=1,
        spec=PHYSICAL,
        actor=admin_user,
    ).listed
    instrument_position_limit_set(instrument=first, position_limit=40, actor=admin_user)

    again = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=listing_month(),
        months=2,
        spec=PHYSICAL,
        actor=admin_user,
    )

    assert [future.pk for future in again.already_listed] == [first.pk]
    assert Instrument.objects.get(pk=first.pk).position_limit == 40
    assert again.listed[0].position_limit == 300


def test_a_month_listed_on_other_terms_refuses_the_whole_strip(sku, region, admin_user):
    # given a cash strip of two months
    cash = futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=2)
    audits = listing_audits()

    # when a physical strip over its second month is asked for
    with pytest.raises(CatalogError) as raised:
        futures_list_new_strip(
            sku=sku,
            region=region,
            first_month=calendar.add_months(listing_month(), 1),
            months=3,
            spec=PHYSICAL,
            actor=admin_user,
        )

    # then it names the month and lists nothing
    assert raised.value.code == CatalogErrorCode.STRIP_TERMS_DIFFER
    assert cash[1].symbol in raised.value.message
    assert cash[0].symbol not in raised.value.message
    assert Instrument.objects.count() == 2
    assert listing_audits() == audits

    # and from the month after the cash strip the physical one is listed
    listing = futures_list_new_strip(
        sku=sku,
        region=region,
        first_month=calendar.add_months(listing_month(), 2),
        months=3,
        spec=PHYSICAL,
        actor=admin_user,
    )
    assert len(listing.listed) == 3
