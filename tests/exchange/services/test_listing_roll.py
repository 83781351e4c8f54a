"""The daily listing roll: futures strips kept a year deep, option chains on the near months."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from exchange.calendar import close_at
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import AuditEntry, Instrument, Region, SettlementPrice
from exchange.services.listing import (
    StripSpec,
    futures_list_strip,
    listings_roll,
    strike_step_from_price,
)
from tests.exchange.support import place

# A Wednesday in mid-May: next month's (June 2031) future trades until Friday 30 May and its
# options until Wednesday 28 May.
TODAY = date(2031, 5, 14)
NEXT_MONTH_DAY = date(2031, 6, 11)


def symbols(instruments) -> list[str]:
    return [instrument.symbol for instrument in instruments]


def strikes(future: Instrument) -> list[Decimal]:
    return list(future.options.order_by("strike").values_list("strike", flat=True).distinct())


def future(month: str) -> Instrument:
    return Instrument.objects.get(symbol=f"H100SXM-USEAST-{month}")


def settle(month: str, price: str, trading_date: date = date(2031, 5, 13)) -> None:
    SettlementPrice.objects.create(
        instrument=future(month),
        trading_date=trading_date,
        price=Decimal(price),
        source=SettlementPrice.Source.VWAP,
    )


def decimals(*texts: str) -> list[Decimal]:
    return [Decimal(text) for text in texts]


@pytest.fixture(autouse=True)
def listing_clock(monkeypatch):
    """The listing services' clock at the start of ``TODAY``: the rolls here are as of it and
    the days after it, which a roll as of a day gone would refuse once that day has passed."""
    from exchange.services import listing

    start = datetime.combine(TODAY, time.min, tzinfo=UTC)
    monkeypatch.setattr(listing, "timezone", SimpleNamespace(now=lambda: start))


@pytest.fixture
def june(sku, region) -> Instrument:
    """The pair has one future listed, next month's."""
    (instrument,) = futures_list_strip(
        sku=sku, region=region, first_month=date(2031, 6, 1), months=1
    )
    return instrument


@pytest.fixture
def strip(june) -> list[Instrument]:
    """The whole strip listed as of ``TODAY`` (no prices yet, so no options)."""
    return listings_roll(today=TODAY)


@pytest.mark.parametrize(
    ("reference", "step"),
    [
        ("2.45", "0.12"),  # 0.1225 to two significant figures.
        ("2.00", "0.10"),
        ("19.99", "1.0"),  # 0.9995 rounds up to the next decade.
        ("0.07", "0.004"),  # 0.0035: two figures, then onto the tick (half up).
        ("0.01", "0.001"),  # 0.0005 is below a tick: one tick.
    ],
)
def test_strike_step_is_a_nice_multiple_of_the_option_tick(reference, step):
    assert strike_step_from_price(Decimal(reference), fraction=Decimal("0.05")) == Decimal(step)


def test_futures_stay_twelve_months_deep_as_the_month_rolls(june):
    # when
    listed = listings_roll(today=TODAY)

    # then the strip runs June 2031 to May 2032; June existed and is not reported
    assert symbols(listed) == [
        f"H100SXM-USEAST-{month}"
        for month in (
            *("203107", "203108", "203109", "203110", "203111", "203112"),
            *("203201", "203202", "203203", "203204", "203205"),
        )
    ]
    assert listings_roll(today=TODAY) == []

    # when the month rolls
    rolled = listings_roll(today=NEXT_MONTH_DAY)

    # then only the new far month appears; June stays listed
    assert symbols(rolled) == ["H100SXM-USEAST-203206"]
    assert Instrument.objects.filter(kind=Instrument.Kind.FUTURE).count() == 13
    assert Instrument.objects.get(pk=june.pk).status == Instrument.Status.ACTIVE
    assert not Instrument.objects.filter(kind=Instrument.Kind.OPTION).exists()
    assert listings_roll(today=NEXT_MONTH_DAY) == []


def test_the_roll_without_any_future_lists_nothing(sku, region):
    assert listings_roll(today=TODAY) == []
    assert not Instrument.objects.exists()


