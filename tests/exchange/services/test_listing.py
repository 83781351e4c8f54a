from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange import calendar
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import AuditEntry, Instrument, Organization, ReservedCapacity
from exchange.services.collateral import entitlement_months
from exchange.services.listing import (
    LISTED_MONTHS_MAX,
    StripSpec,
    futures_list_strip,
    futures_list_upcoming,
    options_list_chain,
    resale_list,
)
from exchange.services.participants import organization_create
from tests.exchange.support import listing_month

pytestmark = pytest.mark.django_db


def listing_audits() -> int:
    return AuditEntry.objects.filter(action="instrument.list").count()


def test_strip_lists_consecutive_monthly_futures(sku, region):
    # given
    first = date(2031, 11, 1)

    # when
    listed = futures_list_strip(sku=sku, region=region, first_month=first, months=4)

    # then
    assert [instrument.symbol for instrument in listed] == [
        "H100SXM-USEAST-203111",
        "H100SXM-USEAST-203112",
        "H100SXM-USEAST-203201",
        "H100SXM-USEAST-203202",
    ]
    february = listed[3]
    assert february.kind == Instrument.Kind.FUTURE
    assert february.status == Instrument.Status.ACTIVE
    assert february.delivery_start == date(2032, 2, 1)
    assert february.delivery_end == date(2032, 3, 1)
    assert february.gpu_hours_per_contract == 29 * 24  # 2032 is a leap year.
    assert [instrument.gpu_hours_per_contract for instrument in listed[:3]] == [720, 744, 744]
    assert february.tick_size == Decimal("0.005")
    assert february.lot_size == 1


def test_strip_starts_at_the_month_of_any_day_given(sku, region):
    (instrument,) = futures_list_strip(
        sku=sku, region=region, first_month=date(2031, 7, 19), months=1
    )

    assert instrument.delivery_start == date(2031, 7, 1)


@pytest.mark.parametrize(
    ("delivery_start", "last_trading_day"),
    [
        (date(2031, 12, 1), date(2031, 11, 28)),  # Monday 1st: the Friday before.
        (date(2032, 2, 1), date(2032, 1, 30)),  # Sunday 1st: Friday.
        (date(2032, 1, 1), date(2031, 12, 31)),  # Thursday 1st: Wednesday.
        (date(2031, 11, 1), date(2031, 10, 31)),  # Saturday 1st: Friday.
    ],
)
def test_futures_stop_trading_the_business_day_before_delivery(
    sku, region, delivery_start, last_trading_day
):
    (instrument,) = futures_list_strip(sku=sku, region=region, first_month=delivery_start, months=1)

    assert instrument.last_trading_day == last_trading_day
    assert instrument.last_trading_day.weekday() < 5


@pytest.mark.parametrize(
    ("delivery_start", "days", "delivery_end"),
    [
        (date(2027, 2, 1), 28, date(2027, 3, 1)),
        (date(2028, 2, 1), 29, date(2028, 3, 1)),  # Leap year.
        (date(2100, 2, 1), 28, date(2100, 3, 1)),  # A century, not a leap year.
        (date(2027, 4, 1), 30, date(2027, 5, 1)),
        (date(2027, 12, 1), 31, date(2028, 1, 1)),  # Delivers into the next year's first day.
    ],
)
def test_a_contract_is_every_hour_of_its_delivery_month(
    sku, region, delivery_start, days, delivery_end
):
    (instrument,) = futures_list_strip(sku=sku, region=region, first_month=delivery_start, months=1)

    assert instrument.gpu_hours_per_contract == days * 24
    assert (instrument.delivery_start, instrument.delivery_end) == (delivery_start, delivery_end)
    assert instrument.symbol.endswith(f"-{delivery_start:%Y%m}")


