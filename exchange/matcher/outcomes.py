"""Waiting in a web process for external matchers to process an order.

Each matcher batch notifies ``wake.DONE_CHANNEL`` at its commit with the ids of the orders it
wrote. A web process starts, at its first wait, a listening connection and a daemon thread that
reads every notification as it arrives, remembers the ids and wakes the requests waiting for
them; a waiting request so learns that its order was processed within a round trip of the
matcher's commit, without reading the order's row again and again. The thread reads all the
time, not only while a request waits: PostgreSQL keeps every notification until each listening
session has taken it, so a session that stopped reading would hold back the server's whole
notification queue until NOTIFY fails everywhere. After a fork (the thread does not survive
it) or a broken connection the next wait starts both again.

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
# How long the reading thread blocks in one read before looking again (it stops once its
# connection is no longer the listener's).
READ_SECONDS = 1.0


class OutcomeListener:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._connection: psycopg.Connection | None = None
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        # Each id heard, with the number of the last notification that named it (numbered
        # from 1 in the order they arrived): a wait for a command of an order heard before
        # counts only what is heard after it started (``mark``).
        self._done: OrderedDict[int, int] = OrderedDict()
        self._heard = 0

    def listen(self) -> bool:
        """Make sure this process listens; True when it had to start (a notification sent
        before then was missed, so the caller reads the order once)."""
        with self._condition:
            if self._connection is not None and self._pid == os.getpid():
                return False
            # After a fork the parent's connection and thread are not this process's.
            self._connection, self._pid = None, os.getpid()
            self._done.clear()
            listener = side_connection(f"exchange-web-{os.getpid()}")
            try:
                listener.execute(f"LISTEN {DONE_CHANNEL}")
            except psycopg.Error:
                listener.close()
                raise
            self._connection = listener
            self._thread = threading.Thread(
                target=self._read, args=(listener,), name="order-outcomes", daemon=True
            )
            self._thread.start()
            return True

    def mark(self) -> int:
        """The number of the last notification heard: ``wait(..., after=mark())`` counts only
        those heard after this call."""
        with self._condition:
            return self._heard

    def wait(self, order_id: int, deadline: float, after: int = 0) -> bool:
        """Block until the matcher has reported ``order_id`` (in a notification heard after
        ``after``, a ``mark``) or the monotonic ``deadline`` passes; True when it was
        reported. False at once when the listener is down."""
        with self._condition:
            while self._done.get(order_id, 0) <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._connection is None:
                    return False
                self._condition.wait(remaining)
            return True

    def stop(self) -> None:
        """Stop listening: the thread closes the connection after its current read."""
        with self._condition:
            self._connection = None
            thread, self._thread = self._thread, None
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(READ_SECONDS * 2)

    def _read(self, listener: psycopg.Connection) -> None:
        try:
            while self._connection is listener:
                for notification in listener.notifies(timeout=READ_SECONDS):
                    if self._connection is not listener:
                        break
                    ids = [int(text) for text in notification.payload.split(",") if text.isdigit()]
                    with self._condition:
                        self._heard += 1
                        for heard in ids:
                            self._done[heard] = self._heard
                            self._done.move_to_end(heard)
                        while len(self._done) > REMEMBERED_IDS_MAX:
                            self._done.popitem(last=False)
                        self._condition.notify_all()
        except psycopg.Error:
            if self._connection is listener:
                logger.warning("the order outcome listener lost its connection", exc_info=True)
        finally:
            with self._condition:
                if self._connection is listener:
                    self._connection = None
                self._condition.notify_all()
            listener.close()


_listener = OutcomeListener()


def listen() -> None:
    """Make sure this process listens, before committing orders whose outcomes it will await
    together: a notification sent before the listener starts is never received, and
    ``await_processed`` reads only its own order's row after starting one."""
    if connection.vendor != "postgresql":
        return
    try:
        _listener.listen()
    except psycopg.Error:
        logger.warning("cannot listen for order outcomes; polling", exc_info=True)


def await_processed(
    order_id: int, wait_seconds: float, is_new: Callable[[], bool], *, command: bool = False
) -> None:
    """Return once the matcher has processed ``order_id`` or ``wait_seconds`` have passed.

    ``is_new`` reads whether the order still waits for the matcher; it is asked once after the
    listener starts (the outcome may have come first) and, without a listener, every poll.

    ``command``: what is awaited is a command (a replace, a cancel) of an order the matcher
    has written before, so a notification of the order's id does not settle it: one heard
    before the wait started was of an earlier batch (the order's placement, a fill), and one
    heard during it may be too. ``is_new`` (the command's status) is read when the wait starts
    and after each notification of the order, until the command is processed.
    """
    deadline = time.monotonic() + wait_seconds
    if connection.vendor == "postgresql":
        try:
            started = _listener.listen()
        except psycopg.Error:
            logger.warning("cannot listen for order outcomes; polling", exc_info=True)
        else:
            # A new order's id is heard only once the matcher has processed it, before the
            # wait or during it; a command's must be heard after the command's status is read.
            mark = _listener.mark() if command else 0
            if (started or command) and not is_new():
                return
            while _listener.wait(order_id, deadline, after=mark):
                if not command:
                    return
                mark = _listener.mark()
                if not is_new():
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
