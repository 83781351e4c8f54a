"""The matcher: sequences committed commands into the engine and persists what it says.

Exactly one matcher owns an instrument at a time: in the inline mode the instrument's row lock
(taken with ``select_for_update`` inside every matching transaction) and a process lock; in the
external mode a shard lease (a PostgreSQL advisory lock) per ``run_matcher`` process.

The in-memory book is a cache of the database. ``Instrument.sequence`` counts the events
applied to the book; the matcher remembers the sequence its book reflects and rebuilds the book
from the open orders whenever the two differ (another process matched, or a transaction rolled
back). A book whose transaction fails is dropped, so the next command rebuilds it.

Self-trade prevention is by organization: each order reaches the engine with its account's
organization as its ``stp_group``, so no two accounts of one organization (its main account, a
further one, a portfolio pool's) trade with each other.
"""

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar, cast

from django.db import models, transaction
from django.db.models import QuerySet
from django.db.models.functions import Mod
from django.utils import timezone

import matching
from exchange import calendar
from exchange.errors import OrderRejectCode
from exchange.feed.publish import batch_committed
from exchange.matcher.events import EventApplier, flush_together
from exchange.matcher.settlement import Settlement, settlements_load
from exchange.models import (
    RESTING_STATUSES,
    Account,
    Instrument,
    MarginCall,
    Order,
    OrderCommand,
    Side,
)
from exchange.units import engine_time, price_to_ticks, quantity_to_lots
from statements import Select, rows_together

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=models.Model)

INSTRUMENT_BY_ID = Select([Instrument], "{t0}", "WHERE {t0}.id = %s")
ORDERS_BY_IDS = Select([Order], "{t0}", "WHERE {t0}.id IN ({values})")
# The halted ones among the futures that options are written on.
HALTED_AMONG = Select(
    [Instrument], "{t0}", "WHERE {t0}.id IN ({values}) AND {t0}.status = 'halted'"
)
# The matcher's queue: served by the partial index on pending commands (instrument, id).
PENDING_COMMANDS = Select(
    [OrderCommand, Order],
    "{t0} INNER JOIN {t1} ON {t1}.id = {t0}.order_id",
    "WHERE {t0}.instrument_id = %s AND {t0}.status = 'pending' ORDER BY {t0}.id LIMIT %s",
)


def resting_order(
    order: Order, instrument: Instrument, organization_id: int
) -> matching.RestingOrder:
    """``organization_id``: the order's account's, its self-trade prevention group."""
    assert order.price is not None  # Market orders never rest.
    return matching.RestingOrder(
        order_id=order.pk,
        instrument=instrument.pk,
        account=order.account_id,
        side=matching.Side(order.side),
        price=price_to_ticks(order.price, instrument.tick_size),
        qty=quantity_to_lots(order.open_quantity, instrument.lot_size),
        tif=matching.TimeInForce(order.time_in_force),
        stp=matching.SelfTradePrevention(order.self_trade_prevention),
        expires_at=engine_time(order.expires_at) if order.expires_at else None,
        post_only=order.post_only,
        stp_group=organization_id,
    )


