"""Publishing what one matcher batch changed to the push feed, once the batch has committed.

The matcher calls ``batch_committed`` right after a batch's transaction. It builds the messages
from the objects in memory, as they were written, then sends them through ``on_commit``: at once
when no outer transaction is open (the matcher's own case), on the outer commit otherwise, never
on a rollback. A failing feed is logged and never reaches matching.

Cost per batch: one event per group that has something (trades and the book to the instrument's
group, fills and order changes to each organization's), and one query for accounts whose
organization is not yet remembered. The book update is read from the matcher's in-memory book,
not the database: right after the batch it is exactly the committed book at the batch's
sequence (every batch first expires the GTD orders due), in ten levels' work instead of an
aggregate over every resting order. With the in-memory layer the groups are known, so a batch
nobody listens to costs a dictionary lookup.

Which loop sends:

- the in-memory layer (embedded mode, one process) keeps its queues in the event loop of the
  consumers. ``async_to_sync`` runs the send in that loop when the matcher runs in one of its
  server's threads: the inline matcher runs inside ``order_place``, in the request's thread
  that Daphne's Django handler drives with ``sync_to_async``. From any other thread (a command,
  an eager Celery task) it runs in a fresh loop; the consumer's queue still gets the message,
  but its loop may notice only when it next wakes (Daphne's own timers wake it every second);
- any other layer (Redis, production) is sent to by the process's ``Sender``: one thread with
  one long-lived loop (so one connection pool, not one per batch) that the matcher hands each
  batch to without waiting. It sends them one at a time, so listeners get the batches in
  sequence order; a send is given up after ``PUBLISH_TIMEOUT_SECONDS``. With the project's
  Redis layer (``exchange.feed.layers``) a batch's groups cost one round trip, and one more
  when some group has listeners, instead of two to four per group.

Every event a process sends to a group is numbered: ``source`` names the process (a matcher,
or the embedded server), ``sequence`` counts its events to that group, from 1 with no gap. A
channel layer drops what a listener's channel cannot hold (a connection that fell behind), and
a sender drops what it cannot send (Redis down, its queue full: those numbers are spent all the
same), so a consumer seeing a number skipped knows it lost batches and tells its client
(``exchange.feed.consumers``).
"""

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from exchange.feed.layers import RedisChannelLayer
from exchange.feed.messages import (
    BOOK_LEVELS,
    Message,
    api_key_group,
    book_message,
    fill_message,
    instrument_group,
    notice_message,
    order_message,
    organization_group,
    replace_rejected_message,
    trade_message,
)
from exchange.feed.selectors import account_organizations
from exchange.models import Instrument, Notice, Order, OrderCommand
from exchange.selectors.market import Level
from exchange.selectors.orders import fill_of_trade
from exchange.units import lots_to_quantity, ticks_to_price

if TYPE_CHECKING:
    import matching
    from exchange.matcher.events import EventApplier

logger = logging.getLogger(__name__)

# The event type consumers handle (``FeedConsumer.feed_batch``).
EVENT_TYPE = "feed.batch"
# Longest a send to a network layer may take before the batch is given up.
PUBLISH_TIMEOUT_SECONDS = 2.0
# The event telling a key's private connections it was revoked (``OrdersFeed.feed_key_revoked``).
KEY_REVOKED_EVENT_TYPE = "feed.key_revoked"


@dataclass(frozen=True)
class BatchFeed:
    """What one batch publishes, captured as written."""

    instrument: Instrument
    public: list[Message]  # Trades, then the book if the batch changed it.
    private: list[tuple[int, Message]]  # (account id, fill or order message), in order.


def batch_committed(applier: "EventApplier", book: "matching.OrderBook") -> None:
    """Publish the batch ``applier`` wrote, ``book`` being the engine's book it left. Call right
    after the batch's atomic block; never raises."""
    try:
        if not applier.dirty_orders and not any(_is_refused_replace(c) for c in applier.commands):
            return  # A batch that changed no order changed no book and made no trade.
        layer = get_channel_layer()
        if layer is None or not _may_be_heard(layer):
            return
        feed = _capture(
            applier, book, with_public=_heard(layer, instrument_group(applier.instrument.pk))
        )
        transaction.on_commit(partial(_publish, layer, feed))
    except Exception:
        logger.exception("feed: capturing a batch of instrument #%s failed", applier.instrument.pk)


def key_revoked(key_id: int) -> None:
    """Tell the private channel's connections subscribed with the key that it was revoked, so
    they close; call at the revocation's commit. Never raises: a connection that misses this
    finds the key revoked when it next reads it (``EXCHANGE_FEED_KEY_CHECK_SECONDS``)."""
    try:
        layer = get_channel_layer()
        group = api_key_group(key_id)
        if layer is None or not _heard(layer, group):
            return
        # One event, rarely: sent from the calling thread, as the in-memory layer needs (see
        # "Which loop sends" above), and bounded for a network layer that does not answer.
        async_to_sync(_send_bounded)(layer, group, {"type": KEY_REVOKED_EVENT_TYPE})
    except Exception:
        logger.exception("feed: telling API key #%s's connections of its revocation failed", key_id)