@pytest.mark.parametrize(
    ("delivery_start", "future_last_trading_day", "option_expiry"),
    [
        # Delivery on a Tuesday: the future stops on Monday, its options the Thursday before.
        (date(2027, 6, 1), date(2027, 5, 31), date(2027, 5, 27)),
        # On a Wednesday: Tuesday the 31st, and options back across the weekend to Friday.
        (date(2027, 9, 1), date(2027, 8, 31), date(2027, 8, 27)),
        # On a Saturday, New Year's Day: the year's last Friday, options the Wednesday before.
        (date(2028, 1, 1), date(2027, 12, 31), date(2027, 12, 29)),
        # On a Monday: the Friday before, options that Wednesday.
        (date(2027, 2, 1), date(2027, 1, 29), date(2027, 1, 27)),
    ],
)
def test_options_expire_two_business_days_before_their_future_stops_trading(
    sku, region, delivery_start, future_last_trading_day, option_expiry
):
    (future,) = futures_list_strip(sku=sku, region=region, first_month=delivery_start, months=1)

    chain = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
    )

    assert future.last_trading_day == future_last_trading_day
    assert {option.last_trading_day for option in chain} == {option_expiry}
    assert option_expiry.weekday() < 5 and option_expiry < future_last_trading_day


def test_strip_takes_its_contract_spec(sku, region):
    spec = StripSpec(
        tick_size=Decimal("0.01"),
        lot_size=4,
        settlement=Instrument.Settlement.PHYSICAL,
        price_max=Decimal("50"),
    )

    (instrument,) = futures_list_strip(
        sku=sku, region=region, first_month=date(2031, 1, 1), months=1, spec=spec
    )

    instrument.refresh_from_db()
    assert (instrument.tick_size, instrument.lot_size) == (Decimal("0.01"), 4)
    assert instrument.settlement == Instrument.Settlement.PHYSICAL
    assert instrument.price_max == Decimal("50")


def test_listing_a_strip_again_creates_nothing(sku, region, admin_user):
    # given
    first = futures_list_strip(sku=sku, region=region, first_month=date(2031, 1, 1), months=3)
    audits = listing_audits()

    # when
    again = futures_list_strip(sku=sku, region=region, first_month=date(2031, 1, 1), months=3)

    # then
    assert [instrument.pk for instrument in again] == [instrument.pk for instrument in first]
    assert Instrument.objects.count() == 3
    assert listing_audits() == audits == 3

    # when a longer strip overlaps it
    longer = futures_list_strip(
        sku=sku, region=region, first_month=date(2031, 2, 1), months=4, actor=admin_user
    )

    # then only the two new months are created and audited, with their actor
    assert [instrument.pk for instrument in longer[:2]] == [first[1].pk, first[2].pk]
    assert Instrument.objects.count() == 5
    new_audits = AuditEntry.objects.filter(action="instrument.list").order_by("id")[3:]
    assert [entry.target_id for entry in new_audits] == [str(longer[2].pk), str(longer[3].pk)]
    assert {entry.actor_label for entry in new_audits} == {admin_user.username}
    assert new_audits[0].after == {
        "symbol": longer[2].symbol,
        "kind": "future",
        "terms": {
            "settlement": "cash",
            "tick_size": "0.005",
            "lot_size": 1,
            "price_max": "1000",
            "position_limit": None,
        },
    }


@pytest.mark.parametrize("months", [0, -1, LISTED_MONTHS_MAX + 1])
def test_strip_length_out_of_range_is_refused(sku, region, months):
    with pytest.raises(CatalogError) as raised:
        futures_list_strip(sku=sku, region=region, first_month=date(2031, 1, 1), months=months)

    assert raised.value.code == CatalogErrorCode.INVALID_LISTING
    assert Instrument.objects.count() == 0


def test_strip_of_the_maximum_length_is_listed(sku, region):
    listed = futures_list_strip(
        sku=sku, region=region, first_month=date(2031, 1, 1), months=LISTED_MONTHS_MAX
    )

    assert len({instrument.symbol for instrument in listed}) == LISTED_MONTHS_MAX
    assert listed[-1].delivery_start == date(2036, 12, 1)


