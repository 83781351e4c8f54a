"""Waking the matcher after a command commits.

- inline mode: run the in-process matcher for the instrument right after the commit;
- external mode: a trigger on the command table (migration ``0002``) runs ``pg_notify`` for
  every inserted command. PostgreSQL delivers a notification only at commit, so a matcher never
  wakes for a command it cannot see yet, and no writer of commands can forget to wake it.
"""

from django.conf import settings

from exchange.models import Order

NOTIFY_CHANNEL = "exchange_matcher"


def after_commit(instrument_id: int, order_id: int) -> Order | None:
    """Call after a command's transaction has committed.

    Returns the order as the inline matcher left it, or None when it was not matched here (the
    external mode, or another process matched it first).
    """
    if settings.EXCHANGE_MATCHER_MODE != "inline":
        return None
    from exchange.matcher import inline

    return inline.process_for_order(instrument_id, order_id)
