"""Contract calendar rules. Business days are Monday to Friday; exchange holidays are not
modelled yet, so a listed last trading day can fall on a public holiday."""

import calendar
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings

# Options stop trading this many business days before their underlying future does, so that
# exercise into the future happens while the future still trades.
OPTION_EXPIRY_BUSINESS_DAYS_BEFORE_FUTURE = 2


def close_at(trading_date: date) -> datetime:
    """The end of the trading day's closing window (``EXCHANGE_SETTLEMENT_CLOSE``, UTC): the
    moment its settlement prices stand for."""
    hours, minutes = (int(part) for part in settings.EXCHANGE_SETTLEMENT_CLOSE.split(":"))
    return datetime.combine(trading_date, time(hours, minutes), tzinfo=UTC)


def trading_ends_at(last_trading_day: date) -> datetime:
    """When an instrument stops trading: the close of its last trading day. Its final
    settlement price is taken from the closing window before it, so it is known from then on:
    a trade after it (until the daily cycle expires the instrument, or until midnight) would be
    settled at a price both sides already know, against orders left resting."""
    return close_at(last_trading_day)


def trading_day_floor(moment: datetime) -> date:
    """The earliest last trading day of an instrument that still trades at ``moment``: today
    until today's close, tomorrow from it (``trading_ends_at``)."""
    today = moment.astimezone(UTC).date()
    return today if moment < close_at(today) else today + timedelta(days=1)


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    month_index = day.year * 12 + (day.month - 1) + months
    return date(month_index // 12, month_index % 12 + 1, 1)


def hours_in_month(first_day: date) -> int:
    return calendar.monthrange(first_day.year, first_day.month)[1] * 24


def business_days_before(day: date, count: int) -> date:
    """The business day ``count`` business days before ``day``."""
    assert 0 < count <= 366
    current = day
    remaining = count
    while remaining:
        current -= timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


def future_last_trading_day(delivery_start: date) -> date:
    """Futures stop trading on the last business day before delivery starts (as PJM monthlies)."""
    return business_days_before(delivery_start, 1)


def option_expiry(future_last_trading: date) -> date:
    return business_days_before(future_last_trading, OPTION_EXPIRY_BUSINESS_DAYS_BEFORE_FUTURE)