def test_option_chain_lists_a_call_and_a_put_per_strike(future):
    # when
    options = options_list_chain(
        future=future,
        reference_price=Decimal("2.45"),
        strike_step=Decimal("0.25"),
        strikes_each_side=2,
    )

    # then
    strikes = [Decimal("2.00"), Decimal("2.25"), Decimal("2.50"), Decimal("2.75"), Decimal("3.00")]
    assert [(option.strike, option.option_type) for option in options] == [
        (strike, option_type) for strike in strikes for option_type in ("call", "put")
    ]
    assert options[4].symbol == f"{future.symbol}-C2.50"
    assert options[5].symbol == f"{future.symbol}-P2.50"
    for option in options:
        assert option.kind == Instrument.Kind.OPTION
        assert option.underlying == future
        assert option.delivery_start == future.delivery_start
        assert option.gpu_hours_per_contract == future.gpu_hours_per_contract
        assert option.settlement == Instrument.Settlement.PHYSICAL
        assert option.last_trading_day == calendar.option_expiry(future.last_trading_day)
        assert option.last_trading_day < future.last_trading_day < future.delivery_start
        assert option.last_trading_day.weekday() < 5


def test_option_chain_drops_strikes_at_or_below_zero_and_is_idempotent(future):
    options = options_list_chain(
        future=future,
        reference_price=Decimal("0.20"),
        strike_step=Decimal("0.10"),
        strikes_each_side=3,
    )
    again = options_list_chain(
        future=future,
        reference_price=Decimal("0.20"),
        strike_step=Decimal("0.10"),
        strikes_each_side=3,
    )

    assert sorted({option.strike for option in options}) == [
        Decimal(f"0.{digit}") for digit in range(1, 6)
    ]
    assert [option.pk for option in again] == [option.pk for option in options]
    assert Instrument.objects.filter(kind=Instrument.Kind.OPTION).count() == 10


def test_options_are_listed_on_futures_only(future):
    (call, _put) = options_list_chain(
        future=future, reference_price=Decimal("2"), strike_step=Decimal("1"), strikes_each_side=0
    )

    with pytest.raises(CatalogError) as raised:
        options_list_chain(
            future=call, reference_price=Decimal("2"), strike_step=Decimal("1"), strikes_each_side=0
        )

    assert raised.value.code == CatalogErrorCode.INVALID_LISTING


def test_option_strikes_must_sit_on_the_option_tick(future):
    with pytest.raises(CatalogError) as raised:
        options_list_chain(
            future=future,
            reference_price=Decimal("2.45"),
            strike_step=Decimal("0.0005"),
            strikes_each_side=1,
        )

    assert raised.value.code == CatalogErrorCode.INVALID_LISTING
    assert Instrument.objects.filter(kind=Instrument.Kind.OPTION).count() == 0


# Resale ---------------------------------------------------------------------------------


@pytest.fixture
def provider(db) -> Organization:
    return organization_create(slug="northwind", name="Northwind", kind=Organization.Kind.PROVIDER)


@pytest.fixture
def holder(db) -> Organization:
    return organization_create(slug="lumen", name="Lumen", kind=Organization.Kind.STARTUP)


@pytest.fixture
def make_reservation(sku, region, provider, holder):
    def make(
        *,
        starts_at: datetime,
        days: int = 30,
        ends_at: datetime | None = None,
        gpus: int = 256,
        block: int = 64,
    ):
        return ReservedCapacity.objects.create(
            provider=provider,
            holder=holder,
            cluster=f"nw-{ReservedCapacity.objects.count()}",
            sku=sku,
            region=region,
            starts_at=starts_at,
            ends_at=ends_at or starts_at + timedelta(days=days),
            gpus=gpus,
            interconnect="infiniband",
            contiguous_block_gpus=block,
        )

    return make


