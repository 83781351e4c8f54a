"""Celery beat's schedule, run in one process of the embedded mode (``manage.py run_schedule``).

Production runs ``celery -A exchange beat``, which sends each due task to the broker for the
workers. The embedded mode has no broker and runs Celery eager, so nothing would ever run the
schedule (``CELERY_BEAT_SCHEDULE``): pool cut-offs, GTD expiry on quiet books, expired holds,
listing rolls, the daily settlement after the close, margin-call reviews. This runs beat's own
scheduler (its intervals and crontabs, one task per tick) in one process, each due task run here
as Celery's eager mode runs it. A task that fails is logged, and the schedule goes on.
"""

import logging
import threading
import time
from typing import Any

from celery import beat
from django.conf import settings
from django.db import close_old_connections

from exchange.celery import app

logger = logging.getLogger(__name__)

# Longest sleep between ticks: how late a stop request is noticed.
TICK_SECONDS_MAX = 1.0


class ScheduleNotEmbedded(Exception):
    """Celery has a broker here: its beat runs the schedule, not this."""


class InProcessScheduler(beat.Scheduler):  # type: ignore[misc]  # Celery ships no types.
    """Beat's scheduler with the schedule in memory and each due task run in this process.

    Each due task is applied here, as Celery's eager mode applies it: no broker, no producer.
    """

    producer = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ran = 0
        self.failed = 0
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        # The settings as they are now (beat's ``app.conf`` keeps what it read first).
        self.merge_inplace(settings.CELERY_BEAT_SCHEDULE)

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        task = self.app.tasks.get(entry.task)
        if task is None:
            self.failed += 1
            logger.error("%s: no task %s", entry.name, entry.task)
            return
        close_old_connections()  # After a long sleep the connection may be gone.
        started = time.monotonic()
        try:
            value = task.apply(entry.args, entry.kwargs, throw=True).get()
        except Exception as error:  # Rolled back, and logged with its traceback by Celery.
            self.failed += 1
            logger.error("%s (%s) failed: %r; the schedule goes on", entry.name, entry.task, error)
            return
        self.ran += 1
        # A task that found nothing to do (every second, most of the time) is not news.
        did = any(value.values()) if isinstance(value, dict) else bool(value)
        logger.log(
            logging.INFO if did else logging.DEBUG,
            "%s ran in %.3f s: %r",
            entry.name,
            time.monotonic() - started,
            value,
        )


def check_embedded() -> None:
    """Raise ``ScheduleNotEmbedded`` where Celery has a broker (production runs beat)."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        raise ScheduleNotEmbedded(
            "Celery has a broker here (CELERY_BROKER_URL): run `celery -A exchange beat` and "
            "workers instead, or every task would run twice."
        )


def schedule_run(*, stop: threading.Event, seconds_max: float | None = None) -> InProcessScheduler:
    """Run the schedule until ``stop`` is set (or ``seconds_max`` has passed); return the
    scheduler, which counts the tasks run and failed. Raises ``ScheduleNotEmbedded`` where
    Celery has a broker."""
    check_embedded()
    app.autodiscover_tasks(force=True)  # Registers the installed apps' tasks now.
    scheduler = InProcessScheduler(app, max_interval=TICK_SECONDS_MAX)
    deadline = time.monotonic() + seconds_max if seconds_max is not None else None
    while not stop.is_set():
        wait = scheduler.tick()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait = min(wait, left)
        if wait > 0:
            stop.wait(wait)
    return scheduler
