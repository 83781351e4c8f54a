"""Shard leases: the guarantee that two matcher processes never own the same shard.

On PostgreSQL a lease is a session advisory lock held on a dedicated connection, which also
LISTENs for the wake-ups that accepting transactions send at commit. If that connection breaks,
PostgreSQL releases the lock; the matcher notices on its next wait and stops, rather than go on
matching without owning its shard. On SQLite (the embedded mode, one machine) a lease is an
exclusive ``flock`` on a file under ``var/``, and waiting is plain polling.
"""

import fcntl
import os
import time
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection

from exchange.matcher.wake import NOTIFY_CHANNEL, side_connection

# The first key of every matcher shard lock ("GPUX"); the second is the shard number.
ADVISORY_LOCK_CLASS = 0x47505558
# Every matcher also holds a shared lock on (this, its shard count): matchers that disagree on
# the shard count would own overlapping instruments, so a matcher refuses to start beside one.
ADVISORY_LOCK_SHARD_COUNT_CLASS = 0x47505559
NOTIFICATIONS_PER_WAIT_MAX = 1000


class ShardTaken(Exception):
    pass


class ShardCountMismatch(Exception):
    pass


class LeaseLost(Exception):
    pass


class PostgresShardLease:
    def __init__(self, shard: int, shards: int) -> None:
        self.shard = shard
        self.shards = shards
        self._connection: psycopg.Connection | None = None

    def acquire(self) -> None:
        self._connection = side_connection(f"exchange-matcher-{self.shard}-of-{self.shards}")
        self._connection.execute(
            "SELECT pg_advisory_lock_shared(%s, %s)", [ADVISORY_LOCK_SHARD_COUNT_CLASS, self.shards]
        )
        counts_in_use = {
            row[0]
            for row in self._connection.execute(
                # Advisory locks are per database: another database's matchers (a staging
                # exchange on the same server) are not this exchange's.
                "SELECT objid FROM pg_locks"
                " WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [ADVISORY_LOCK_SHARD_COUNT_CLASS],
            )
        }
        if counts_in_use != {self.shards}:
            self.release()
            raise ShardCountMismatch(
                f"other matchers run with --shards {sorted(counts_in_use - {self.shards})}"
            )
        acquired = self._connection.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_CLASS, self.shard]
        ).fetchone()
        if not acquired or not acquired[0]:
            self.release()
            raise ShardTaken(f"shard {self.shard} is owned by another matcher")
        self._connection.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout_seconds: float) -> set[int]:
        """Wait for wake-ups; return the instrument ids named in them."""
        assert self._connection is not None
        instrument_ids: set[int] = set()
        try:
            # Block until the first wake-up (or the timeout), then take whatever else is already
            # queued without waiting: the matcher must act as soon as anything arrives.
            first = list(self._connection.notifies(timeout=timeout_seconds, stop_after=1))
            queued = (
                self._connection.notifies(timeout=0, stop_after=NOTIFICATIONS_PER_WAIT_MAX)
                if first
                else []
            )
            for notification in [*first, *queued]:
                if notification.payload.isdigit():
                    instrument_ids.add(int(notification.payload))
            if not first:
                # Idle: a cheap round trip proves the session, and so the lock, is still ours.
                self._connection.execute("SELECT 1")
        except psycopg.OperationalError as error:
            raise LeaseLost(f"lost the connection holding shard {self.shard}") from error
        return instrument_ids

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class FileShardLease:
    POLL_INTERVAL_SECONDS = 0.2

    def __init__(self, shard: int, shards: int) -> None:
        self.shard = shard
        self.shards = shards
        self.path = Path(settings.VAR_DIR) / f"matcher-shard-{shard}.lock"
        self._descriptor: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            os.close(descriptor)
            raise ShardTaken(f"shard {self.shard} is owned by another matcher") from error
        self._descriptor = descriptor

    def wait(self, timeout_seconds: float) -> set[int]:
        time.sleep(min(timeout_seconds, self.POLL_INTERVAL_SECONDS))
        return set()

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def shard_lease(shard: int, shards: int) -> PostgresShardLease | FileShardLease:
    if connection.vendor == "postgresql":
        return PostgresShardLease(shard, shards)
    return FileShardLease(shard, shards)