def test_options_are_listed_around_the_settlement_price_of_the_first_three_months(strip):
    # given settlement prices on the first four months
    for month in ("203106", "203107", "203108", "203109"):
        settle(month, "2.45")
    audits_before = AuditEntry.objects.filter(action="instrument.list").count()

    # when
    listed = listings_roll(today=TODAY)

    # then four strikes each side of 2.40 (20 steps of 0.12), a call and a put at each
    ladder = decimals("1.92", "2.04", "2.16", "2.28", "2.40", "2.52", "2.64", "2.76", "2.88")
    assert [strikes(future(month)) for month in ("203106", "203107", "203108")] == [ladder] * 3
    assert strikes(future("203109")) == []
    assert len(listed) == 3 * 9 * 2
    assert symbols(listed[:4]) == [
        "H100SXM-USEAST-203106-C1.92",
        "H100SXM-USEAST-203106-P1.92",
        "H100SXM-USEAST-203106-C2.04",
        "H100SXM-USEAST-203106-P2.04",
    ]
    assert symbols(listed)[-1] == "H100SXM-USEAST-203108-P2.88"
    assert {option.kind for option in listed} == {Instrument.Kind.OPTION}
    assert AuditEntry.objects.filter(action="instrument.list").count() == audits_before + 54

    # and a second run the same day lists nothing
    assert listings_roll(today=TODAY) == []
    assert Instrument.objects.filter(kind=Instrument.Kind.OPTION).count() == 54


def test_a_future_without_any_price_gets_no_options(strip):
    # given prices on June and August only
    settle("203106", "2.45")
    settle("203108", "2.45")

    # when
    listed = listings_roll(today=TODAY)

    # then July is skipped, and September does not take its place
    assert {option.underlying.symbol for option in listed} == {
        "H100SXM-USEAST-203106",
        "H100SXM-USEAST-203108",
    }
    assert strikes(future("203107")) == []
    assert strikes(future("203109")) == []


def test_the_last_trade_price_serves_when_there_is_no_settlement(strip, buyer, seller):
    # given a trade on June at 2.00 and no settlement price
    june = future("203106")
    place(buyer, june, "buy", 1, "2.00")
    place(seller, june, "sell", 1, "2.00")
    assert june.trades.get().price == Decimal("2.00")

    # when
    listings_roll(today=TODAY)

    # then strikes every 0.10 around 2.00
    assert strikes(june) == decimals(
        "1.60", "1.70", "1.80", "1.90", "2.00", "2.10", "2.20", "2.30", "2.40"
    )


def test_the_latest_settlement_price_wins(strip):
    settle("203106", "4.00", trading_date=date(2031, 5, 12))
    settle("203106", "2.00", trading_date=date(2031, 5, 13))

    listings_roll(today=TODAY)

    assert strikes(future("203106"))[4] == Decimal("2.00")


def test_options_whose_expiry_has_passed_are_not_listed(strip):
    # given Thursday 29 May: June's future trades one more day, but its options expired on the
    # 28th
    for month in ("203106", "203107", "203108", "203109"):
        settle(month, "2.45")

    # when
    listings_roll(today=date(2031, 5, 29))

    # then the three months after June get the options
    assert strikes(future("203106")) == []
    assert [len(strikes(future(month))) for month in ("203107", "203108", "203109")] == [9] * 3


def test_options_are_not_listed_after_the_close_of_their_expiry_day(strip, monkeypatch):
    from types import SimpleNamespace

    from exchange.services import listing

    # given Wednesday 28 May, June's options' expiry day, after its close
    for month in ("203106", "203107", "203108", "203109"):
        settle(month, "2.45")
    after_close = datetime(2031, 5, 28, 17, 0, tzinfo=UTC)
    assert after_close > close_at(date(2031, 5, 28))
    monkeypatch.setattr(listing, "timezone", SimpleNamespace(now=lambda: after_close))

    # when the scheduled roll runs
    listings_roll()

    # then June gets no strikes (they could never trade), the three months after it do
    assert strikes(future("203106")) == []
    assert [len(strikes(future(month))) for month in ("203107", "203108", "203109")] == [9] * 3


def test_a_price_move_adds_strikes_above_on_the_same_grid(strip):
    # given June's chain listed around 2.45 (step 0.12)
    settle("203106", "2.45")
    listings_roll(today=TODAY)
    june = future("203106")
    options_before = list(june.options.order_by("pk").values())

    # when June settles 30% higher (3.185, where a fresh step would be 0.16) and the roll runs
    settle("203106", "3.185", trading_date=date(2031, 5, 14))
    listed = listings_roll(today=date(2031, 5, 15))

    # then strikes 25 to 31 steps of 0.12 are added: four each side of 3.24 (27 steps)
    added = decimals("3.00", "3.12", "3.24", "3.36", "3.48", "3.60", "3.72")
    assert [option.strike for option in listed] == [strike for strike in added for _ in "CP"]
    assert symbols(listed[:2]) == ["H100SXM-USEAST-203106-C3.00", "H100SXM-USEAST-203106-P3.00"]
    assert strikes(june) == (
        decimals("1.92", "2.04", "2.16", "2.28", "2.40", "2.52", "2.64", "2.76", "2.88") + added
    )
    # and the options listed before are as they were
    listed_before = june.options.filter(pk__in=[row["id"] for row in options_before])
    assert list(listed_before.order_by("pk").values()) == options_before


