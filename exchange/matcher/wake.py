"""Waking the matcher after a command commits, and the waiting worker after the matcher.

- inline mode: run the in-process matcher for the instrument right after the commit;
- external mode: a trigger on the command table (migration ``0002``) runs ``pg_notify`` for
  every inserted command. PostgreSQL delivers a notification only at commit, so a matcher never
  wakes for a command it cannot see yet, and no writer of commands can forget to wake it.
  The matcher in turn notifies ``DONE_CHANNEL`` in each batch's transaction with the ids of the
  orders the batch wrote, so a web process waiting for an order's outcome learns of it at the
  batch's commit (``exchange.matcher.outcomes``) instead of polling the order's row.
"""

import psycopg
from django.conf import settings

from exchange.models import Order

NOTIFY_CHANNEL = "exchange_matcher"
DONE_CHANNEL = "exchange_orders_done"
# PostgreSQL refuses a notification payload of 8000 bytes or more.
PAYLOAD_BYTES_MAX = 7900


def after_commit(instrument_id: int, order_id: int) -> Order | None:
    """Call after a command's transaction has committed.

    Returns the order as the inline matcher left it, or None when it was not matched here (the
    external mode, or another process matched it first).
    """
    if settings.EXCHANGE_MATCHER_MODE != "inline":
        return None
    from exchange.matcher import inline

    return inline.process_for_order(instrument_id, order_id)


def done_payloads(order_ids: list[int]) -> list[str]:
    """The ids as comma-separated payloads, each under PostgreSQL's size limit."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for order_id in order_ids:
        text = str(order_id)
        if current and size + len(text) + 1 > PAYLOAD_BYTES_MAX:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(text)
        size += len(text) + 1
    if current:
        payloads.append(",".join(current))
    return payloads


def side_connection(application_name: str) -> psycopg.Connection:
    """An autocommit connection of its own to the default database, for LISTEN and leases:
    outside Django's connection handling, so no transaction or request ever closes it."""
    database = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=database["NAME"],
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        autocommit=True,
        application_name=application_name,
    )
