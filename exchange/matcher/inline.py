"""The inline matcher of the embedded mode: one per process, run right after a command commits.

A process lock guards the in-memory engine (it is not thread-safe); the instrument row lock
taken inside every matching transaction serializes processes. The Python lock is always taken
before any database lock, so the two can never wait on each other in a cycle.
"""

import copy
import threading

from exchange.matcher.runtime import Matcher
from exchange.models import Order

_lock = threading.Lock()
_matcher = Matcher()


def process_instrument(instrument_id: int) -> int:
    with _lock:
        return _matcher.process_instrument(instrument_id)


def process_for_order(instrument_id: int, order_id: int) -> Order | None:
    """Run the instrument's pending commands; return ``order_id`` as the matcher wrote it."""
    with _lock:
        _matcher.process_instrument(instrument_id)
        order = _matcher.last_orders.get(order_id)
        # A copy: the matcher keeps resting orders in memory, and the caller's object must not
        # change under it (nor the matcher's under the caller).
        return copy.copy(order) if order is not None else None


def process_pending() -> int:
    with _lock:
        return _matcher.process_pending()


def reset() -> None:
    """Forget every in-memory book (tests call this between cases)."""
    with _lock:
        _matcher.reset()