def test_resale_lists_a_block_in_lots_of_its_contiguous_block(make_reservation):
    # given
    starts = datetime.combine(listing_month(), time.min, tzinfo=UTC)
    reservation = make_reservation(starts_at=starts, days=30, gpus=256, block=64)

    # when
    instrument = resale_list(reservation=reservation)

    # then
    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}"
    assert instrument.kind == Instrument.Kind.RESALE
    assert instrument.lot_size == 64
    assert instrument.quantity_max == 256
    assert instrument.gpu_hours_per_contract == 30 * 24
    assert instrument.delivery_start == starts.date()
    assert instrument.delivery_end == starts.date() + timedelta(days=30)
    assert instrument.last_trading_day == starts.date() - timedelta(days=1)
    assert instrument.tick_size == Decimal("0.01")
    assert instrument.settlement == Instrument.Settlement.PHYSICAL
    assert AuditEntry.objects.filter(
        action="instrument.list", target_id=str(instrument.pk)
    ).exists()


def test_resale_delivery_end_covers_a_partial_last_day(make_reservation):
    starts = datetime.combine(listing_month(), time(6), tzinfo=UTC)
    reservation = make_reservation(starts_at=starts, days=2)

    instrument = resale_list(reservation=reservation, lot_gpus=32)

    assert instrument.lot_size == 32
    assert instrument.delivery_start == starts.date()
    assert instrument.delivery_end == starts.date() + timedelta(days=3)
    assert instrument.gpu_hours_per_contract == 48


def test_resale_refuses_a_reservation_starting_within_a_day_with_no_day_left(
    make_reservation,
):
    """Within a day of its start a block is no longer listed for its whole term; a listing
    would sell it from the next day's start that can still be listed, and this block ends
    before."""
    now = datetime(2097, 3, 10, 9, tzinfo=UTC)
    reservation = make_reservation(
        starts_at=now + timedelta(hours=23), ends_at=datetime(2097, 3, 12, tzinfo=UTC)
    )

    with pytest.raises(CatalogError) as raised:
        resale_list(reservation=reservation, now=now)

    assert raised.value.code == CatalogErrorCode.RESERVATION_ALREADY_STARTED
    assert raised.value.code == "CATALOG_RESERVATION_ALREADY_STARTED"
    assert "before any day it could still be listed from" in raised.value.message
    assert not Instrument.objects.exists()


def test_resale_lists_a_reservation_starting_within_a_day_from_the_day_after_its_start(
    make_reservation,
):
    """A block starting tomorrow at 08:00 can no longer be listed for its whole term; it is
    listed from the next day's start, the first more than a day ahead, to the end of its term."""
    now = datetime(2097, 3, 10, 9, tzinfo=UTC)
    reservation = make_reservation(starts_at=now + timedelta(hours=23), days=5)

    instrument = resale_list(reservation=reservation, now=now)

    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}-20970312"
    assert instrument.resale_starts_at == datetime(2097, 3, 12, tzinfo=UTC)
    assert instrument.last_trading_day == date(2097, 3, 11)
    # From 12 March 00:00 to 16 March 08:00.
    assert instrument.gpu_hours_per_contract == 4 * 24 + 8


@pytest.mark.parametrize(
    ("now", "term_starts", "starts_on"),
    [
        # Starting tomorrow, in the next month: the month under way is the term's first.
        (datetime(2097, 3, 31, 10, tzinfo=UTC), datetime(2097, 4, 1, 5, tzinfo=UTC), "20970402"),
        # Starting tonight, on the month's last day: no day of it is left, nor is the next
        # month's start more than a day ahead: from the next month's second.
        (datetime(2097, 3, 31, 1, tzinfo=UTC), datetime(2097, 3, 31, 20, tzinfo=UTC), "20970402"),
    ],
    ids=["term-starting-next-month", "term-starting-on-a-months-last-day"],
)
def test_resale_lists_a_reservation_starting_within_a_day_at_a_months_end(
    make_reservation, now, term_starts, starts_on
):
    reservation = make_reservation(starts_at=term_starts, days=60)

    instrument = resale_list(reservation=reservation, now=now)

    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}-{starts_on}"
    assert instrument.resale_starts_at - timedelta(days=1) > now
    hours = (reservation.ends_at - instrument.resale_starts_at).total_seconds() // 3600
    assert instrument.gpu_hours_per_contract == hours