def test_roll_listings_command_prints_each_new_instrument_and_the_count(june):
    # when
    output = StringIO()
    call_command("roll_listings", "--date", "2031-05-14", stdout=output)

    # then
    lines = output.getvalue().splitlines()
    assert lines[0] == "listed H100SXM-USEAST-203107"
    assert lines[-2] == "listed H100SXM-USEAST-203205"
    assert lines[-1] == "11 instruments listed"
    assert len(lines) == 12

    # and a second run lists nothing
    again = StringIO()
    call_command("roll_listings", "--date", "2031-05-14", stdout=again)
    assert again.getvalue().splitlines() == ["0 instruments listed"]


def test_roll_listings_command_refuses_a_malformed_date(june):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("roll_listings", "--date", "14/05/2031")
    assert Instrument.objects.count() == 1


@pytest.mark.parametrize(
    ("day", "message"),
    [
        (TODAY - timedelta(days=60), f"as of {TODAY - timedelta(days=60)}, before today ({TODAY})"),
        (date(2037, 5, 1), "72 months or more ahead of today (2031-05-14)"),
        (date(9999, 12, 31), "past the deepest strip: roll as of a day before 2037-05-01"),
    ],
)
def test_roll_listings_command_refuses_a_day_gone_or_too_far_and_lists_nothing(june, day, message):
    audits = AuditEntry.objects.count()

    # when
    with pytest.raises(CommandError, match="CATALOG_INVALID_LISTING") as raised:
        call_command("roll_listings", "--date", day.isoformat(), stdout=StringIO())

    # then nothing is listed
    assert message in str(raised.value)
    assert Instrument.objects.count() == 1
    assert AuditEntry.objects.count() == audits


def test_a_roll_as_of_a_day_gone_is_refused_by_the_service(june):
    with pytest.raises(CatalogError) as raised:
        listings_roll(today=TODAY - timedelta(days=1))

    assert raised.value.code == CatalogErrorCode.INVALID_LISTING
    assert raised.value.field == "today"
    assert Instrument.objects.count() == 1


def test_a_roll_as_of_the_last_day_of_the_deepest_strip_is_allowed(june):
    listed = listings_roll(today=date(2037, 4, 30))

    assert listed[0].symbol == "H100SXM-USEAST-203705"


def test_the_roll_continues_a_physical_strip_on_its_own_terms(sku, region):
    # given a pair listed physically, with its own tick, lot, price limit and position limit
    terms = StripSpec(
        tick_size=Decimal("0.01"),
        lot_size=5,
        settlement=Instrument.Settlement.PHYSICAL,
        price_max=Decimal("200"),
        position_limit=50,
    )
    futures_list_strip(sku=sku, region=region, first_month=date(2031, 6, 1), months=1, spec=terms)

    # when the roll lists the rest of the year
    listed = listings_roll(today=TODAY)

    # then every month it lists is on those terms, not the default cash ones
    assert len(listed) == 11
    assert {StripSpec.of(future) for future in listed} == {terms}


def test_each_pair_rolls_on_the_terms_of_its_latest_month(sku, region):
    other_region = Region.objects.create(
        code="EUWEST", name="EU West", power_price_usd_per_kwh=Decimal("0.12")
    )
    # given one pair whose strip turned physical from July, and another left on the defaults
    futures_list_strip(sku=sku, region=region, first_month=date(2031, 6, 1), months=1)
    physical = StripSpec(settlement=Instrument.Settlement.PHYSICAL, tick_size=Decimal("0.02"))
    futures_list_strip(
        sku=sku, region=region, first_month=date(2031, 7, 1), months=1, spec=physical
    )
    futures_list_strip(sku=sku, region=other_region, first_month=date(2031, 6, 1), months=1)

    # when
    listings_roll(today=TODAY)

    # then June keeps its cash terms, and the months after July follow July's
    strip = Instrument.objects.filter(kind=Instrument.Kind.FUTURE, region=region)
    assert StripSpec.of(strip.get(delivery_start=date(2031, 6, 1))) == StripSpec()
    after_july = strip.filter(delivery_start__gt=date(2031, 7, 1))
    assert after_july.count() == 10
    assert {StripSpec.of(future) for future in after_july} == {physical}
    others = Instrument.objects.filter(kind=Instrument.Kind.FUTURE, region=other_region)
    assert others.count() == 12
    assert {StripSpec.of(future) for future in others} == {StripSpec()}
