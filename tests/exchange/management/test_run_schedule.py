"""``manage.py run_schedule``: Celery beat's schedule run in the embedded mode's own process."""

import logging
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from exchange.models import Order
from tests.exchange import support

# Transactional: the scheduler closes stale connections between tasks, as a long-lived process
# must, which would end a test wrapped in one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

EVERY = 0.1  # Seconds between runs of each task in these schedules.


def test_due_tasks_run_here_and_a_failing_one_does_not_stop_the_others(
    settings, future, buyer, caplog, capsys
):
    # given a GTD order that expires on a book nobody trades, and a schedule that also holds
    # a task that fails every time
    settings.CELERY_BEAT_SCHEDULE = {
        "settle-a-day-that-is-not-one": {
            "task": "exchange.tasks.risk_daily_settlement",
            "schedule": EVERY,
            "args": ("not-a-date",),
        },
        "expire-good-till-date-orders": {
            "task": "exchange.tasks.orders_expire_due",
            "schedule": EVERY,
        },
    }
    expires_at = timezone.now() + timedelta(seconds=0.5)
    order = support.place(
        buyer, future, "buy", 4, "2.45", time_in_force="gtd", expires_at=expires_at
    )
    assert order.status == Order.Status.OPEN
    time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)
    assert Order.objects.get(pk=order.pk).status == Order.Status.OPEN  # Nobody swept it yet.

    # when the schedule runs for a moment
    with caplog.at_level(logging.ERROR, logger="exchange.schedule"):
        call_command("run_schedule", "--seconds", str(6 * EVERY))

    # then the sweep expired the order, and the failing task was logged each time it ran
    assert Order.objects.get(pk=order.pk).status == Order.Status.EXPIRED
    failures = [r for r in caplog.records if r.name == "exchange.schedule"]
    assert failures and all("settle-a-day-that-is-not-one" in r.getMessage() for r in failures)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    ran, failed = (int(word) for word in summary.split() if word.isdigit())
    assert ran >= 1 and failed == len(failures) >= 1


def test_an_unknown_task_is_logged_and_the_schedule_goes_on(settings, caplog, capsys):
    settings.CELERY_BEAT_SCHEDULE = {
        "renamed": {"task": "exchange.tasks.no_such_task", "schedule": EVERY},
        "holds": {"task": "exchange.tasks.ledger_holds_expire", "schedule": EVERY},
    }

    call_command("run_schedule", "--seconds", str(4 * EVERY))

    assert "renamed: no task exchange.tasks.no_such_task" in caplog.text
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    ran, failed = (int(word) for word in summary.split() if word.isdigit())
    assert ran >= 1 and failed >= 1


def test_it_refuses_to_run_where_celery_has_a_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False

    with pytest.raises(CommandError, match="celery -A exchange beat"):
        call_command("run_schedule", "--seconds", "0.1")


# (Not nan, refused by the same test: before the check it ran until stopped, so it would hang.)
@pytest.mark.parametrize("seconds", ["-1", "-0.5"])
def test_a_run_time_out_of_range_is_refused_before_any_task_runs(seconds, caplog):
    caplog.set_level(logging.INFO)

    with pytest.raises(CommandError) as raised:
        call_command("run_schedule", "--seconds", seconds)

    assert str(raised.value) == f"--seconds must be 0 or more, not {float(seconds)}."
    assert "exchange.tasks" not in caplog.text