@pytest.mark.parametrize(
    ("listed_at", "whole_term"),
    [(time(15, 59, 59), True), (time(16), False), (time(17), False)],
    ids=["before-the-close", "at-the-close", "after-the-close"],
)
def test_resale_lists_the_whole_term_until_the_close_of_the_day_before(
    make_reservation, settings, listed_at, whole_term
):
    """A listing trades until the close of the day before the block's term starts, as every
    instrument trades until the close of its last trading day: a block starting tomorrow at
    20:00, more than a day away at 17:00 today, can no longer be listed for its whole term then,
    only from the day after its start on."""
    # given a block starting 2097-03-10 20:00 UTC for 60 days, and the close at 16:00 UTC
    settings.EXCHANGE_SETTLEMENT_CLOSE = "16:00"
    reservation = make_reservation(starts_at=datetime(2097, 3, 10, 20, tzinfo=UTC), days=60)
    now = datetime.combine(date(2097, 3, 9), listed_at, tzinfo=UTC)
    assert reservation.starts_at > now + timedelta(days=1)

    # when its holder lists it on the day before
    instrument = resale_list(reservation=reservation, now=now)

    # then before the close it is listed for the whole term, trading until the close of that
    # day; from the close on, from 11 March (the rest of the term), trading until 10 March
    if whole_term:
        assert instrument.symbol.endswith(f"-R{reservation.pk}")
        assert instrument.last_trading_day == date(2097, 3, 9)
        assert instrument.resale_starts_at == reservation.starts_at
        return
    assert instrument.symbol.endswith(f"-R{reservation.pk}-20970311")
    assert (instrument.delivery_start, instrument.last_trading_day) == (
        date(2097, 3, 11),
        date(2097, 3, 10),
    )
    assert instrument.resale_starts_at == datetime(2097, 3, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "starts_on", "symbol_term", "first_month_hours", "later_months"),
    [
        # March has 31 days: from 22 March, 10 days of it.
        (datetime(2097, 3, 20, 12, tzinfo=UTC), date(2097, 3, 22), "20970322", 10 * 24, [30, 31]),
        # April has 30: from 12 April, 19 days of it.
        (datetime(2097, 4, 10, 0, tzinfo=UTC), date(2097, 4, 12), "20970412", 19 * 24, [31]),
        # February 2097 has 28: from 3 February, 26 days of it.
        (datetime(2097, 2, 1, 23, tzinfo=UTC), date(2097, 2, 3), "20970203", 26 * 24, [31, 30, 31]),
    ],
    ids=["31-day-month", "30-day-month", "28-day-month"],
)
def test_resale_lists_a_running_block_from_a_day_of_the_month_under_way(
    make_reservation, now, starts_on, symbol_term, first_month_hours, later_months
):
    """A startup mid-way through a reservation resells the hours it will not use, the rest of
    the month under way included: the listing sells 1 GPU of the block from the first day's
    start (00:00 UTC) more than a day ahead to the end of the term, and a contract's GPU-hours
    are exactly those hours: the rest of this month, the whole months after, and the last
    month's part of the term."""
    # given a 256-GPU block from 2097-01-15 06:00 to 2097-06-15 06:00
    starts = datetime(2097, 1, 15, 6, tzinfo=UTC)
    reservation = make_reservation(starts_at=starts, days=151)

    # when it is listed at ``now``
    instrument = resale_list(reservation=reservation, lot_gpus=32, now=now)

    # then from that day's start to the end of the term, trading until the close of the day
    # before, named by the day
    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}-{symbol_term}"
    assert instrument.delivery_start == starts_on
    assert instrument.resale_starts_at == datetime.combine(starts_on, time.min, tzinfo=UTC)
    assert instrument.resale_starts_at - timedelta(days=1) > now
    assert instrument.delivery_end == date(2097, 6, 16)
    assert instrument.last_trading_day == starts_on - timedelta(days=1)
    june = 14 * 24 + 6  # 1 June 00:00 to 15 June 06:00.
    expected = [first_month_hours, *(days * 24 for days in later_months), june]
    assert [hours for _, hours in entitlement_months(instrument)] == expected
    assert entitlement_months(instrument)[0][0] == starts_on.replace(day=1)
    assert instrument.gpu_hours_per_contract == sum(expected)
    hours = (reservation.ends_at - instrument.resale_starts_at).total_seconds() // 3600
    assert instrument.gpu_hours_per_contract == hours
    assert instrument.reservation == reservation
    assert instrument.lot_size == 32


