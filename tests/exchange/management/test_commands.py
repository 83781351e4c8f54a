"""The demo market and the market simulation, through their management commands."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.utils import timezone

from exchange import calendar
from exchange.demo import ORGANIZATIONS
from exchange.models import Instrument, Order, OrderRejection, Organization, ReservedCapacity, Trade
from exchange.selectors.integrity import order_book_problems

pytestmark = pytest.mark.django_db


def counts() -> dict[str, int]:
    return {
        "instruments": Instrument.objects.count(),
        "orders": Order.objects.count(),
        "trades": Trade.objects.count(),
        "organizations": Organization.objects.count(),
        "reservations": ReservedCapacity.objects.count(),
    }


def test_seed_demo_is_idempotent_and_the_simulation_keeps_invariants():
    # when
    first_output = StringIO()
    call_command("seed_demo", stdout=first_output)
    first = counts()
    second_output = StringIO()
    call_command("seed_demo", stdout=second_output)

    # then the second run adds nothing
    assert counts() == first
    assert f"{first['instruments']} instruments" in first_output.getvalue()
    assert "0 opening orders placed" in second_output.getvalue()
    assert first["orders"] > 0 and first["trades"] > 0
    kinds = set(Instrument.objects.values_list("kind", flat=True))
    assert kinds == {"future", "option", "resale"}
    assert not OrderRejection.objects.exists()
    assert order_book_problems() == []

    # and the demo users log in with the documented passwords
    usernames = [username for *_, members in ORGANIZATIONS for username, _role in members]
    for username in usernames:
        assert authenticate(username=username, password="gpu-demo-2026") is not None, username
    admin = authenticate(username="admin", password="admin-demo-2026")
    assert admin is not None and admin.is_superuser and admin.is_staff
    assert authenticate(username="alice", password="admin-demo-2026") is None

    # and every kind of participant is there
    assert set(Organization.objects.values_list("kind", flat=True)) == set(Organization.Kind.values)

    # when the market is traded at random
    output = StringIO()
    call_command("simulate_market", "--orders", "300", "--seed", "7", stdout=output)

    # then
    report = output.getvalue()
    assert "invariants: ok" in report
    assert "actions: " in report
    assert Order.objects.count() > first["orders"]
    assert order_book_problems() == []


def test_simulate_market_needs_a_market():
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate_market", "--orders", "1")


@pytest.mark.parametrize("stopped", ["options", "future"])
def test_seed_demo_at_a_months_end_quotes_only_what_still_trades(monkeypatch, stopped):
    """Next month's future stops trading at the close of this month's last business day, and
    its options two business days before: seeded after those closes, the demo still loads."""
    # given the clock an hour after the close on the day next month's options, or its future,
    # stopped trading
    today = timezone.now().date()
    delivery = calendar.add_months(calendar.month_start(today), 1)
    future_last_trading_day = calendar.future_last_trading_day(delivery)
    last_trading_day = {
        "options": calendar.option_expiry(future_last_trading_day),
        "future": future_last_trading_day,
    }[stopped]
    moment = calendar.close_at(last_trading_day) + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: moment)

    # when the demo is seeded
    call_command("seed_demo", stdout=StringIO())

    # then nothing is refused, and what still trades is quoted
    assert not OrderRejection.objects.exists()
    quoted = set(Order.objects.values_list("instrument__last_trading_day", flat=True))
    assert quoted and min(quoted) > last_trading_day
    assert order_book_problems() == []
