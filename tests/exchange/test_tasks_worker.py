"""Celery as production runs it: a real broker (a Redis server of the test's own), a real
``celery -A exchange worker`` process on the test's database, and a task sent to it by name,
as beat sends its schedule. The other task tests run the tasks eagerly (the embedded mode)."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection
from django.utils import timezone

from exchange.models import CancelAllTimer, Order
from exchange.services.cancel_after import cancel_all_after_set
from tests.exchange.support import place

# The worker is another process: it reads what the test committed.
pytestmark = pytest.mark.django_db(transaction=True)

RESULT_WAIT_SECONDS = 60  # The worker's start-up on a busy machine included.


def database_url() -> str:
    """The test database as a ``DATABASE_URL`` for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(redis_url):
    """A Celery worker process with production's settings but the test's database; the
    broker's URL, which also keeps the results."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "exchange", "worker"),
            *("--pool", "solo", "--loglevel", "warning"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=settings.BASE_DIR,
        env=environment,
    )
    try:
        yield redis_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_worker_runs_a_task_beat_sends_through_the_broker(worker, futures, buyer, seller):
    # given a switch past its time, with orders on two books
    mine = [
        place(buyer, futures[0], "buy", 1, "2.400"),
        place(buyer, futures[1], "sell", 1, "2.700"),
    ]
    theirs = place(seller, futures[0], "sell", 1, "2.800")
    armed_at = timezone.now() - timedelta(seconds=6)
    # Placed before the switch's time: it cancels the orders live then, not later ones.
    Order.objects.filter(pk__in=[order.pk for order in mine]).update(created_at=armed_at)
    cancel_all_after_set(account=buyer, timeout_seconds=5, now=armed_at)

    # when beat's entry is sent by name, as beat sends it, and the worker runs it
    sender = Celery("sender", broker=worker, backend=worker, set_as_current=False)
    entry = settings.CELERY_BEAT_SCHEDULE["fire-cancel-all-after-switches"]
    fired = sender.send_task(entry["task"]).get(timeout=RESULT_WAIT_SECONDS)

    # then the worker's process cancelled the buyer's orders in the database
    assert fired == 1
    assert {Order.objects.get(pk=order.pk).status for order in mine} == {"cancelled"}
    assert Order.objects.get(pk=theirs.pk).status == Order.Status.OPEN
    assert not CancelAllTimer.objects.exists()


def test_a_worker_emails_a_notice_whose_task_was_lost(worker, buyer):
    """The sweep beat sends every 10 minutes, run by a real worker: a notice its own task never
    emailed (the broker down at its commit) is emailed by the worker's mail backend (files
    under its var directory, as without EMAIL_HOST) and marked."""
    from exchange.models import Notice
    from exchange.services.notices import notice_send
    from exchange.services.participants import member_add

    member_add(
        organization=buyer.organization,
        username="ana",
        email="ana@lumen.example",
        password="gpu-hours-by-the-month",
    )
    notice = notice_send(
        account=buyer, kind=Notice.Kind.MARGIN_CALL, key="lost", subject="Margin call", message="M"
    )
    Notice.objects.filter(pk=notice.pk).update(
        created_at=timezone.now() - timedelta(minutes=6), emailed_at=None
    )

    sender = Celery("sender", broker=worker, backend=worker, set_as_current=False)
    entry = settings.CELERY_BEAT_SCHEDULE["email-unsent-notices"]
    emailed = sender.send_task(entry["task"]).get(timeout=RESULT_WAIT_SECONDS)

    assert emailed == 1
    notice.refresh_from_db()
    assert notice.emailed_at is not None and notice.email_recipients == 1
    mail = Path(os.environ.get("EXCHANGE_VAR_DIR", settings.BASE_DIR / "var")) / "mail"
    written = [path.read_text() for path in mail.glob("*.log")]
    assert any("To: ana@lumen.example" in text and "Margin call" in text for text in written)
