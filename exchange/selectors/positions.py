"""Reads of a trading account's futures and options positions, from the ledger.

For each instrument an account has traded, the ledger holds (``exchange.services.ledger_accounts``)
its position in contracts, the cost memo (the value it traded at, in micro-USD; bought is a
debit, sold a credit) and the initial margin set aside for it. Profit or loss is what the
position is worth at the mark, less its cost; once the position is flat it is the profit or
loss realized, ``-cost``. Fees are not part of the cost. The mark is the most recent of the
instrument's latest settlement price and its last trade (``exchange.selectors.marks``).
For futures, the daily risk cycle pays each day's profit or loss in cash (variation margin) and
resets the cost to the settlement value, so their P&L here is what accrued since the last
settlement; an option's cost stays its premium.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Q

from exchange.models import LIVE_STATUSES, Account, Instrument, Order, OrderCommand, Side
from exchange.selectors.marks import Mark, MarkSource, marks_for
from exchange.services.ledger_accounts import (
    MICROS_PER_USD,
    cost_account_code,
    margin_account_code,
    micros_to_usd,
    owner_of,
    position_account_code,
)
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity

PRICE_QUANTUM = Decimal("0.000001")  # $/GPU-hr: prices have at most 6 decimals.


@dataclass(frozen=True)
class PositionRow:
    """One instrument's position. Money in USD; prices in $/GPU-hr.

    ``average_price`` is the cost per GPU-hour of the open contracts (the break-even price: after
    a partial close it includes what was realized); ``mark_price`` is the most recent of the
    latest settlement price and the last trade, ``mark_source`` says which; they, ``market_value``
    and ``pnl`` are None while the instrument has neither to mark an open position at.
    """

    instrument: Instrument
    contracts: int  # Long positive, short negative.
    gpu_hours: int  # contracts x GPU-hours per contract.
    cost: Decimal
    average_price: Decimal | None
    mark_price: Decimal | None
    mark_source: MarkSource | None
    market_value: Decimal | None
    pnl: Decimal | None
    margin: Decimal  # Initial margin held for the position.


def contracts_in(account: Account, instrument: Instrument) -> int:
    """``account``'s position in ``instrument``, contracts (long positive)."""
    row = LedgerAccount.objects.filter(
        code=position_account_code(account, instrument.symbol)
    ).first()
    return row.balance if row is not None else 0


@dataclass(frozen=True)
class Exposure:
    """An organization's exposure to one future, in contracts, as its position limit counts
    it (``orders.check_position_limit``): the future and each of its options one contract
    each, a long call or a short put long, a long put or a short call short.

    ``net``: all its accounts' positions together, long positive. ``resting``: what its live
    orders on one side of the exposure (buys of the future and calls and sells of puts for the
    long side; the others for the short side) may still trade, less those whose cancel is
    queued for the matcher (they trade nothing a later order could count on)."""

    net: int
    resting: int


def _exposure_sql() -> str:
    """The statement of ``organization_exposure``, built from the tables' names once used."""
    quote = connection.ops.quote_name
    instrument = quote(Instrument._meta.db_table)
    account = quote(Account._meta.db_table)
    order = quote(Order._meta.db_table)
    command = quote(OrderCommand._meta.db_table)
    ledger_account = quote(LedgerAccount._meta.db_table)
    statuses = ", ".join(f"'{status}'" for status in LIVE_STATUSES)
    put = Instrument.OptionType.PUT
    # The position's ledger account by its code (``ledger_accounts.position_account_code``),
    # the unique index's exact match: trading:<account id>:position:<symbol>.
    position_code = "'trading:' || CAST(a.id AS VARCHAR(20)) || ':position:' || i.symbol"
    return f"""
        SELECT
          (SELECT COALESCE(SUM(CASE WHEN i.option_type = '{put}'
                                    THEN l.credits_posted - l.debits_posted
                                    ELSE l.debits_posted - l.credits_posted END), 0)
             FROM {account} a
             JOIN {instrument} i ON (i.id = %s OR i.underlying_id = %s)
             JOIN {ledger_account} l ON l.code = {position_code}
            WHERE a.organization_id = %s),
          (SELECT COALESCE(SUM(
             -- Per account and instrument of the future's family: the live orders found by
             -- the partial index order_live_by_instrument on both, not all the account's.
             (SELECT COALESCE(SUM(o.quantity - o.filled_quantity - o.cancelled_quantity), 0)
                FROM {order} o
               WHERE o.account_id = a.id AND o.instrument_id = i.id
                 AND o.status IN ({statuses})
                 AND o.id <> %s
                 AND o.side = CASE WHEN i.option_type = '{put}' THEN %s ELSE %s END
                 AND NOT EXISTS (
                   SELECT 1 FROM {command} c
                    WHERE c.order_id = o.id AND c.status = '{OrderCommand.Status.PENDING}'
                      AND (c.kind = '{OrderCommand.Kind.CANCEL}'
                           OR (c.kind = '{OrderCommand.Kind.REPLACE}' AND c.quantity = 0))))),
             0)
             FROM {account} a
             JOIN {instrument} i ON (i.id = %s OR i.underlying_id = %s)
            WHERE a.organization_id = %s)
    """


