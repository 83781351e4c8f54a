"""``manage.py retire_entitlements``: staff retire the GPU-hours of ended months by hand (the
schedule does it daily), optionally only the months before a day's, and see what was retired."""

from datetime import UTC, datetime, time, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from exchange import calendar
from exchange.management.commands.retire_entitlements import Command
from exchange.selectors.entitlements import entitlements_of
from exchange.services.ledger_accounts import entitlement_code
from ledger.models import Entry
from ledger.selectors import ledger_problems

pytestmark = pytest.mark.django_db


def months_held(account) -> dict:
    return {holding.month: holding.gpu_hours for holding in entitlements_of(account)}


def retire(*arguments: str) -> str:
    output = StringIO()
    call_command("retire_entitlements", *arguments, stdout=output)
    return output.getvalue()


def test_the_command_retires_the_ended_months_and_prints_what_it_retired(
    listing, seller, monkeypatch
):
    # given the seller's block over two months, and a today after both have ended
    reservation = listing.reservation
    held = months_held(seller)
    first, second = sorted(held)
    after = calendar.add_months(second, 1)
    monkeypatch.setattr(
        timezone, "now", lambda: datetime.combine(after + timedelta(days=1), time(9), tzinfo=UTC)
    )
    codes = [
        entitlement_code(reservation.sku.code, reservation.region.code, month)
        for month in (first, second)
    ]

    # when staff retire only the months before the second's
    printed = retire("--before", second.isoformat())

    # then only the first month is retired, and the command says which, how much and from whom
    assert printed.splitlines() == [
        f"{codes[0]}: {held[first]} GPU-hours retired from 1 account(s)",
        f"{held[first]} GPU-hours retired before {second:%Y-%m}, 1 commodity(ies)",
    ]
    assert months_held(seller) == {second: held[second]}
    assert Entry.objects.filter(idempotency_key__startswith="gpuh-retire:").count() == 1

    # when they run it with no option, every ended month is retired: the second
    printed = retire()

    assert printed.splitlines() == [
        f"{codes[1]}: {held[second]} GPU-hours retired from 1 account(s)",
        f"{held[second]} GPU-hours retired, 1 commodity(ies)",
    ]
    assert months_held(seller) == {}
    assert ledger_problems() == []

    # and a second run finds nothing, posts nothing and says so
    entries = Entry.objects.count()
    assert retire() == "Nothing to retire: no GPU-hours are left of ended months.\n"
    assert Entry.objects.count() == entries


def test_nothing_of_a_month_not_ended_is_retired(listing, seller):
    held = months_held(seller)

    printed = retire("--before", timezone.now().date().isoformat())

    assert printed.startswith("Nothing to retire before ")
    assert months_held(seller) == held


@pytest.mark.parametrize(
    ("before", "message"),
    [
        ("tomorrow", "its month has not begun"),
        ("2026-13-01", "--before: month must be in 1..12"),
    ],
)
def test_a_day_after_today_or_not_a_day_is_refused_and_retires_nothing(
    listing, seller, before, message
):
    held = months_held(seller)
    entries = Entry.objects.count()
    if before == "tomorrow":
        before = (timezone.now().date() + timedelta(days=1)).isoformat()

    with pytest.raises(CommandError, match=message):
        retire("--before", before)

    assert months_held(seller) == held
    assert Entry.objects.count() == entries


def test_the_help_says_what_it_does_and_that_the_schedule_runs_it():
    parser = Command().create_parser("manage.py", "retire_entitlements")
    description = " ".join(parser.description.split())
    options = {option for action in parser._actions for option in action.option_strings}

    assert "Retire the GPU-hours of every month that has ended" in description
    assert "retire-ended-months-gpu-hours" in description
    assert "--before" in options
