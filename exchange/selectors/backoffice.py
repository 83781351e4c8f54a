"""What the operations dashboard shows staff: the market's state today, open interest per
instrument and exposure per account. Reads only."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from django.db.models import Count, F, Sum
from django.utils import timezone

from exchange.models import (
    LIVE_STATUSES,
    Account,
    Instrument,
    MarginCall,
    Order,
    RiskCycle,
    SettlementPrice,
    Trade,
    Withdrawal,
)
from exchange.selectors.funding import cash_balance
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity

POSITION_CODE_PREFIX = "trading:"
POSITION_MARKER = ":position:"


@dataclass(frozen=True)
class MarketToday:
    instruments_by_status: dict[str, int]
    live_orders: int
    trades_today: int
    contracts_today: int
    open_margin_calls: int
    pending_withdrawals: int
    last_cycle: RiskCycle | None


@dataclass(frozen=True)
class OpenInterest:
    instrument: Instrument
    contracts: int  # Sum of the long positions (equal to the shorts').
    holders: int
    mark: Decimal | None  # Latest settlement, $/GPU-hr.
    notional: Decimal | None  # contracts x GPU-hours x mark, USD.


@dataclass(frozen=True)
class Exposure:
    account: Account
    long_contracts: int
    short_contracts: int
    gross_notional: Decimal  # USD at the latest settlement; positions without one count 0.
    cash: Decimal
    held: Decimal
    margin_call: MarginCall | None


def market_today(today: date) -> MarketToday:
    start = timezone.make_aware(datetime.combine(today, time.min))
    by_status = dict(
        Instrument.objects.values_list("status").annotate(n=Count("id")).order_by("status")
    )
    trades = Trade.objects.filter(executed_at__gte=start).aggregate(
        count=Count("id"), contracts=Sum("quantity")
    )
    return MarketToday(
        instruments_by_status=by_status,
        live_orders=Order.objects.filter(status__in=LIVE_STATUSES).count(),
        trades_today=trades["count"] or 0,
        contracts_today=trades["contracts"] or 0,
        open_margin_calls=MarginCall.objects.filter(status=MarginCall.Status.OPEN).count(),
        pending_withdrawals=Withdrawal.objects.filter(status=Withdrawal.Status.REQUESTED).count(),
        last_cycle=RiskCycle.objects.order_by("-trading_date").first(),
    )


def _positions() -> list[tuple[int, str, int]]:
    """(trading account id, instrument symbol, contracts) of every non-flat position."""
    rows = LedgerAccount.objects.filter(
        commodity__kind=Commodity.Kind.POSITION, code__startswith=POSITION_CODE_PREFIX
    ).exclude(debits_posted=F("credits_posted"))
    result = []
    for code, debits, credits in rows.values_list("code", "debits_posted", "credits_posted"):
        account_part, _, symbol = code[len(POSITION_CODE_PREFIX) :].partition(POSITION_MARKER)
        if symbol and account_part.isdigit():
            result.append((int(account_part), symbol, debits - credits))
    return result


def _marks(symbols: set[str]) -> dict[str, Decimal]:
    """Each instrument's latest settlement price, else its last trade's price."""
    latest: dict[str, Decimal] = {}
    rows = (
        SettlementPrice.objects.filter(instrument__symbol__in=symbols)
        .order_by("instrument__symbol", "-trading_date")
        .values_list("instrument__symbol", "price")
    )
    for symbol, price in rows:
        latest.setdefault(symbol, price)
    unsettled = symbols - set(latest)
    if unsettled:
        trades = (
            Trade.objects.filter(instrument__symbol__in=unsettled)
            .order_by("instrument__symbol", "-sequence")
            .values_list("instrument__symbol", "price")
        )
        for symbol, price in trades:
            latest.setdefault(symbol, price)
    return latest


def open_interest() -> list[OpenInterest]:
    """Instruments with open positions, largest open interest first."""
    longs: dict[str, int] = defaultdict(int)
    holders: dict[str, int] = defaultdict(int)
    for _account_id, symbol, contracts in _positions():
        if contracts > 0:
            longs[symbol] += contracts
        holders[symbol] += 1
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=list(holders))}
    marks = _marks(set(holders))
    rows = []
    for symbol, instrument in instruments.items():
        mark = marks.get(symbol)
        contracts = longs[symbol]
        notional = (
            (mark * contracts * instrument.gpu_hours_per_contract).quantize(Decimal("0.01"))
            if mark is not None
            else None
        )
        rows.append(OpenInterest(instrument, contracts, holders[symbol], mark, notional))
    return sorted(rows, key=lambda row: (-row.contracts, row.instrument.symbol))


def exposures() -> list[Exposure]:
    """Every trading account with a position or an open margin call, largest gross notional
    first."""
    positions = _positions()
    symbols = {symbol for _, symbol, _ in positions}
    hours = dict(
        Instrument.objects.filter(symbol__in=symbols).values_list(
            "symbol", "gpu_hours_per_contract"
        )
    )
    marks = _marks(symbols)
    longs: dict[int, int] = defaultdict(int)
    shorts: dict[int, int] = defaultdict(int)
    gross: dict[int, Decimal] = defaultdict(Decimal)
    for account_id, symbol, contracts in positions:
        if contracts > 0:
            longs[account_id] += contracts
        else:
            shorts[account_id] += -contracts
        mark = marks.get(symbol)
        if mark is not None and symbol in hours:
            gross[account_id] += abs(contracts) * hours[symbol] * mark
    calls = {
        call.account_id: call for call in MarginCall.objects.filter(status=MarginCall.Status.OPEN)
    }
    accounts = Account.objects.filter(pk__in=set(longs) | set(shorts) | set(calls)).select_related(
        "organization"
    )
    rows = []
    for account in accounts:
        balance = cash_balance(account)
        rows.append(
            Exposure(
                account=account,
                long_contracts=longs[account.pk],
                short_contracts=shorts[account.pk],
                gross_notional=gross[account.pk].quantize(Decimal("0.01")),
                cash=balance.posted,
                held=balance.pending,
                margin_call=calls.get(account.pk),
            )
        )
    return sorted(rows, key=lambda row: (-row.gross_notional, row.account.pk))