def organization_exposure(
    *, organization_id: int, future_id: int, side: str, excluding_order_id: int | None = None
) -> Exposure:
    """The organization's ``Exposure`` to the future ``future_id`` and its options, its
    resting orders counted on ``side`` of the exposure (``Side.BUY``: long). One statement:
    the order path runs it for an order that a position limit applies to, and nothing else.

    ``excluding_order_id``: an order left out of the resting ones (a replace counts its new
    quantity instead)."""
    other_side = Side.SELL if side == Side.BUY else Side.BUY
    with connection.cursor() as cursor:
        cursor.execute(
            _exposure_sql(),
            [
                future_id,
                future_id,
                organization_id,
                excluding_order_id or 0,
                str(other_side),
                str(side),
                future_id,
                future_id,
                organization_id,
            ],
        )
        net, resting = cursor.fetchone()
    return Exposure(net=int(net), resting=int(resting))


def positions_of(account: Account) -> list[PositionRow]:
    """``account``'s positions with contracts, cost or margin, by instrument symbol.

    A fixed number of queries, whatever the number of positions: the account's position, cost
    and margin ledger accounts in one, its instruments in one, their marks (``marks_for``).
    """
    prefix = f"trading:{account.pk}:"
    ledger_accounts = {
        row.code: row
        for row in LedgerAccount.objects.filter(owner=owner_of(account))
        .filter(
            Q(commodity__kind=Commodity.Kind.POSITION)
            | Q(code__startswith=f"{prefix}cost:")
            | Q(code__startswith=f"{prefix}margin:")
        )
        .select_related("commodity")
    }
    figures: dict[str, tuple[int, int, int]] = {}  # Symbol: (contracts, cost, margin) in units.
    for row in ledger_accounts.values():
        if row.commodity.kind != Commodity.Kind.POSITION:
            continue
        symbol = row.commodity.code
        cost_account = ledger_accounts.get(cost_account_code(account, symbol))
        margin_account = ledger_accounts.get(margin_account_code(account, symbol))
        figures[symbol] = (
            row.balance,
            cost_account.balance if cost_account else 0,
            # The margin account is a liability: what is held is its credit balance.
            -margin_account.balance if margin_account else 0,
        )
    figures = {symbol: values for symbol, values in figures.items() if any(values)}
    if not figures:
        return []
    instruments = list(Instrument.objects.filter(symbol__in=list(figures)).order_by("symbol"))
    marks = marks_for(instruments)
    rows = []
    for instrument in instruments:
        contracts, cost, margin = figures[instrument.symbol]
        rows.append(_row(instrument, contracts, cost, margin, marks.get(instrument.pk)))
    return rows


def _row(
    instrument: Instrument, contracts: int, cost: int, margin: int, mark: Mark | None
) -> PositionRow:
    """One row from ledger units: contracts, and micro-USD for cost and margin."""
    gpu_hours = contracts * instrument.gpu_hours_per_contract
    value: int | None = None  # Micro-USD.
    if contracts == 0:
        value = 0
    elif mark is not None:
        # A trade or settlement price has at most 6 decimals: the value is whole micro-dollars.
        value = int(mark.price * gpu_hours * MICROS_PER_USD)
    average = None
    if contracts:
        average = (Decimal(cost) / gpu_hours / MICROS_PER_USD).quantize(PRICE_QUANTUM)
    return PositionRow(
        instrument=instrument,
        contracts=contracts,
        gpu_hours=gpu_hours,
        cost=micros_to_usd(cost),
        average_price=average,
        mark_price=None if mark is None else mark.price,
        mark_source=None if mark is None else mark.source,
        market_value=None if value is None else micros_to_usd(value),
        pnl=None if value is None else micros_to_usd(value - cost),
        margin=micros_to_usd(margin),
    )


def portfolio_totals(rows: list[PositionRow]) -> tuple[Decimal, Decimal]:
    """(Margin held, profit or loss) over ``rows``, in USD; rows without a mark add no P&L."""
    margin = sum((row.margin for row in rows), Decimal(0))
    pnl = sum((row.pnl for row in rows if row.pnl is not None), Decimal(0))
    return margin, pnl
