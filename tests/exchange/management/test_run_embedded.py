"""``manage.py run_embedded``: what ``make run`` serves, the development server with Celery
beat's schedule in a thread of the same process, so that what the schedule does reaches the
feed's in-memory channel layer."""

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.utils import timezone

from exchange.feed.messages import organization_group
from exchange.management.commands import run_embedded
from exchange.models import Order
from tests.exchange import support

# Transactional: the schedule's thread reads what the test wrote.
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_schedule_runs_in_the_servers_process_and_its_changes_reach_the_feed(
    settings, monkeypatch, future, buyer
):
    # given an in-memory feed (the embedded mode's), a GTD order about to expire on a book
    # nobody trades, and a schedule that sweeps expired orders
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CELERY_BEAT_SCHEDULE = {
        "expire-good-till-date-orders": {
            "task": "exchange.tasks.orders_expire_due",
            "schedule": 0.1,
        }
    }
    order = support.place(
        buyer,
        future,
        "buy",
        4,
        "2.45",
        time_in_force="gtd",
        expires_at=timezone.now() + timedelta(seconds=0.5),
    )
    layer = get_channel_layer()
    heard: list[dict] = []
    served: dict = {}

    def server(name: str, addrport: str, **options) -> None:
        """The server's part: a feed client of the buyer's organization in this process."""
        served.update(name=name, addrport=addrport, **options)
        served["schedule_alive"] = any(t.name == "schedule" for t in threading.enumerate())
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(organization_group(buyer.organization_id), channel)

        async def expiry_heard() -> None:
            while True:
                event = await layer.receive(channel)
                heard.extend(event["messages"])
                if any(m.get("status") == Order.Status.EXPIRED for m in heard):
                    return

        async_to_sync(_within)(expiry_heard(), 15)

    monkeypatch.setattr(run_embedded, "call_command", server)

    # when make run's command serves
    call_command("run_embedded", "127.0.0.1:8123")

    # then the server ran without a reloader, beside the schedule, and heard the expiry
    assert (served["name"], served["addrport"], served["use_reloader"]) == (
        "runserver",
        "127.0.0.1:8123",
        False,
    )
    assert served["schedule_alive"]
    (expired,) = [m for m in heard if m["type"] == "order" and m["status"] == "expired"]
    assert (expired["id"], expired["done_reason"]) == (order.pk, "expired")
    # and the schedule stopped with the server
    assert not any(t.name == "schedule" for t in threading.enumerate())


async def _within(awaitable, seconds: float) -> None:
    await asyncio.wait_for(awaitable, seconds)


def test_it_is_refused_where_celery_has_a_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False

    with pytest.raises(CommandError, match="celery -A exchange beat"):
        call_command("run_embedded")
