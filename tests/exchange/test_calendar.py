from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from exchange import calendar


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2027, 1, 31), 1, date(2027, 2, 1)),
        (date(2027, 11, 15), 2, date(2028, 1, 1)),
        (date(2027, 1, 1), -1, date(2026, 12, 1)),
        (date(2027, 1, 1), 72, date(2033, 1, 1)),
    ],
)
def test_add_months_lands_on_the_first_of_the_month(day, months, expected):
    assert calendar.add_months(day, months) == expected


def test_hours_in_month_counts_leap_days():
    assert calendar.hours_in_month(date(2028, 2, 1)) == 29 * 24
    assert calendar.hours_in_month(date(2027, 2, 1)) == 28 * 24
    assert calendar.hours_in_month(date(2027, 7, 1)) == 31 * 24


def test_business_days_skip_weekends():
    monday = date(2027, 3, 1)

    assert calendar.business_days_before(monday, 1) == date(2027, 2, 26)  # Friday
    assert calendar.business_days_before(monday, 5) == date(2027, 2, 22)  # Monday before
    assert calendar.business_days_before(date(2027, 3, 3), 2) == monday


def test_options_expire_two_business_days_before_the_future():
    future_last_trading = calendar.future_last_trading_day(date(2027, 3, 1))

    assert future_last_trading == date(2027, 2, 26)
    assert calendar.option_expiry(future_last_trading) == date(2027, 2, 24)


def test_an_instrument_trades_until_the_close_of_its_last_trading_day(settings):
    settings.EXCHANGE_SETTLEMENT_CLOSE = "16:00"
    day = date(2027, 2, 26)
    before = datetime(2027, 2, 26, 15, 59, 59, 999999, tzinfo=UTC)
    at = datetime(2027, 2, 26, 16, 0, tzinfo=UTC)

    # Until the close an instrument whose last trading day is today still trades; from it, only
    # those whose last trading day is later.
    assert calendar.trading_ends_at(day) == at
    assert calendar.trading_day_floor(before) == day
    assert calendar.trading_day_floor(at) == date(2027, 2, 27)
    # A moment given in another zone is read in UTC.
    assert calendar.trading_day_floor(at.astimezone(timezone(timedelta(hours=-10)))) == date(
        2027, 2, 27
    )