def notice_committed(notice: Notice) -> None:
    """Send ``notice`` on its organization's private channel (``ws/v1/orders/``), as a
    ``notice`` message; call at the commit that made it. Handed to the sender as a matcher's
    batch is (numbered the same way, so a lost one is a gap); never raises."""
    try:
        layer = get_channel_layer()
        group = organization_group(notice.organization_id)
        if layer is None or not _heard(layer, group):
            return
        _send(layer, {group: [notice_message(notice)]})
    except Exception:
        logger.exception("feed: sending notice #%s failed", notice.pk)


async def _send_bounded(layer: BaseChannelLayer, group: str, event: dict[str, Any]) -> None:
    await asyncio.wait_for(layer.group_send(group, event), PUBLISH_TIMEOUT_SECONDS)


def _capture(
    applier: "EventApplier", book: "matching.OrderBook", *, with_public: bool
) -> BatchFeed:
    instrument = applier.instrument
    symbol = instrument.symbol
    private: list[tuple[int, Message]] = []
    for trade in applier.trades:
        maker, taker = trade.maker_order, trade.taker_order
        private.append((maker.account_id, fill_message(fill_of_trade(trade, maker))))
        private.append((taker.account_id, fill_message(fill_of_trade(trade, taker))))
    # After the fills, so that an order's state already counts them.
    for order in applier.dirty_orders.values():
        private.append((order.account_id, order_message(symbol, order)))
    for command in applier.commands:
        if _is_refused_replace(command):
            private.append((command.order.account_id, replace_rejected_message(symbol, command)))
    public: list[Message] = []
    if with_public:
        public = [trade_message(symbol, trade) for trade in applier.trades]
        # Only a rejected order leaves the book as it was. An IOC order that found nothing
        # also did, and sends an unchanged book: rare, and harmless to a client.
        if any(order.status != Order.Status.REJECTED for order in applier.dirty_orders.values()):
            bids, asks = book.depth(BOOK_LEVELS)
            public.append(
                book_message(
                    symbol, applier.sequence, _levels(instrument, bids), _levels(instrument, asks)
                )
            )
    return BatchFeed(instrument=instrument, public=public, private=private)


def _is_refused_replace(command: OrderCommand) -> bool:
    """A replace the matcher refused: it changed no order, yet its owner hears of it."""
    return (
        command.kind == OrderCommand.Kind.REPLACE and command.status == OrderCommand.Status.REJECTED
    )


def _levels(instrument: Instrument, depth: list[tuple[int, int, int]]) -> list[Level]:
    """The engine's (ticks, lots, orders) levels in prices and contracts."""
    return [
        Level(
            ticks_to_price(ticks, instrument.tick_size),
            lots_to_quantity(lots, instrument.lot_size),
            orders,
        )
        for ticks, lots, orders in depth
    ]


def _publish(layer: BaseChannelLayer, feed: BatchFeed) -> None:
    try:
        events = _events(layer, feed)
        if events:
            _send(layer, events)
    except Exception:
        logger.exception("feed: publishing a batch of %s failed", feed.instrument.symbol)


def _events(layer: BaseChannelLayer, feed: BatchFeed) -> dict[str, list[Message]]:
    """The messages of each group, in order; groups nobody listens to left out when known."""
    events: dict[str, list[Message]] = {}
    if feed.public:
        events[instrument_group(feed.instrument.pk)] = feed.public
    organizations = account_organizations({account_id for account_id, _ in feed.private})
    for account_id, message in feed.private:
        organization_id = organizations[account_id]
        if organization_id is None:  # A pool's account: not on the organization's channel.
            continue
        group = organization_group(organization_id)
        if _heard(layer, group):
            events.setdefault(group, []).append(message)
    return events


def _may_be_heard(layer: BaseChannelLayer) -> bool:
    # The in-memory layer's groups are a dictionary of this process; reading it from another
    # thread is one atomic operation. Other layers cannot say who listens.
    return not isinstance(layer, InMemoryChannelLayer) or bool(layer.groups)


def _heard(layer: BaseChannelLayer, group: str) -> bool:
    return not isinstance(layer, InMemoryChannelLayer) or group in layer.groups


