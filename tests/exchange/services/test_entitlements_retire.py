"""Once a month has ended, what its holders still have of its GPU-hours is retired: taken back
to the issuance account, so balances and pages stop showing hours that can no longer be used,
delivered or resold."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from exchange import calendar
from exchange.selectors.entitlements import entitlements_of
from exchange.services.capacity import entitlements_retire
from exchange.services.ledger_accounts import entitlement_code
from exchange.services.orders import order_cancel
from exchange.tasks import entitlements_retire_ended
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from ledger.selectors import ledger_problems
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def months_held(account) -> dict:
    return {
        holding.month: (holding.gpu_hours, holding.on_hold) for holding in entitlements_of(account)
    }


def moment(day) -> datetime:
    return datetime.combine(day, time(9), tzinfo=UTC)


def test_a_months_gpu_hours_are_retired_once_it_has_ended(listing, seller, monkeypatch):
    # given the seller's listed block of 16 GPUs over two months, 8 of them offered for sale
    reservation = listing.reservation
    first = calendar.month_start(reservation.starts_at.date())
    second = calendar.add_months(first, 1)
    place(seller, listing, "sell", 8, "2.30")
    before = months_held(seller)
    assert set(before) == {first, second}
    code = entitlement_code(reservation.sku.code, reservation.region.code, first)
    issued = LedgerAccount.objects.get(code=f"exchange:gpuh-issued:{code}")

    # when the first month has ended (the second has begun)
    monkeypatch.setattr(timezone, "now", lambda: moment(second + timedelta(days=1)))
    retired = entitlements_retire()

    # then what was not held of the first month is retired; the part the sell still holds
    # stays, with the second month, and the ledger still balances
    gpu_hours, on_hold = before[first]
    assert [(r.commodity, r.gpu_hours, r.accounts) for r in retired] == [
        (code, gpu_hours - on_hold, 1)
    ]
    assert months_held(seller) == {first: (on_hold, on_hold), second: before[second]}
    issued.refresh_from_db()
    assert issued.balance == -on_hold
    entry = Entry.objects.get(idempotency_key=f"gpuh-retire:{code}:{gpu_hours - on_hold}")
    assert "the month has ended" in entry.description
    assert ledger_problems() == []
    # and a second run the same day posts nothing
    assert entitlements_retire() == []

    # when the sell is cancelled, the next run retires what it held
    order_cancel(order=listing.orders.get())
    assert [r.gpu_hours for r in entitlements_retire()] == [on_hold]
    assert months_held(seller) == {second: (before[second][0], 0)}
    assert ledger_problems() == []


def test_nothing_of_the_current_or_a_later_month_is_retired(listing, seller, monkeypatch):
    before = months_held(seller)
    first = min(before)
    monkeypatch.setattr(timezone, "now", lambda: moment(first + timedelta(days=3)))

    assert entitlements_retire() == []
    assert months_held(seller) == before


def test_a_day_after_today_is_refused(db):
    with pytest.raises(ValueError, match="has not begun"):
        entitlements_retire(today=timezone.now().date() + timedelta(days=1))


def test_the_scheduled_task_retires_and_reports_the_gpu_hours(listing, seller, monkeypatch):
    months = sorted(months_held(seller))
    after = calendar.add_months(months[-1], 1)
    monkeypatch.setattr(timezone, "now", lambda: moment(after))

    report = entitlements_retire_ended.apply().get()

    assert sum(report.values()) == 16 * listing.gpu_hours_per_contract
    assert months_held(seller) == {}


def test_beat_runs_the_retirement_daily(settings):
    from exchange.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["retire-ended-months-gpu-hours"]

    assert entry["task"] in app.tasks
    assert entry["task"] == entitlements_retire_ended.name