def test_resale_lists_a_running_block_from_the_next_month_at_a_months_end(make_reservation):
    """Two days before a month's end, the first day more than a day ahead is the next month's
    first: the listing is a month's, from its start, named by the month as always."""
    # given a 256-GPU block from 2097-01-15 06:00 to 2097-06-15 06:00, on 2097-03-30
    starts = datetime(2097, 1, 15, 6, tzinfo=UTC)
    reservation = make_reservation(starts_at=starts, days=151)
    now = datetime(2097, 3, 30, 12, tzinfo=UTC)

    # when it is listed
    instrument = resale_list(reservation=reservation, lot_gpus=32, now=now)

    # then from April to the end of the term
    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}-209704"
    assert instrument.delivery_start == date(2097, 4, 1)
    assert instrument.delivery_end == date(2097, 6, 16)
    assert instrument.last_trading_day == date(2097, 3, 31)
    hours = (reservation.ends_at - datetime(2097, 4, 1, tzinfo=UTC)).total_seconds() // 3600
    assert instrument.gpu_hours_per_contract == hours == (30 + 31 + 14) * 24 + 6


def test_on_a_month_s_last_day_a_listing_starts_on_the_next_month_s_second(make_reservation):
    """On the last day of a month no day of it is left to list, and the next month starts
    within a day: the listing sells from the next day that can still be listed for, the next
    month's second (until 2026-12-07, when running blocks were listed from a month's start
    only, from the month after it: a month's hours that could have been sold were not)."""
    reservation = make_reservation(starts_at=datetime(2097, 1, 15, 6, tzinfo=UTC), days=151)

    instrument = resale_list(reservation=reservation, now=datetime(2097, 3, 31, 1, tzinfo=UTC))

    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}-20970402"
    assert instrument.delivery_start == date(2097, 4, 2)
    assert instrument.last_trading_day == date(2097, 4, 1)


def test_resale_lists_a_block_again_once_its_listing_has_ended(make_reservation):
    """One listing of a block trades at a time; when it ends, the block is listed again from a
    later day."""
    reservation = make_reservation(starts_at=datetime(2097, 1, 15, 6, tzinfo=UTC), days=151)
    first = resale_list(reservation=reservation, now=datetime(2097, 2, 27, 1, tzinfo=UTC))

    with pytest.raises(CatalogError) as raised:
        resale_list(reservation=reservation, now=datetime(2097, 2, 28, 15, tzinfo=UTC))
    assert raised.value.code == CatalogErrorCode.RESERVATION_ALREADY_LISTED
    assert first.symbol in raised.value.message

    # after the close of its last trading day (28 February), whether or not the daily run has
    # marked it expired yet
    again = resale_list(reservation=reservation, now=datetime(2097, 3, 1, 9, tzinfo=UTC))

    assert (first.delivery_start, again.delivery_start) == (date(2097, 3, 1), date(2097, 3, 3))
    assert (first.symbol[-7:], again.symbol[-9:]) == ("-209703", "-20970303")
    assert list(reservation.listings.order_by("delivery_start")) == [first, again]


