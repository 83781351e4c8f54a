"""What a process read lately, trusted for a few seconds.

The order path reads the same few rows for every order: the caller's API key, its main trading
account with the margin-call flag, the instrument by symbol. Each read is a statement and a
round trip, for rows that change a few times a day. A ``Recent`` keeps what one process read
for the number of seconds a setting gives (read at every use, so tests and operators can
change it; 0 turns keeping off):

- a change made by this process is seen at once: the services that make one call ``forget``
  (``forget_all`` for rare changes that touch many rows, such as a margin call or a halt);
- another process's change is seen within that many seconds. The matcher re-checks what must
  hold exactly (the instrument's status and expiry, under its row lock), and the ledger checks
  every amount held, so a stale row can at most let an order through acceptance that the
  matcher then rejects.

Nothing missing is kept: an unknown key is read again at its next use. Kept values are shared
by the process's threads and must be treated as read-only.
"""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings
from django.db import transaction

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_registry: list["Recent"] = []  # type: ignore[type-arg]
_registry_lock = threading.Lock()


class Recent(Generic[K, V]):
    """Values by key, each trusted for ``settings.<setting>`` seconds after it was read."""

    def __init__(self, setting: str, *, size_max: int = 10_000) -> None:
        self.setting = setting
        self.size_max = size_max
        self._kept: dict[K, tuple[V, float]] = {}
        with _registry_lock:
            _registry.append(self)

    def get(self, key: K, read: Callable[[], V | None]) -> V | None:
        """The value kept for ``key`` if read recently enough, else ``read()`` (kept unless
        it is None)."""
        seconds = float(getattr(settings, self.setting))
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and now - kept[1] < seconds:
            return kept[0]
        value = read()
        if value is not None and seconds > 0:
            if len(self._kept) >= self.size_max:
                self._kept.clear()
            self._kept[key] = (value, now)
        return value

    def forget(self, key: K | None = None) -> None:
        """Read ``key`` (or, without one, every key) afresh at its next use in this process."""
        if key is None:
            self._kept.clear()
        else:
            self._kept.pop(key, None)


def forget_all() -> None:
    """Every process-local copy is read afresh at its next use."""
    with _registry_lock:
        kept = list(_registry)
    for recent in kept:
        recent.forget()


def changed(**_signal: object) -> None:
    """This process changed rows that may be kept (an instrument, a trading account, a margin
    call): forget everything now, and again when the transaction commits, since a read in
    between would keep the row as it was before the commit. Also a signal receiver."""
    forget_all()
    transaction.on_commit(forget_all)
