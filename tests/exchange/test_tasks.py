"""Celery tasks, run eagerly as in the embedded mode."""

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange import calendar, tasks
from exchange.matcher import inline
from exchange.models import Instrument, Order
from exchange.services.listing import futures_list_strip
from exchange.services.orders import order_place

pytestmark = pytest.mark.django_db


def test_orders_expire_due_expires_gtd_orders_past_their_expiry(future, buyer):
    # given two resting GTD bids; one's expiry is then moved into the past
    expires_at = timezone.now() + timedelta(hours=1)
    due = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.45"),
        quantity=3,
        time_in_force="gtd",
        expires_at=expires_at,
    )
    not_due = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.40"),
        quantity=3,
        time_in_force="gtd",
        expires_at=expires_at,
    )
    Order.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    inline.reset()  # The matcher's memory follows the database.

    # when
    result = tasks.orders_expire_due.delay()

    # then
    assert result.get() == 0  # No command ran; only the expiry.
    assert Order.objects.get(pk=due.pk).status == Order.Status.EXPIRED
    assert Order.objects.get(pk=not_due.pk).status == Order.Status.OPEN
    assert [resting.order_id for resting in inline._matcher.engine.book(future.pk).orders()] == [
        not_due.pk
    ]


def test_orders_expire_due_leaves_external_matchers_alone(future, buyer, settings):
    order = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.45"),
        quantity=3,
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    settings.EXCHANGE_MATCHER_MODE = "external"

    assert tasks.orders_expire_due.delay().get() == 0
    assert Order.objects.get(pk=order.pk).status == Order.Status.OPEN


def test_instruments_list_upcoming_fills_in_missing_months(sku, region):
    # given a pair with only one month listed, half a year out (and no prices, so no options)
    next_month = calendar.add_months(calendar.month_start(timezone.now().date()), 1)
    futures_list_strip(
        sku=sku, region=region, first_month=calendar.add_months(next_month, 5), months=1
    )

    # when
    listed = tasks.instruments_list_upcoming.delay().get()

    # then the strip is twelve months deep from next month on; the task counts the new ones
    assert listed == 11
    starts = sorted(Instrument.objects.values_list("delivery_start", flat=True))
    assert starts == [calendar.add_months(next_month, index) for index in range(12)]
    assert tasks.instruments_list_upcoming.delay().get() == 0
    assert Instrument.objects.count() == 12


def test_instruments_list_upcoming_without_listings_lists_nothing(sku, region):
    assert tasks.instruments_list_upcoming.delay().get() == 0
    assert not Instrument.objects.exists()


def test_ledger_holds_expire_releases_holds_past_their_expiry(buyer):
    # given a funded cash account with a hold that expired a second ago
    from exchange.services.ledger_accounts import cash_account, test_funds_account
    from ledger.models import Hold
    from ledger.services import entry_post, hold_create

    cash = cash_account(buyer)
    entry_post(key="fund", description="fund", postings=[(test_funds_account(), 500), (cash, -500)])
    cash.refresh_from_db()
    available = cash.available
    hold = hold_create(
        key="expiring",
        account=cash,
        side=Hold.Side.DEBIT,
        amount=200,
        description="order collateral",
        expires_at=timezone.now() - timedelta(seconds=1),
    )

    # when the beat task runs (eagerly here)
    expired = tasks.ledger_holds_expire.delay().get()

    # then the hold is released and the money available again
    hold.refresh_from_db()
    cash.refresh_from_db()
    assert (expired, hold.status, cash.available) == (1, Hold.Status.EXPIRED, available)


def test_the_gtd_sweep_is_as_prompt_as_an_external_matcher(settings):
    """Embedded, nobody trading a book: its expired GTD orders end within the second an
    external matcher allows itself, not half a minute later."""
    from exchange.matcher.process import MatcherLoop

    sweep = settings.CELERY_BEAT_SCHEDULE["expire-good-till-date-orders"]
    assert sweep["task"] == "exchange.tasks.orders_expire_due"
    assert sweep["schedule"] <= MatcherLoop.wait_seconds_max


def test_beat_sends_external_matchers_no_gtd_sweep():
    """External matchers expire GTD orders in their own loop: beat would only send them a
    no-op task every second (86,400 a day through the broker)."""
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(sorted(settings.CELERY_BEAT_SCHEDULE))"
    )
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "exchange.settings",
        "EXCHANGE_MATCHER_MODE": "external",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",  # Read, never connected to.
    }
    shown = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout

    assert "fire-cancel-all-after-switches" in shown
    assert "expire-good-till-date-orders" not in shown
