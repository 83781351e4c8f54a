"""The loop of one external matcher process (``manage.py run_matcher``)."""

import logging
import signal
import time
from dataclasses import dataclass, field

from django.db import close_old_connections
from django.utils import timezone

from exchange.matcher.lease import shard_lease
from exchange.matcher.runtime import Matcher

logger = logging.getLogger(__name__)


@dataclass
class MatcherLoop:
    shard: int
    shards: int
    # Longest sleep between passes when nothing wakes the matcher: bounds how late a GTD
    # expiry is applied and how long a missed notification can go unnoticed.
    wait_seconds_max: float = 1.0
    # Even when busy with notified instruments, read the whole queue this often, so a command
    # whose notification was lost never waits longer than this.
    scan_interval_seconds: float = 1.0
    matcher: Matcher = field(init=False)
    stopping: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.matcher = Matcher(shard=self.shard, shards=self.shards)

    def stop(self, *_args: object) -> None:
        self.stopping = True

    def run(self, *, seconds_max: float | None = None, passes_max: int | None = None) -> int:
        """Own the shard, rebuild its books, then match until stopped. Returns commands run."""
        lease = shard_lease(self.shard, self.shards)
        lease.acquire()
        total = 0
        try:
            books = self.matcher.rebuild_all()
            logger.info(
                "matcher %s/%s owns its shard; rebuilt %s books", self.shard, self.shards, books
            )
            deadline = time.monotonic() + seconds_max if seconds_max is not None else None
            passes = 0
            woken: set[int] = set()
            scan_due = True
            last_scan = time.monotonic()
            while not self.stopping:
                if scan_due:
                    processed = self.matcher.process_pending()
                    scan_due, last_scan = False, time.monotonic()
                else:
                    now = timezone.now()
                    due = self.matcher.due_expiry_instrument_ids(now)
                    processed = self.matcher.process_instruments(woken | set(due), now=now)
                total += processed
                passes += 1
                if passes_max is not None and passes >= passes_max:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                # Busy: take the wake-ups queued during the pass at once; the commands that
                # arrived meanwhile are the next pass, one transaction for all its instruments,
                # so batches grow with the load by themselves. Idle: sleep until woken.
                woken = lease.wait(0 if processed else self.wait_seconds_max)
                if not processed and not woken:
                    # Nothing arrived in a whole wait: read the queue itself, in case a
                    # notification was missed (the database, not NOTIFY, is the truth).
                    scan_due = True
                    close_old_connections()
                elif time.monotonic() - last_scan >= self.scan_interval_seconds:
                    scan_due = True
        finally:
            lease.release()
        return total

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
