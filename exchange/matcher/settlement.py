"""Settlement in the matcher's transaction: one ledger entry per trade, and the release of the
collateral of orders that leave the book.

Everything here is computed in memory while the matcher applies the engine's events and posted
by one ``entries_post`` call when the batch flushes, so trades and their entries commit together
or not at all. The instrument's row lock, held by the matcher's transaction, is what makes the
in-memory positions exact: only this instrument's matcher moves its positions and margin.

Each fill takes from the collateral its order holds (``exchange.services.collateral``) and never
more; that is what guarantees the ledger accepts every entry, so settlement cannot stall a book.
A fill that would take more than is held is a broken invariant: it raises ``SettlementError``,
which rolls the batch back and is logged by the matcher, rather than posting a wrong entry.

One trade's entry (idempotency key ``trade:<instrument id>:<instrument sequence>``, the same
pair that identifies the ``Trade`` row):

- futures: the buyer's position account is debited and the seller's credited (contracts); the
  cost memo accounts the same at the trade's value; each side's opening contracts move initial
  margin from cash to its margin account, closing contracts release margin pro rata (rounded
  down; the last contract releases the rest); fees go from cash to the exchange's fee income;
- options: as futures, and the premium moves from the buyer's cash to the seller's: for the
  contracts a seller opens (it writes them), to its margin account, where it pays the buy-back
  value the end of the day requires on top of the scan risk;
- resale: the price moves from the buyer's cash to the seller's, the GPU-hour entitlements of
  every month of the term from the seller's accounts to the buyer's; the seller's fee comes out
  of the proceeds.
"""

from collections.abc import Callable, Container
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import cast

from django.db import transaction

from exchange.errors import OrderRejectCode
from exchange.models import Account, Instrument, Order, OrderCommand, OrderHold
from exchange.services import collateral
from exchange.services.ledger_accounts import (
    LEDGER_ACCOUNT_BY_CODE,
    LEDGER_ACCOUNTS_BY_CODES,
    cash_account,
    cash_account_code,
    cost_account,
    cost_account_code,
    entitlement,
    entitlement_account,
    entitlement_account_code,
    entitlement_code,
    fees_account,
    house_account_code,
    margin_account,
    margin_account_code,
    position_account,
    position_account_code,
)
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account as LedgerAccount
from ledger.models import Hold
from ledger.services import ENTRIES_PER_BATCH_MAX, EntrySpec, entries_post
from statements import Select

# Each hold is fetched by primary key for its link row: on PostgreSQL the LATERAL subquery with
# OFFSET 0 cannot be flattened into a join, so the plan does not depend on statistics. With the
# plain join and stale statistics (a young database, before autovacuum analyzes it), PostgreSQL
# hashed or scanned every pending hold for a handful of orders, a cost growing with the book.
HOLDS_BY_LINK = (
    "{t0} CROSS JOIN LATERAL (SELECT * FROM {t1} WHERE {t1}.id = {t0}.hold_id OFFSET 0) AS {t1}"
)
PENDING_HOLDS_OF_ORDERS = Select(
    [OrderHold, Hold],
    "{t0} INNER JOIN {t1} ON {t1}.id = {t0}.hold_id",
    "WHERE {t0}.order_id IN ({values}) AND {t1}.status = 'pending' ORDER BY {t0}.id",
    postgresql_from_sql=HOLDS_BY_LINK,
)


PENDING_HOLDS_OF_COMMANDS = Select(
    [OrderHold, Hold],
    "{t0} INNER JOIN {t1} ON {t1}.id = {t0}.hold_id",
    "WHERE {t0}.command_id IN ({values}) AND {t1}.status = 'pending' ORDER BY {t0}.id",
    postgresql_from_sql=HOLDS_BY_LINK,
)


class SettlementError(RuntimeError):
    """A fill would take more collateral than its order holds: a bug, never a user error."""


@dataclass
class _Party:
    """A trading account's position in this instrument (contracts, long positive) and the
    margin set aside for it (micro-USD), as of the events applied so far."""

    position: int
    margin: int


def split_fill(position: int, change: int) -> tuple[int, int]:
    """(opening, closing) contracts of a fill changing ``position`` by ``change``."""
    if position == 0 or (position > 0) == (change > 0):
        return abs(change), 0
    closing = min(abs(change), abs(position))
    return abs(change) - closing, closing


