"""Waiting in a web process for external matchers to process an order.

Each matcher batch notifies ``wake.DONE_CHANNEL`` at its commit with the ids of the orders it
wrote. A web process keeps one listening connection (opened at its first wait, reopened after a
fork or a broken connection) and remembers the ids it has heard of, so a waiting request learns
that its order was processed within a round trip of the matcher's commit, without reading the
order's row again and again. Threads of one process share the connection: one reads the
notifications at a time and wakes the others.

Without PostgreSQL (SQLite external matchers), or when the connection cannot be opened, waiting
falls back to polling the order's status.
"""

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import psycopg
from django.db import connection

from exchange.matcher.wake import DONE_CHANNEL, side_connection

logger = logging.getLogger(__name__)

# Ids remembered after their notification arrived: far more than the orders a process can be
# waiting for at once, few enough to cost nothing.
REMEMBERED_IDS_MAX = 100_000
NOTIFICATIONS_PER_READ_MAX = 1000


class OutcomeListener:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._connection: psycopg.Connection | None = None
        self._pid: int | None = None
        self._reading = False
        self._done: OrderedDict[int, None] = OrderedDict()

    def listen(self) -> bool:
        """Make sure this process listens; True when it had to start (a notification sent
        before then was missed, so the caller reads the order once)."""
        with self._condition:
            if self._connection is not None and self._pid == os.getpid():
                return False
            # After a fork the parent's connection is not ours to use or close.
            self._connection, self._pid = None, os.getpid()
            self._done.clear()
            listener = side_connection(f"exchange-web-{os.getpid()}")
            listener.execute(f"LISTEN {DONE_CHANNEL}")
            self._connection = listener
            return True

    def wait(self, order_id: int, deadline: float) -> bool:
        """Block until the matcher has reported ``order_id`` or the monotonic ``deadline``
        passes; True when it was reported."""
        while True:
            with self._condition:
                if order_id in self._done:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._connection is None:
                    return False
                if self._reading:
                    self._condition.wait(remaining)
                    continue
                self._reading = True
                listener = self._connection
            heard: list[int] = []
            try:
                heard = self._read(listener, remaining)
            except psycopg.Error:
                logger.warning("the order outcome listener lost its connection", exc_info=True)
                with self._condition:
                    self._connection = None
                listener.close()
            finally:
                with self._condition:
                    for heard_id in heard:
                        self._done[heard_id] = None
                    while len(self._done) > REMEMBERED_IDS_MAX:
                        self._done.popitem(last=False)
                    self._reading = False
                    self._condition.notify_all()

    @staticmethod
    def _read(listener: psycopg.Connection, timeout: float) -> list[int]:
        """The ids of the first notification to arrive within ``timeout``, and of any queued."""
        first = list(listener.notifies(timeout=timeout, stop_after=1))
        if not first:
            return []
        queued = list(listener.notifies(timeout=0, stop_after=NOTIFICATIONS_PER_READ_MAX))
        return [
            int(text)
            for notification in first + queued
            for text in notification.payload.split(",")
            if text.isdigit()
        ]


_listener = OutcomeListener()


def await_processed(order_id: int, wait_seconds: float, is_new: Callable[[], bool]) -> None:
    """Return once the matcher has processed ``order_id`` or ``wait_seconds`` have passed.

    ``is_new`` reads whether the order still waits for the matcher; it is asked once after the
    listener starts (the outcome may have come first) and, without a listener, every poll.
    """
    deadline = time.monotonic() + wait_seconds
    if connection.vendor == "postgresql":
        try:
            started = _listener.listen()
        except psycopg.Error:
            logger.warning("cannot listen for order outcomes; polling", exc_info=True)
        else:
            if started and not is_new():
                return
            if _listener.wait(order_id, deadline):
                return
            if time.monotonic() >= deadline:
                return
    _poll(deadline, is_new)


def _poll(deadline: float, is_new: Callable[[], bool]) -> None:
    """Read the order's status, backing off from 1 ms to 20 ms, until it is processed."""
    pause = 0.001
    while time.monotonic() < deadline:
        time.sleep(pause)
        if not is_new():
            return
        pause = min(pause * 2, 0.02)
