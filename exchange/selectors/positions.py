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

from django.db.models import Q

from exchange.models import Account, Instrument
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