class Settlement:
    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.kind = instrument.kind
        self.hours = instrument.gpu_hours_per_contract
        self.ledger_accounts: dict[str, LedgerAccount] = {}
        self.loaded: set[int] = set()
        self.active: dict[int, list[Hold]] = {}  # Order id: the holds its fills consume.
        self.fresh: dict[int, list[Hold]] = {}  # Replace command id: holds it brings.
        self.rows: dict[int, OrderHold] = {}  # Hold id: its link to the order.
        self.remaining: dict[int, int] = {}  # Hold id: what is still pending, in memory.
        self.parties: dict[int, _Party] = {}
        self.specs: list[EntrySpec] = []
        self.voids: dict[int, Hold] = {}
        self.reductions: dict[int, tuple[Hold, int]] = {}  # Hold id: (hold, amount released).
        self.changed_rows: dict[int, OrderHold] = {}
        self._months: list[tuple[date, int]] | None = None
        self.risk_version = instrument.risk_version

    # Batches ------------------------------------------------------------------------------
    #
    # The matcher keeps one Settlement per instrument across its batches, as it keeps the book:
    # what it loaded (holds of resting orders, positions, ledger account ids) stays true while
    # only this matcher changes it, and is dropped with the book whenever a batch fails or the
    # book is rebuilt.

    def sync_risk_version(self, instrument: Instrument) -> None:
        """The risk cycle moved positions or margin of this instrument outside the matcher
        (``Instrument.risk_version`` changed under the row lock): read them again."""
        if instrument.risk_version != self.risk_version:
            self.parties = {}
            self.risk_version = instrument.risk_version

    def begin(self, instrument: Instrument) -> None:
        """Start a batch: the instrument row as locked by it, and nothing posted yet."""
        self.instrument = instrument
        self.specs = []
        self.voids = {}
        self.reductions = {}
        self.changed_rows = {}

    def end(self, left: set[int], resting_order_ids: Container[int]) -> None:
        """After the batch committed: forget the orders that left the book.

        ``left``: the batch's orders that no longer rest. Every other loaded order still rests:
        a batch loads only its own orders, and forgets here those that leave, so the work is
        the batch's size, not the book's.
        """
        for order_id in left & self.loaded:
            for hold in self.active.pop(order_id, []):
                self.remaining.pop(hold.pk, None)
                self.rows.pop(hold.pk, None)
        # Released in this batch (closed orders, replaced or refused replaces): nothing will
        # consume them again. (Kept until now, they used to stay for the matcher's lifetime.)
        for hold_id in [*self.voids, *self.reductions]:
            if hold_id in self.voids or self.remaining.get(hold_id) == 0:
                self.remaining.pop(hold_id, None)
                self.rows.pop(hold_id, None)
        # Holds of replaces still queued stay known, unless their order left the book: loading
        # that order again (for its queued replace) reads them afresh.
        for command_id, holds in list(self.fresh.items()):
            if self.rows[holds[0].pk].order_id not in resting_order_ids:
                for hold in self.fresh.pop(command_id):
                    self.rows.pop(hold.pk, None)
                    self.remaining.pop(hold.pk, None)
        self.loaded -= left

    # Loading ------------------------------------------------------------------------------

    def load(self, order_ids: set[int]) -> None:
        """Read the pending holds of these orders (once per order while it rests)."""
        settlements_load({self: order_ids})

    def load_replaces(self, command_ids: set[int]) -> None:
        """Read the holds that queued replaces brought (placed after their order was loaded)."""
        wanted = sorted(set(command_ids) - self.fresh.keys())
        rows = cast(list[tuple[OrderHold, Hold]], PENDING_HOLDS_OF_COMMANDS.rows_in(wanted))
        for row, hold in rows:
            self._register(row, hold)

    def _register(self, row: OrderHold, hold: Hold) -> None:
        if hold.pk in self.rows:
            return
        row.hold = hold
        self.rows[hold.pk] = row
        self.remaining[hold.pk] = hold.remaining
        if row.active:
            self.active.setdefault(row.order_id, []).append(hold)
        elif row.command_id is not None:
            self.fresh.setdefault(row.command_id, []).append(hold)

    def _ledger(self, code: str, opener: Callable[[], LedgerAccount]) -> LedgerAccount:
        account = self.ledger_accounts.get(code)
        if account is None:
            found = cast(list[tuple[LedgerAccount]], LEDGER_ACCOUNT_BY_CODE.rows([code]))
            account = found[0][0] if found else opener()
            self.ledger_accounts[code] = account
        return account

    def _cash(self, account_id: int) -> LedgerAccount:
        stub = Account(pk=account_id)
        return self._ledger(cash_account_code(stub), lambda: cash_account(stub))

    def _party(self, account_id: int) -> _Party:
        party = self.parties.get(account_id)
        if party is None:
            stub = Account(pk=account_id)
            symbol = self.instrument.symbol
            codes = [
                position_account_code(stub, symbol),
                margin_account_code(stub, symbol),
                cost_account_code(stub, symbol),
                cash_account_code(stub),
            ]
            # Every account of this party the settlement may touch, in one query.
            rows = cast(list[tuple[LedgerAccount]], LEDGER_ACCOUNTS_BY_CODES.rows_in(codes))
            found = {row.code: row for (row,) in rows}
            self.ledger_accounts.update(found)
            position, margin = found.get(codes[0]), found.get(codes[1])
            party = self.parties[account_id] = _Party(
                position=position.balance if position else 0,
                margin=-margin.balance if margin else 0,
            )
        return party

    def position(self, account_id: int) -> int:
        """The account's contracts of this instrument (long positive), after the events applied
        so far: exact, as only this matcher moves them under the instrument's row lock (what
        moves them outside it bumps ``Instrument.risk_version``: ``sync_risk_version``)."""
        return self._party(account_id).position

    def _months_of_term(self) -> list[tuple[date, int]]:
        if self._months is None:
            self._months = collateral.entitlement_months(self.instrument)
        return self._months

    def _entitlement(self, account_id: int, month: date) -> LedgerAccount:
        sku, region = self.instrument.sku.code, self.instrument.region.code
        stub = Account(pk=account_id)
        code = entitlement_account_code(stub, entitlement_code(sku, region, month))
        return self._ledger(
            code, lambda: entitlement_account(stub, entitlement(sku, region, month))
        )

    # Checks before the engine sees a command ---------------------------------------------

    def refusal(self, command: OrderCommand) -> OrderRejectCode | None:
        """Why a NEW or REPLACE command is not collateralized, or None."""
        order = command.order
        self.load({order.pk})
        if command.kind == OrderCommand.Kind.NEW:
            if order.pk in self.active:
                return None  # Held in full by the transaction that accepted it.
            price = order.price if order.price is not None else order.protection_price
            assert price is not None
            needs = collateral.needs_of_order(
                order, self.instrument, order.quantity, price, order.margin_per_contract
            )
            return OrderRejectCode.COLLATERAL_MISSING if needs else None
        assert command.kind == OrderCommand.Kind.REPLACE
        if command.price is None or command.quantity is None:
            return None  # The engine refuses it.
        margin = command.margin_per_contract
        if margin is None:
            margin = order.margin_per_contract
        needs = collateral.needs_of_order(
            order, self.instrument, command.quantity, command.price, margin
        )
        # The order's holds, and what the replace brought beyond them at acceptance (which
        # join them when it is applied).
        holds = [*self.active.get(order.pk, []), *self.fresh.get(command.pk, [])]
        short = []
        for need in needs:
            held = sum(
                self.remaining[hold.pk] for hold in holds if hold.account_id == need.account.pk
            )
            if held < need.amount:
                short.append(replace(need, amount=need.amount - held))
        if not short:
            return None
        if order.pk not in self.active:
            # An order whose holds were released has left the book (expired since, say):
            # nothing to top up.
            return short[0].code
        return self._top_up(order, command, short)

    def _untrim(
        self, order: Order, short: list[collateral.Need], *, apply: bool
    ) -> list[collateral.Need]:
        """What is still short of ``short`` once what this batch trimmed off the order's holds
        is taken back (``apply``: take it back)."""
        left = []
        for need in short:
            gap = need.amount
            for hold_id, (hold, released) in list(self.reductions.items()):
                row = self.rows[hold_id]
                if gap == 0 or row.order_id != order.pk or hold.account_id != need.account.pk:
                    continue
                back = min(gap, released)
                gap -= back
                if not apply:
                    continue
                if self.remaining[hold_id] == 0:  # Trimmed away whole: it holds again.
                    self.active.setdefault(order.pk, []).append(hold)
                    self._set_active(hold, True)
                self.remaining[hold_id] += back
                if back == released:
                    del self.reductions[hold_id]
                else:
                    self.reductions[hold_id] = (hold, released - back)
            if gap:
                left.append(replace(need, amount=gap))
        return left

    def _top_up(
        self, order: Order, command: OrderCommand, short: list[collateral.Need]
    ) -> OrderRejectCode | None:
        """A replace accepted on the order's own holds (with what it needed beyond them then)
        finds them lowered since, by fills or a trim (``trim``) applied before it: hold the
        difference now, from what the account has available, as acceptance would have; the
        replace's refusal when it has not. What this batch's trims of the order released and
        has not posted yet is taken back first (the ledger does not have it back until the
        batch's flush). New holds join the order's in a savepoint, so a refusal leaves the
        batch's other work as it was."""
        left = self._untrim(order, short, apply=False)
        rows: list[OrderHold] = []
        if left:
            try:
                with transaction.atomic():
                    rows = collateral.holds_place(
                        order, left, f"order:{order.pk}:replace:{command.pk}:top-up"
                    )
            except LedgerError as error:
                codes = (LedgerErrorCode.INSUFFICIENT_FUNDS, LedgerErrorCode.AMOUNT_INVALID)
                if error.code not in codes:
                    raise
                return short[0].code  # Refused: the trims stand.
        self._untrim(order, short, apply=True)
        if rows:
            # Inserted without their ids coming back (``holds_place``): read once, since a
            # trim or close in this batch updates the rows (``_set_active``) by id.
            holds = {row.hold.pk: row.hold for row in rows}
            for stored in OrderHold.objects.filter(hold_id__in=list(holds)):
                self._register(stored, holds[stored.hold_id])
        return None

    # Events -------------------------------------------------------------------------------

    def _consume(
        self,
        order: Order,
        account: LedgerAccount,
        amount: int,
        consumed: list[tuple[Hold, int]],
    ) -> None:
        if amount == 0:
            return
        self.load({order.pk})
        # An order may hold one account in several holds: a replace's top-up (``_top_up``) or a
        # trimmed hold taken back (``_untrim``) joins the order's first. A fill takes from them
        # in turn; until 2026-12-07 it took from the first alone, and a fill larger than that
        # one's rest raised here, rolling back every batch of the instrument: its book stalled.
        holds = [hold for hold in self.active.get(order.pk, ()) if hold.account_id == account.pk]
        if not holds:
            raise SettlementError(f"Order #{order.pk} has no pending hold on {account.code}.")
        held = sum(self.remaining[hold.pk] for hold in holds)
        if amount > held:
            raise SettlementError(
                f"Order #{order.pk} would take {amount} from its holds on {account.code} "
                f"(#{', #'.join(str(hold.pk) for hold in holds)}), which have {held} left."
            )
        left = amount
        for hold in holds:
            take = min(left, self.remaining[hold.pk])
            if take == 0:
                continue
            self.remaining[hold.pk] -= take
            consumed.append((hold, take))
            left -= take
            if left == 0:
                return

    def trade(
        self,
        sequence: int,
        price: Decimal,
        quantity: int,
        buyer: Order,
        seller: Order,
        maker: Order,
    ) -> tuple[int, int]:
        """Add the entry of one trade, before the orders count its fill; return the buyer's
        and the seller's fee (micro-USD), each after its order's block tier with this fill."""
        notional = collateral.notional_micros(price, quantity, self.hours)
        postings: list[tuple[LedgerAccount, int]] = []
        consumed: list[tuple[Hold, int]] = []
        side_fees: list[int] = []
        for order, sign in ((buyer, 1), (seller, -1)):
            fee = collateral.fill_fee_micros(self.kind, order, order is maker, quantity, notional)
            side_fees.append(fee)
            if self.kind == Instrument.Kind.RESALE:
                self._resale_side(order, sign, quantity, notional, fee, postings, consumed)
            else:
                self._contract_side(order, sign, quantity, notional, fee, postings, consumed)
        fees = sum(side_fees)
        if fees:
            postings.append((self._ledger(house_account_code("fees"), fees_account), -fees))
        symbol = self.instrument.symbol
        self.specs.append(
            EntrySpec(
                key=f"trade:{self.instrument.pk}:{sequence}",
                description=f"Trade {symbol}: {quantity} @ {price.normalize():f}",
                postings=tuple(postings),
                holds=tuple(consumed),
                metadata={
                    "instrument": symbol,
                    "sequence": sequence,
                    "price": str(price),
                    "quantity": quantity,
                    "buyer": buyer.account_id,
                    "seller": seller.account_id,
                },
            )
        )
        return side_fees[0], side_fees[1]

    def _contract_side(
        self,
        order: Order,
        sign: int,
        quantity: int,
        notional: int,
        fee: int,
        postings: list[tuple[LedgerAccount, int]],
        consumed: list[tuple[Hold, int]],
    ) -> None:
        account_id = order.account_id
        stub = Account(pk=account_id)
        symbol = self.instrument.symbol
        party = self._party(account_id)
        opening, closing = split_fill(party.position, sign * quantity)
        release = 0
        if closing:
            held = party.margin
            release = (
                held if closing == abs(party.position) else held * closing // abs(party.position)
            )
        margin_taken = order.margin_per_contract * opening
        premium = notional if self.kind == Instrument.Kind.OPTION else 0
        # A writer's opening contracts keep the premium they receive as margin: the end of the
        # day requires the buy-back value on top of the scan risk (``services.margin``), and
        # the premium is what pays it. Paid into cash, it could be spent or withdrawn first,
        # and the evening's requirement then found the writer short (a margin call on a
        # position unchanged since its acceptance; until 2026-12-07).
        premium_kept = premium // quantity * opening if sign < 0 else 0
        cash = self._cash(account_id)
        take = margin_taken + fee + (premium if sign > 0 else 0)
        if take:
            postings.append((cash, take))
            self._consume(order, cash, take, consumed)
        if premium and sign < 0 and premium > premium_kept:
            postings.append((cash, -(premium - premium_kept)))
        if margin_taken or release or premium_kept:
            margin = self._ledger(
                margin_account_code(stub, symbol), lambda: margin_account(stub, symbol)
            )
            if margin_taken or premium_kept:
                postings.append((margin, -(margin_taken + premium_kept)))
            if release:
                postings += [(margin, release), (cash, -release)]
        position = self._ledger(
            position_account_code(stub, symbol), lambda: position_account(stub, symbol)
        )
        cost = self._ledger(cost_account_code(stub, symbol), lambda: cost_account(stub, symbol))
        postings += [(position, sign * quantity), (cost, sign * notional)]
        party.position += sign * quantity
        party.margin += margin_taken + premium_kept - release

    def _resale_side(
        self,
        order: Order,
        sign: int,
        quantity: int,
        notional: int,
        fee: int,
        postings: list[tuple[LedgerAccount, int]],
        consumed: list[tuple[Hold, int]],
    ) -> None:
        cash = self._cash(order.account_id)
        if sign > 0:
            postings.append((cash, notional + fee))
            self._consume(order, cash, notional + fee, consumed)
        else:
            # The proceeds less the fee, in one posting: a seller's statement reads one line for
            # the trade, as a buyer's does (two lines of one description, the fee's unnamed,
            # until 2026-12-07).
            postings.append((cash, -notional + fee))
        for month, hours in self._months_of_term():
            account = self._entitlement(order.account_id, month)
            postings.append((account, sign * hours * quantity))
            if sign < 0:
                self._consume(order, account, hours * quantity, consumed)

    def close(self, order: Order) -> None:
        """The order left the book: release what its holds have left."""
        self.load({order.pk})
        for hold in self.active.pop(order.pk, []):
            self.voids[hold.pk] = hold

    def trim(self, order: Order) -> None:
        """The order still rests but needs less held than its holds have left: part of it was
        cancelled (self-trade prevention's decrement), a replace lowered its quantity or its
        price, or a fill took less than its share of the hold (a maker's fee below the taker
        rate the hold covers, a buyer filled below its price, contracts that closed a position
        and took no margin). Release the difference now rather than when the order leaves the
        book, so the account's available cash (or GPU-hours) is what its orders need."""
        self.load({order.pk})
        holds = self.active.get(order.pk)
        if not holds:
            return
        price = order.price if order.price is not None else order.protection_price
        assert price is not None
        # What the open quantity needs held, by ledger account id: ``amounts_for`` (as
        # ``needs_of_order``) on the accounts this settlement has already read, since this runs
        # after every partial fill and ``needs_for`` would read or open each account again.
        needs: dict[int, int] = {}
        for part in collateral.amounts_for(
            self.instrument,
            order.side,
            price,
            order.open_quantity,
            order.margin_per_contract,
            order.maker_fee_rate,
            order.taker_fee_rate,
        ):
            if part.month is None:
                account = self._cash(order.account_id)
            else:
                account = self._entitlement(order.account_id, part.month)
            needs[account.pk] = part.amount
        for account_id in {hold.account_id for hold in holds}:
            mine = [hold for hold in holds if hold.account_id == account_id]
            excess = sum(self.remaining[hold.pk] for hold in mine) - needs.get(account_id, 0)
            for hold in reversed(mine):
                if excess <= 0:
                    break
                take = min(excess, self.remaining[hold.pk])
                excess -= take
                self.remaining[hold.pk] -= take
                _, before = self.reductions.get(hold.pk, (hold, 0))
                self.reductions[hold.pk] = (hold, before + take)
                if self.remaining[hold.pk] == 0:  # Released in full: the ledger voids it.
                    holds.remove(hold)
                    self._set_active(hold, False)

    def replaced(self, order: Order, command: OrderCommand) -> None:
        """A replace was applied: its holds, if it brought any (what it needed beyond the
        order's), join the order's; ``trim`` then releases what the order no longer needs."""
        fresh = self.fresh.pop(command.pk, None)
        if fresh is not None:
            for hold in fresh:
                self._set_active(hold, True)
            self.active.setdefault(order.pk, []).extend(fresh)
        if command.margin_per_contract is not None:
            order.margin_per_contract = command.margin_per_contract

    def replace_refused(self, command: OrderCommand) -> None:
        for hold in self.fresh.pop(command.pk, []):
            self.voids[hold.pk] = hold

    def _set_active(self, hold: Hold, active: bool) -> None:
        row = self.rows[hold.pk]
        row.active = active
        self.changed_rows[row.pk] = row

    def flush(self) -> None:
        """Post every entry and release, in the caller's (the matcher's) transaction."""
        settlements_flush([self])