class Matcher:
    # Commands taken per transaction: bounds the transaction's size and the row locks it holds.
    BATCH_COMMANDS_MAX = 200
    # Batches per call of process_instrument, so one busy instrument cannot starve the others.
    BATCHES_PER_CALL_MAX = 50
    # Accounts whose organization the matcher keeps; past this many it forgets them all and
    # reads again those it needs (one statement per batch or rebuild).
    ORGANIZATIONS_KEPT_MAX = 100_000

    def __init__(self, *, shard: int = 0, shards: int = 1) -> None:
        assert 0 <= shard < shards
        self.shard = shard
        self.shards = shards
        self.engine = matching.Engine()
        self._synced_sequence: dict[int, int] = {}
        # Resting orders as last written, and the settlement state of each book (holds of its
        # resting orders, positions): caches of the database, valid exactly as long as the
        # book (same sequence check, dropped with it).
        self._orders: dict[int, dict[int, Order]] = {}
        self._settlements: dict[int, Settlement] = {}
        # The earliest GTD expiry resting in each book, so ticks run only when one is due.
        self._next_expiry: dict[int, int | None] = {}
        # The reducing orders (``Order.reduce_only``) that rest in each book, with their sides:
        # a hint of when ``_reduce_only_enforce`` has work (the book says what still rests).
        self._reducing: dict[int, dict[int, str]] = {}
        # The orders the last process_instrument call wrote, as written: the inline mode hands
        # the placed order back from here instead of reading it again.
        self.last_orders: dict[int, Order] = {}
        # The organization of each trading account met, by account id: the self-trade
        # prevention group of its orders. Kept across batches and books, since an account never
        # changes organization (no service moves one, and the admin shows it read-only).
        self._organizations: dict[int, int] = {}

    def owns(self, instrument_id: int) -> bool:
        return instrument_id % self.shards == self.shard

    def _shard_filter(self, queryset: QuerySet[ModelT], field: str) -> QuerySet[ModelT]:
        if self.shards == 1:
            return queryset
        sharded: QuerySet[ModelT] = queryset.annotate(shard_key=Mod(field, self.shards)).filter(
            shard_key=self.shard
        )
        return sharded

    # Rebuilding ---------------------------------------------------------------------------

    def forget(self, instrument_id: int) -> None:
        self.engine.drop(instrument_id)
        self._synced_sequence.pop(instrument_id, None)
        self._orders.pop(instrument_id, None)
        self._settlements.pop(instrument_id, None)
        self._next_expiry.pop(instrument_id, None)
        self._reducing.pop(instrument_id, None)

    def reset(self) -> None:
        for instrument_id in list(self._synced_sequence):
            self.forget(instrument_id)
        # Tests roll their rows back, and SQLite may then give an id to another account.
        self._organizations.clear()

    def _organizations_load(self, account_ids: set[int]) -> None:
        """Make sure the organization of every one of ``account_ids`` is known: one read for
        those not met before, none when all were."""
        kept = self._organizations
        missing = {account_id for account_id in account_ids if account_id not in kept}
        if not missing:
            return
        if len(kept) + len(missing) > self.ORGANIZATIONS_KEPT_MAX:
            kept.clear()
            missing = account_ids
        kept.update(
            Account.objects.filter(pk__in=sorted(missing)).values_list("pk", "organization_id")
        )

    def rebuild(self, instrument: Instrument) -> None:
        """Load the book of ``instrument`` from its resting orders, in queue priority order."""
        self.forget(instrument.pk)
        orders = list(
            Order.objects.filter(instrument=instrument, status__in=RESTING_STATUSES).order_by(
                "priority_sequence", "id"
            )
        )
        self._organizations_load({order.account_id for order in orders})
        organizations = self._organizations
        resting = [
            resting_order(order, instrument, organizations[order.account_id]) for order in orders
        ]
        self.engine.restore(resting)
        self._synced_sequence[instrument.pk] = instrument.sequence
        self._orders[instrument.pk] = {order.pk: order for order in orders}
        self._next_expiry[instrument.pk] = min(
            (order.expires_at for order in resting if order.expires_at is not None), default=None
        )
        self._reducing[instrument.pk] = {
            order.pk: order.side for order in orders if order.reduce_only
        }

    def rebuild_all(self) -> int:
        """Rebuild every owned book with resting orders (at a matcher's start); count them."""
        instrument_ids = (
            self._shard_filter(Order.objects.filter(status__in=RESTING_STATUSES), "instrument_id")
            .values_list("instrument_id", flat=True)
            .distinct()
        )
        instruments = Instrument.objects.filter(pk__in=set(instrument_ids)).order_by("pk")
        count = 0
        for instrument in instruments:
            self.rebuild(instrument)
            count += 1
        return count

    # Processing ---------------------------------------------------------------------------

    def process_instrument(self, instrument_id: int, *, now: datetime | None = None) -> int:
        """Run the pending commands of one instrument (and due expiries). Returns commands run."""
        assert self.owns(instrument_id)
        return self._process([instrument_id], now)

    def _process(self, instrument_ids: list[int], now: datetime | None) -> int:
        """Batches over ``instrument_ids`` until their queues are empty (or the call's bound).

        ``now``: the time of every batch (a test's or a simulation's clock); None, the clock as
        each batch has taken its locks, so that trades in sequence order are in time order
        across processes (a time read before waiting on another's lock would be older than
        the trades that other wrote)."""
        total = 0
        self.last_orders = {}
        for _batch in range(self.BATCHES_PER_CALL_MAX):
            processed, instrument_ids = self._process_batch(instrument_ids, now)
            total += processed
            if not instrument_ids:
                break
        return total

    def _process_batch(
        self, instrument_ids: list[int], now: datetime | None
    ) -> tuple[int, list[int]]:
        """One transaction over several instruments: each one's queue (up to
        ``BATCH_COMMANDS_MAX`` commands) and due expiries, written together and committed
        once. Returns the commands run and the instruments with more queued."""
        queued: list[tuple[Instrument, list[OrderCommand], Settlement]] = []
        batches: list[tuple[EventApplier, list[OrderCommand]]] = []
        more: list[int] = []
        try:
            with transaction.atomic():
                # Locks the instrument rows in id order (as the risk cycle does): one matching
                # transaction per instrument at a time, across processes, and ordered with
                # staff halting an instrument. Each queue is read after its lock is taken; all
                # of it in one round trip.
                queries = []
                for instrument_id in instrument_ids:
                    queries.append((INSTRUMENT_BY_ID, [instrument_id], True))
                    queries.append(
                        (PENDING_COMMANDS, [instrument_id, self.BATCH_COMMANDS_MAX + 1], False)
                    )
                results = rows_together(queries)
                moment = now if now is not None else timezone.now()
                for index, instrument_id in enumerate(instrument_ids):
                    # The rows are of the models the statements select (statements returns
                    # them as plain models).
                    locked = cast(list[tuple[Instrument]], results[2 * index])
                    pending = cast(list[tuple[OrderCommand, Order]], results[2 * index + 1])
                    instrument = locked[0][0]
                    if self._synced_sequence.get(instrument_id) != instrument.sequence:
                        self.rebuild(instrument)
                    commands: list[OrderCommand] = []
                    for command, order in pending:
                        command.order = order
                        commands.append(command)
                    if len(commands) > self.BATCH_COMMANDS_MAX:
                        more.append(instrument_id)
                        commands = commands[: self.BATCH_COMMANDS_MAX]
                    settlement = self._settlements.get(instrument_id) or Settlement(instrument)
                    settlement.sync_risk_version(instrument)
                    queued.append((instrument, commands, settlement))
                halted_underlyings = self._halted_underlyings(queued)
                called = self._accounts_under_call(queued)
                # Only a new order tells the engine its group: a replace keeps the resting
                # order's, and a cancel needs none.
                self._organizations_load(
                    {
                        command.order.account_id
                        for _, commands, _ in queued
                        for command in commands
                        if command.kind == OrderCommand.Kind.NEW
                    }
                )
                # The holds of every queue's orders in one read, so each applier finds its own
                # loaded.
                settlements_load(
                    {
                        settlement: {c.order_id for c in commands}
                        for _, commands, settlement in queued
                    }
                )
                for instrument, commands, settlement in queued:
                    applier = EventApplier(
                        instrument,
                        {command.order_id: command.order for command in commands},
                        moment,
                        settlement=settlement,
                    )
                    settlement.load_replaces(
                        {c.pk for c in commands if c.kind == OrderCommand.Kind.REPLACE}
                    )
                    self._expire_due(instrument, applier, moment)
                    halted_by = None
                    if instrument.underlying_id is not None:
                        halted_by = halted_underlyings.get(instrument.underlying_id)
                    for command in commands:
                        self._run_command(instrument, command, applier, called, halted_by)
                    batches.append((applier, commands))
                flush_together([applier for applier, _ in batches])
        except BaseException:
            # The transaction rolled back, so the in-memory books may be ahead of the database.
            for instrument_id in instrument_ids:
                self.forget(instrument_id)
            raise
        total = 0
        for applier, commands in batches:
            self._committed(applier)
            total += len(commands)
        return total, more

    @staticmethod
    def _halted_underlyings(
        queued: list[tuple[Instrument, list[OrderCommand], Settlement]],
    ) -> dict[int, Instrument]:
        """The halted futures, by id, among those the batch's options with commands are written
        on: an option trades only while its future is not halted. One read, and none for a
        batch of futures alone (the futures path reads nothing more).

        The future's row is read, not locked: locking it would order this batch with its halt
        but take a second instrument lock outside the id order every matching transaction and
        the risk cycle keep. A halt committed while this batch runs (microseconds after the
        read) lets this batch's commands match; every later batch refuses them."""
        ids = sorted(
            {
                instrument.underlying_id
                for instrument, commands, _ in queued
                if commands
                and instrument.kind == Instrument.Kind.OPTION
                and instrument.underlying_id is not None
            }
        )
        if not ids:
            return {}
        rows = cast(list[tuple[Instrument]], HALTED_AMONG.rows_in(ids))
        return {future.pk: future for (future,) in rows}

    def _committed(self, applier: EventApplier) -> None:
        """After the commit: keep what the batch wrote as the in-memory state of its book."""
        instrument_id = applier.instrument.pk
        self._synced_sequence[instrument_id] = applier.sequence
        self.last_orders.update(applier.orders)
        cache = self._orders.setdefault(instrument_id, {})
        left: set[int] = set()
        for order in applier.orders.values():
            if order.status in RESTING_STATUSES:
                cache[order.pk] = order
            else:
                cache.pop(order.pk, None)
                left.add(order.pk)
        applier.settlement.end(left, cache.keys())
        reducing = self._reducing.get(instrument_id)
        if reducing:
            for order_id in left & reducing.keys():
                del reducing[order_id]
        self._settlements[instrument_id] = applier.settlement
        # After the commit, never inside the transaction; logs rather than raises. Published
        # before the next batch runs, so listeners get the batches in sequence order.
        batch_committed(applier, self.engine.book(instrument_id))

    def _expire_due(self, instrument: Instrument, applier: EventApplier, now: datetime) -> None:
        """Tell the book the time before it runs commands.

        Every batch ticks, not only those with a resting order due: the engine then also refuses
        a GTD order whose expiry passed while it waited in the queue (MATCHING_ALREADY_EXPIRED).
        The book keeps its expiries in a heap, so a tick with nothing due costs little.
        """
        now_us = engine_time(now)
        events = self.engine.process(matching.Tick(now=now_us, instrument=instrument.pk))
        # After every tick, events or not: the expiry remembered may be of an order cancelled
        # or filled since, and kept, the book would be due (locked and ticked) at every pass.
        self._next_expiry[instrument.pk] = self.engine.book(instrument.pk).next_expiry()
        if not events:
            return
        self._load_orders(applier, events)
        applier.apply_tick(events)

    def _load_orders(self, applier: EventApplier, events: Iterable[matching.Event]) -> None:
        missing = applier.missing_order_ids(list(events))
        cache = self._orders.get(applier.instrument.pk, {})
        # Set operations with the cache's keys would walk the whole book: ask per order.
        kept = {order_id for order_id in missing if order_id in cache}
        for order_id in kept:
            applier.orders[order_id] = cache[order_id]
        missing -= kept
        if missing:
            rows = cast(list[tuple[Order]], ORDERS_BY_IDS.rows_in(sorted(missing)))
            applier.orders.update((order.pk, order) for (order,) in rows)
            applier.settlement.load(missing)

    def _run_command(
        self,
        instrument: Instrument,
        command: OrderCommand,
        applier: EventApplier,
        called: frozenset[int],
        halted_by: Instrument | None = None,
    ) -> None:
        """``called``: the accounts under a margin call (``_accounts_under_call``);
        ``halted_by``: the option's future when it is halted (``_halted_underlyings``)."""
        order = command.order
        refusal = self._refusal(instrument, command, applier.now, halted_by)
        if refusal is None and not command.cancels:
            refusal = self._margin_call_refusal(instrument, command, called)
        if refusal is None and not command.cancels:
            # Before the collateral check, which may top a replace's holds up.
            refusal = self._reduce_only_enforce(instrument, command, applier)
        if refusal is None and command.kind != OrderCommand.Kind.CANCEL:
            refusal = applier.settlement.refusal(command)
        if refusal is not None:
            # The instrument stopped trading between acceptance and matching, or the command is
            # not collateralized. The engine never sees the command; the rejection is shaped as
            # the engine's own so that it is applied and recorded exactly like one. Cancels
            # always go through.
            events: list[matching.Event] = [
                matching.Rejected(
                    seq=0,
                    order_id=order.pk,
                    instrument=instrument.pk,
                    # An exchange code where the engine puts its own: applied the same way.
                    reason=refusal,  # type: ignore[arg-type]
                )
            ]
        else:
            events = self.engine.process(self._engine_command(instrument, command))
        self._load_orders(applier, events)
        applier.apply(command, events)
        if order.reduce_only and order.status in RESTING_STATUSES:
            self._reducing.setdefault(instrument.pk, {})[order.pk] = order.side
        if order.expires_at is not None and order.status in RESTING_STATUSES:
            expiry = engine_time(order.expires_at)
            current = self._next_expiry.get(instrument.pk)
            self._next_expiry[instrument.pk] = expiry if current is None else min(current, expiry)

    def _reduce_only_enforce(
        self, instrument: Instrument, command: OrderCommand, applier: EventApplier
    ) -> str | None:
        """Before a command that may trade: hold every reducing order it may fill to what closes
        its account's position now. Returns ``RISK_REDUCE_ONLY`` for the command itself when
        its own reducing order asks for more, else None.

        A reducing order (``Order.reduce_only``) holds no margin and pays no fee: acceptance
        let it close no more than the position, with the account's other orders on its side.
        The position can shrink after that other than by its fills (a fill of another of the
        account's orders, a service outside the matcher), and a fill beyond it would open a
        position on the other side without margin. So the acceptance rule is applied
        again at each trade, against the position after the fills before it (the settlement's,
        exact under the instrument's lock): the resting reducing orders on the side the command
        meets keep, in the book's priority, what the position less the account's other orders
        on that side leaves; the rest is cancelled (``reduce_only_exceeded``). The command's
        own reducing order (a new one, or a replace that may trade) is refused whole instead,
        as acceptance would refuse it now. Only the side a command meets trades, so this needs
        no more: a position moves only by fills, each met by a command checked here first."""
        if instrument.kind == Instrument.Kind.RESALE:
            return None  # No positions: a resale order never reduces one.
        order = command.order
        met = Side.BUY if order.side == Side.SELL else Side.SELL
        reducing = self._reducing.get(instrument.pk, {})
        if not order.reduce_only and met not in reducing.values():
            return None
        # Every resting order by account and side, each side in priority (best price, then
        # FIFO): a walk of the book, only while a reducing order may be met.
        groups: dict[tuple[int, str], list[matching.RestingOrder]] = {}
        for resting in self.engine.book(instrument.pk).orders():
            groups.setdefault((resting.account, str(resting.side)), []).append(resting)
        for (account_id, side), group in groups.items():
            if side != met or not any(resting.order_id in reducing for resting in group):
                continue
            budget = self._closable_lots(instrument, applier, account_id, side) - sum(
                resting.qty for resting in group if resting.order_id not in reducing
            )
            for resting in group:
                if resting.order_id not in reducing:
                    continue
                kept = max(min(resting.qty, budget), 0)
                budget -= kept
                if kept < resting.qty:
                    self._reduce_only_cut(instrument, applier, resting, kept)
        if not order.reduce_only:
            return None
        lot_size = instrument.lot_size
        asked = order.quantity if command.kind == OrderCommand.Kind.NEW else command.quantity or 0
        others = sum(
            resting.qty
            for resting in groups.get((order.account_id, order.side), [])
            if resting.order_id != order.pk
        )
        closable = self._closable_lots(instrument, applier, order.account_id, order.side)
        if asked // lot_size + others <= closable:
            return None
        lowers_in_place = (
            command.kind == OrderCommand.Kind.REPLACE
            and command.price == order.price
            and asked <= order.open_quantity
        )
        # A replace that only lowers it where it rests trades nothing now: let it (cut when met).
        return None if lowers_in_place else OrderRejectCode.REDUCE_ONLY

    @staticmethod
    def _accounts_under_call(
        queued: list[tuple[Instrument, list[OrderCommand], Settlement]],
    ) -> frozenset[int]:
        """The accounts with a margin call open among those of the batch's replaces that may
        trade (``_margin_call_refusal`` reads them): one read, none for a batch without such
        a replace. Every such replace's account, not only those whose replace changes the
        order's price or quantity at the batch's start: a fill earlier in the batch lowers
        the open quantity a replace is compared with."""
        ids = sorted(
            {
                command.order.account_id
                for _, commands, _ in queued
                for command in commands
                if command.kind == OrderCommand.Kind.REPLACE and not command.cancels
            }
        )
        if not ids:
            return frozenset()
        return frozenset(
            MarginCall.objects.filter(
                account_id__in=ids, status=MarginCall.Status.OPEN
            ).values_list("account_id", flat=True)
        )

    @staticmethod
    def _margin_call_refusal(
        instrument: Instrument, command: OrderCommand, called: frozenset[int]
    ) -> str | None:
        """The refusal of a replace that may trade by the account's margin call, or its end,
        else None: acceptance refuses the same (``orders.order_replace``), and a replace
        accepted on one side of a call's start or end may reach the matcher on the other.

        ``RISK_MARGIN_CALL_ENDED`` for a reducing order with no call open any more (the cure
        cancels it; ``orders.margin_call_ended``). ``RISK_REDUCE_ONLY`` for one under a call
        that would add risk (``Order.margin_call_replace_refusal``): raising the open quantity,
        or an ordinary order, accepted before the call, at a new price."""
        if command.kind != OrderCommand.Kind.REPLACE:
            return None
        order = command.order
        if order.account_id not in called:
            return OrderRejectCode.MARGIN_CALL_ENDED if order.reduce_only else None
        assert command.price is not None and command.quantity is not None  # A replace's.
        refused = order.margin_call_replace_refusal(
            price=command.price,
            quantity=command.quantity,
            resale=instrument.kind == Instrument.Kind.RESALE,
        )
        return OrderRejectCode.REDUCE_ONLY if refused else None

    @staticmethod
    def _closable_lots(
        instrument: Instrument, applier: EventApplier, account_id: int, side: str
    ) -> int:
        """Whole lots of the account's position that orders on ``side`` would close."""
        position = applier.settlement.position(account_id)
        closable = position if side == Side.SELL else -position
        return max(closable, 0) // instrument.lot_size

    def _reduce_only_cut(
        self,
        instrument: Instrument,
        applier: EventApplier,
        resting: matching.RestingOrder,
        kept: int,
    ) -> None:
        """Leave ``kept`` lots of a resting reducing order in the book (its priority with them)
        and record the rest as cancelled, ``reduce_only_exceeded``."""
        if kept:
            engine_command: matching.Command = matching.Replace(
                order_id=resting.order_id,
                instrument=instrument.pk,
                price=resting.price,
                qty=kept,
            )
        else:
            engine_command = matching.Cancel(order_id=resting.order_id, instrument=instrument.pk)
        [event] = self.engine.process(engine_command)
        assert type(event) is (matching.Replaced if kept else matching.Cancelled), event
        cut = matching.Cancelled(
            seq=event.seq,
            order_id=resting.order_id,
            instrument=instrument.pk,
            qty=resting.qty - kept,
            reason=matching.CancelReason.USER,  # Not read: the applier names its own reason.
        )
        self._load_orders(applier, [cut])
        applier.apply_reduce_only_cut(cut)

    @staticmethod
    def _refusal(
        instrument: Instrument,
        command: OrderCommand,
        now: datetime,
        halted_by: Instrument | None = None,
    ) -> str | None:
        """Why a command that could trade must not reach the engine, or None. A cancel, or a
        replace to quantity 0 (a cancel too), cannot trade: it always goes through. An option
        whose future is halted (``halted_by``) is refused as a halted instrument is."""
        if command.cancels:
            return None
        # Trading ends at the close of the last trading day (``calendar.trading_ends_at``): an
        # order accepted just before it is not matched after it.
        ended = now >= calendar.trading_ends_at(instrument.last_trading_day)
        if instrument.status == Instrument.Status.EXPIRED or ended:
            return OrderRejectCode.INSTRUMENT_EXPIRED
        if instrument.status == Instrument.Status.HALTED or halted_by is not None:
            return OrderRejectCode.INSTRUMENT_HALTED
        return None

    def _engine_command(self, instrument: Instrument, command: OrderCommand) -> matching.Command:
        order = command.order
        if command.kind == OrderCommand.Kind.NEW:
            # A market order fills no further than its protection price: the engine sees it as
            # an IOC/FOK order at that price.
            limit = order.price if order.price is not None else order.protection_price
            return matching.NewOrder(
                order_id=order.pk,
                instrument=instrument.pk,
                account=order.account_id,
                side=matching.Side(order.side),
                qty=quantity_to_lots(order.quantity, instrument.lot_size),
                price=price_to_ticks(limit, instrument.tick_size) if limit is not None else None,
                tif=matching.TimeInForce(order.time_in_force),
                post_only=order.post_only,
                stp=matching.SelfTradePrevention(order.self_trade_prevention),
                expires_at=engine_time(order.expires_at) if order.expires_at else None,
                # Loaded for the batch's new orders (``_organizations_load``).
                stp_group=self._organizations[order.account_id],
            )
        if command.kind == OrderCommand.Kind.CANCEL:
            return matching.Cancel(order_id=order.pk, instrument=instrument.pk)
        assert command.kind == OrderCommand.Kind.REPLACE
        assert command.price is not None and command.quantity is not None
        return matching.Replace(
            order_id=order.pk,
            instrument=instrument.pk,
            price=price_to_ticks(command.price, instrument.tick_size),
            qty=quantity_to_lots(command.quantity, instrument.lot_size),
        )

    def pending_instrument_ids(self) -> list[int]:
        queryset = OrderCommand.objects.filter(status=OrderCommand.Status.PENDING)
        return sorted(
            set(
                self._shard_filter(queryset, "instrument_id").values_list(
                    "instrument_id", flat=True
                )
            )
        )

    def expiring_instrument_ids(self, now: datetime) -> list[int]:
        queryset = Order.objects.filter(status__in=RESTING_STATUSES, expires_at__lte=now)
        return sorted(
            set(
                self._shard_filter(queryset, "instrument_id").values_list(
                    "instrument_id", flat=True
                )
            )
        )

    def due_expiry_instrument_ids(self, now: datetime) -> list[int]:
        """Books in memory with a GTD expiry due (no database read)."""
        now_us = engine_time(now)
        return sorted(
            instrument_id
            for instrument_id, expiry in self._next_expiry.items()
            if expiry is not None and expiry <= now_us
        )

    def process_instruments(
        self, instrument_ids: Iterable[int], *, now: datetime | None = None
    ) -> int:
        """Process the given owned instruments together (one transaction per batch, locks in
        id order); others are ignored. Returns commands run."""
        owned = sorted(
            instrument_id for instrument_id in set(instrument_ids) if self.owns(instrument_id)
        )
        return self._process(owned, now) if owned else 0

    def process_pending(self, *, now: datetime | None = None) -> int:
        """One full pass over the shard, found by reading the database: every instrument with
        pending commands or due expiries."""
        expiring = self.expiring_instrument_ids(now or timezone.now())
        instrument_ids = set(self.pending_instrument_ids()) | set(expiring)
        return self.process_instruments(instrument_ids, now=now)
