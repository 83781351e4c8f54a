"""The loop of one external matcher process (``manage.py run_matcher``)."""

import logging
import signal
import time
from dataclasses import dataclass, field

from django.db import close_old_connections

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
            while not self.stopping:
                processed = self.matcher.process_pending()
                total += processed
                passes += 1
                if passes_max is not None and passes >= passes_max:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if processed == 0:
                    lease.wait(self.wait_seconds_max)
                    close_old_connections()
        finally:
            lease.release()
        return total

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
