"""What ``settle_day --help`` tells staff is what the command does (docs/OPERATIONS.md)."""

from datetime import date

import pytest
from django.core.management import call_command

from exchange.management.commands.settle_day import Command

pytestmark = pytest.mark.django_db


def test_the_help_names_the_default_day_the_command_settles(monkeypatch):
    # given a latest closed day (before the close, the business day before today)
    settled = []
    monkeypatch.setattr(
        "exchange.management.commands.settle_day.last_closed_day", lambda: date(2026, 12, 7)
    )

    def run(*, trading_date):
        settled.append(trading_date)
        raise AssertionError("stop here")

    monkeypatch.setattr("exchange.management.commands.settle_day.daily_settlement_run", run)
    description = " ".join(Command().create_parser("manage.py", "settle_day").description.split())

    # when it runs without --date
    with pytest.raises(AssertionError):
        call_command("settle_day")

    # then it settled the latest closed day, which its help names as its default (not today)
    assert settled == [date(2026, 12, 7)]
    assert "default: the latest business day whose close has passed" in description
    assert "default: today" not in description