def settlements_flush(settlements: list[Settlement]) -> None:
    """Post the entries and releases of several instruments' settlements (one matcher
    transaction) with one ``entries_post``: one lock of the holds and one conditional UPDATE
    per ledger account for all of them."""
    changed = [row for settlement in settlements for row in settlement.changed_rows.values()]
    if changed:
        OrderHold.objects.bulk_update(changed, ["active"])
    voids = [hold for settlement in settlements for hold in settlement.voids.values()]
    reductions = [pair for settlement in settlements for pair in settlement.reductions.values()]
    specs = [spec for settlement in settlements for spec in settlement.specs]
    # Keys name trades this transaction creates (instrument, sequence): never used before. A
    # refusal rolls the whole matcher transaction back, so no savepoint is needed.
    while len(specs) > ENTRIES_PER_BATCH_MAX:
        entries_post(specs[:ENTRIES_PER_BATCH_MAX], fresh_keys=True, savepoint=False)
        specs = specs[ENTRIES_PER_BATCH_MAX:]
    if specs or voids or reductions:
        entries_post(
            specs, void_holds=voids, reduce_holds=reductions, fresh_keys=True, savepoint=False
        )


def settlements_load(wanted: dict[Settlement, set[int]]) -> None:
    """``Settlement.load`` for several instruments' settlements (one matcher transaction) in
    one query: the pending holds of the orders each has not loaded yet."""
    owner: dict[int, Settlement] = {}
    for settlement, order_ids in wanted.items():
        for order_id in order_ids - settlement.loaded:
            owner[order_id] = settlement
    if not owner:
        return
    rows = cast(list[tuple[OrderHold, Hold]], PENDING_HOLDS_OF_ORDERS.rows_in(sorted(owner)))
    for row, hold in rows:
        owner[row.order_id]._register(row, hold)
    for order_id, settlement in owner.items():
        settlement.loaded.add(order_id)
