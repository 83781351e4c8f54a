"""Waking the matcher after a command commits.

- inline mode: run the in-process matcher for the instrument right after the commit;
- external mode: ``pg_notify`` inside the accepting transaction; PostgreSQL delivers it only at
  commit, so a matcher never wakes for a command it cannot yet see.
"""

from django.conf import settings
from django.db import connection

NOTIFY_CHANNEL = "exchange_matcher"


def notify(instrument_id: int) -> None:
    """Call inside the transaction that commits the command."""
    if settings.EXCHANGE_MATCHER_MODE == "external" and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(instrument_id)])


def after_commit(instrument_id: int) -> None:
    """Call after the command's transaction has committed."""
    if settings.EXCHANGE_MATCHER_MODE == "inline":
        from exchange.matcher import inline

        inline.process_instrument(instrument_id)