def test_resale_does_not_list_the_same_hours_twice(make_reservation):
    """A listing whose trading ended early (expired by staff before its last trading day) does
    not let the block be listed again for the same hours: that would be a second instrument
    selling them, and the symbol is the block's for that start."""
    reservation = make_reservation(starts_at=datetime(2097, 1, 15, 6, tzinfo=UTC), days=151)
    now = datetime(2097, 2, 10, tzinfo=UTC)
    first = resale_list(reservation=reservation, now=now)
    Instrument.objects.filter(pk=first.pk).update(status=Instrument.Status.EXPIRED)

    with pytest.raises(CatalogError) as raised:
        resale_list(reservation=reservation, now=now)

    assert (raised.value.code, raised.value.field) == (
        CatalogErrorCode.RESERVATION_ALREADY_LISTED,
        "reservation",
    )
    assert first.symbol in raised.value.message
    assert "listed again from a later day" in raised.value.message
    assert list(Instrument.objects.all()) == [first]


def test_resale_lists_a_term_ending_within_the_month_for_its_last_hours(make_reservation):
    """A term ending mid-month is listed for what is left of it: the hours from the day's start
    more than a day ahead to its end."""
    # given a block ending 2097-06-15 06:00
    reservation = make_reservation(starts_at=datetime(2097, 1, 15, 6, tzinfo=UTC), days=151)

    # when it is listed on 13 June at 23:00
    instrument = resale_list(reservation=reservation, now=datetime(2097, 6, 13, 23, tzinfo=UTC))

    # then from 15 June 00:00: its last 6 hours, of June's entitlement
    assert instrument.symbol == f"H100SXM-USEAST-R{reservation.pk}-20970615"
    assert (instrument.delivery_start, instrument.delivery_end) == (
        date(2097, 6, 15),
        date(2097, 6, 16),
    )
    assert instrument.gpu_hours_per_contract == 6
    assert entitlement_months(instrument) == [(date(2097, 6, 1), 6)]


def test_resale_refuses_a_block_with_no_day_left_to_list(make_reservation):
    """On 14 June the first day more than a day ahead is 16 June, after the term's end."""
    reservation = make_reservation(starts_at=datetime(2097, 1, 15, 6, tzinfo=UTC), days=151)

    with pytest.raises(CatalogError) as raised:
        resale_list(reservation=reservation, now=datetime(2097, 6, 14, tzinfo=UTC))

    assert raised.value.code == CatalogErrorCode.RESERVATION_ALREADY_STARTED
    assert not Instrument.objects.exists()


def test_resale_refuses_listing_a_reservation_twice(make_reservation):
    reservation = make_reservation(starts_at=timezone.now() + timedelta(days=10))
    first = resale_list(reservation=reservation)

    with pytest.raises(CatalogError) as raised:
        resale_list(reservation=reservation)

    assert raised.value.code == CatalogErrorCode.RESERVATION_ALREADY_LISTED
    assert list(Instrument.objects.all()) == [first]


@pytest.mark.parametrize("lot_gpus", [48, 300])
def test_resale_refuses_a_lot_not_dividing_the_gpus(make_reservation, lot_gpus):
    reservation = make_reservation(starts_at=timezone.now() + timedelta(days=10), gpus=256)

    with pytest.raises(CatalogError) as raised:
        resale_list(reservation=reservation, lot_gpus=lot_gpus)

    assert raised.value.code == CatalogErrorCode.INVALID_LISTING
    assert raised.value.field == "lot_gpus"
    assert not Instrument.objects.exists()


def test_upcoming_listing_extends_every_listed_pair(sku, region):
    # given one month listed for the pair
    today = date(2031, 5, 17)
    futures_list_strip(sku=sku, region=region, first_month=date(2031, 6, 1), months=1)

    # when
    listed = futures_list_upcoming(months_ahead=3, today=today)

    # then
    assert [instrument.delivery_start for instrument in listed] == [
        date(2031, 6, 1),
        date(2031, 7, 1),
        date(2031, 8, 1),
    ]
    assert Instrument.objects.count() == 3