class Numbering:
    """The numbers of one process's events to each group. Used by one thread at a time: the
    sender's, or the in-memory layer's senders under ``_memory_lock``."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # Unique across hosts and restarts: a restarted matcher counts from 1 again.
        self.source = f"{socket.gethostname()}.{self.pid}.{secrets.token_hex(4)}"
        self.last: dict[str, int] = {}

    def event(self, group: str, messages: list[Message]) -> dict[str, Any]:
        """The next event to ``group``."""
        sequence = self.last.get(group, 0) + 1
        self.last[group] = sequence
        return {
            "type": EVENT_TYPE,
            "messages": messages,
            "source": self.source,
            "sequence": sequence,
        }

    def skip(self, groups: Iterable[str]) -> None:
        """Spend one number of each group on an event that will never be sent."""
        for group in groups:
            self.last[group] = self.last.get(group, 0) + 1


async def _send_all(
    layer: BaseChannelLayer, events: dict[str, list[Message]], numbering: Numbering
) -> None:
    # Numbered as they are sent, so one sender's events to a group go out in number order.
    sends = [(group, numbering.event(group, messages)) for group, messages in events.items()]
    if isinstance(layer, RedisChannelLayer):
        await layer.group_send_many(sends)  # Every group in one or two round trips.
        return
    for group, event in sends:
        await layer.group_send(group, event)


# The in-memory layer is sent to from the threads of the requests whose orders the inline
# matcher matched: one at a time, so that numbers go out in order.
_memory_lock = threading.Lock()
_memory_numbering: Numbering | None = None


def _send(layer: BaseChannelLayer, events: dict[str, list[Message]]) -> None:
    global _memory_numbering
    if not isinstance(layer, InMemoryChannelLayer):
        _sender().submit(layer, events)
        return
    with _memory_lock:
        if _memory_numbering is None or _memory_numbering.pid != os.getpid():
            _memory_numbering = Numbering()
        async_to_sync(_send_all)(layer, events, _memory_numbering)


class Sender:
    """One per process, for network layers: a thread running an event loop that sends the
    batches handed to it, in the order given. The matcher only hands over, so a slow or absent
    Redis costs it nothing; batches beyond ``QUEUE_BATCHES_MAX`` are dropped (clients recover
    with a new snapshot, as after any disconnection)."""

    QUEUE_BATCHES_MAX = 10_000
    # Batches waiting together are merged, one send per group: when sends fall behind, each
    # group send carries many batches.
    COALESCE_BATCHES_MAX = 100
    # While sends keep failing (Redis down), one log line per interval, not one per batch.
    FAILURE_LOG_INTERVAL_SECONDS = 60.0

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.numbering = Numbering()  # Touched only in the loop's thread.
        # Touched only in the loop's thread.
        self.waiting: deque[tuple[BaseChannelLayer, dict[str, list[Message]]]] = deque()
        self.arrived = asyncio.Event()
        # The layer failing and when its failure was last logged; failures not logged since.
        self.failing: tuple[BaseChannelLayer, float] | None = None
        self.failures_unlogged = 0
        threading.Thread(target=self._run, name="feed-sender", daemon=True).start()

    def submit(self, layer: BaseChannelLayer, events: dict[str, list[Message]]) -> None:
        """Hand a batch over (from any thread); returns at once."""
        self.loop.call_soon_threadsafe(self._enqueue, layer, events)

    def _run(self) -> None:
        self.loop.run_until_complete(self._drain())

    def _enqueue(self, layer: BaseChannelLayer, events: dict[str, list[Message]]) -> None:
        if len(self.waiting) >= self.QUEUE_BATCHES_MAX:
            self.numbering.skip(events)  # Its listeners will see the gap.
            self._failed(layer, f"{self.QUEUE_BATCHES_MAX} batches waiting; one dropped", False)
            return
        self.waiting.append((layer, events))
        self.arrived.set()

    async def _drain(self) -> None:
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            while self.waiting:
                layer, events = self._next()
                try:
                    await asyncio.wait_for(
                        _send_all(layer, events, self.numbering), PUBLISH_TIMEOUT_SECONDS
                    )
                except Exception:
                    self._failed(layer, "sending a batch failed", True)
                else:
                    self._succeeded(layer)

    def _next(self) -> tuple[BaseChannelLayer, dict[str, list[Message]]]:
        """The first waiting batch, merged with those behind it for the same layer, each
        group's messages in order."""
        layer, events = self.waiting.popleft()
        merged = {group: list(messages) for group, messages in events.items()}
        for _ in range(self.COALESCE_BATCHES_MAX - 1):
            if not self.waiting or self.waiting[0][0] is not layer:
                break
            for group, messages in self.waiting.popleft()[1].items():
                merged.setdefault(group, []).extend(messages)
        return layer, merged

    def _succeeded(self, layer: BaseChannelLayer) -> None:
        if self.failing is not None and self.failing[0] is layer:
            logger.warning(
                "feed: sending works again (%s failures since the last report)",
                self.failures_unlogged,
            )
            self.failing, self.failures_unlogged = None, 0

    def _failed(self, layer: BaseChannelLayer, what: str, with_traceback: bool) -> None:
        now = time.monotonic()
        if (
            self.failing is None
            or self.failing[0] is not layer
            or now - self.failing[1] >= self.FAILURE_LOG_INTERVAL_SECONDS
        ):
            logger.error(
                "feed: %s (%s more since the last report)",
                what,
                self.failures_unlogged,
                exc_info=with_traceback,
            )
            self.failing, self.failures_unlogged = (layer, now), 0
        else:
            self.failures_unlogged += 1


_sender_lock = threading.Lock()
_sender_instance: Sender | None = None


def _sender() -> Sender:
    """This process's sender, started on first use (again after a fork, which keeps the
    object but not its thread)."""
    global _sender_instance
    with _sender_lock:
        if _sender_instance is None or _sender_instance.pid != os.getpid():
            _sender_instance = Sender()
        return _sender_instance
