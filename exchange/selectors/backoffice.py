"""What the back office shows staff: the market's state today, instruments by trading status,
open interest per instrument, exposure per account and the audit log. Reads only."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from django.db import connection, models
from django.db.models import (
    Case,
    Count,
    DecimalField,
    F,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.utils import timezone

from exchange.models import (
    LIVE_STATUSES,
    RESTING_STATUSES,
    Account,
    AuditEntry,
    Instrument,
    MarginCall,
    Order,
    RiskCycle,
    Trade,
    Withdrawal,
)
from exchange.models.catalog import InstrumentQuerySet
from exchange.selectors.marks import marks_for
from exchange.services.ledger_accounts import USD_CODE, micros_to_usd
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity

POSITION_CODE_PREFIX = "trading:"
POSITION_MARKER = ":position:"
MARGIN_MARKER = ":margin:"
CASH_SUFFIX = f":cash:{USD_CODE}"
DEFICIT_SUFFIX = f":deficit:{USD_CODE}"
CENT = Decimal("0.01")
# Prices have at most 6 decimals; a sum of price x contracts keeps them. (The annotation is
# quoted: Django's fields cannot be subscripted at run time.)
PRICE_SUM_FIELD: "DecimalField[Decimal, Decimal]" = DecimalField(max_digits=30, decimal_places=6)
EXPOSURE_ROWS_MAX = 500  # The exposure page lists the largest accounts first, this many at most.


@dataclass(frozen=True)
class MarketToday:
    instruments_trading: int
    instruments_halted: int
    instruments_expired: int
    live_orders: int
    trades_today: int
    contracts_today: int
    gpu_hours_today: int
    traded_value_today: Decimal  # USD: price x contracts x GPU-hours per contract.
    open_margin_calls: int
    pending_withdrawals: int
    # Approved withdrawals not paid yet: a payout Stripe did not confirm waits there, its funds
    # held, until finance approve it again (nothing retries it on its own).
    payouts_to_retry: int
    last_cycle: RiskCycle | None


@dataclass(frozen=True)
class OpenInterest:
    instrument: Instrument
    contracts: int  # Sum of the long positions (equal to the shorts').
    holders: int
    mark: Decimal | None  # Latest settlement, else last trade, $/GPU-hr.
    notional: Decimal | None  # contracts x GPU-hours x mark, USD.


@dataclass(frozen=True)
class Position:
    symbol: str
    contracts: int  # Long positive, short negative.
    notional: Decimal | None  # |contracts| x GPU-hours x mark, USD; None without a mark.


@dataclass(frozen=True)
class Exposure:
    account: Account
    positions: list[Position]
    long_contracts: int
    short_contracts: int
    gross_notional: Decimal  # USD at the marks; positions without one count 0.
    unmarked: int  # Positions without a mark (not in the gross notional).
    cash: Decimal  # USD the exchange owes the account (posted).
    held: Decimal  # USD of the cash held for orders and withdrawals (pending).
    margin: Decimal  # USD of initial margin set aside for its positions.
    deficit: Decimal  # USD of losses it could not pay: owed to the exchange.
    margin_call: MarginCall | None


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def market_today(now: datetime) -> MarketToday:
    """The market at ``now``. Trading counts the active instruments that trade at ``now``: one
    whose last trading day has closed stops trading then, though it stays active until the
    daily run expires it (``InstrumentQuerySet.trading_at``); an option of a halted future does
    not trade. Halted counts the instruments halted as trading sees them, the options of a
    halted future with it (``InstrumentQuerySet.in_trading_status``), as the trading status
    page's Halted filter lists them."""
    today = now.date()
    by_status = dict(Instrument.objects.order_by().values_list("status").annotate(n=Count("id")))
    # An option trades only while its future is not halted (``Instrument.halted_by``), whatever
    # its own status says: a halt of the future leaves its options' status as it is.
    trading = Instrument.objects.trading_at(now).in_trading_status(Instrument.Status.ACTIVE).count()
    trades = Trade.objects.filter(executed_at__gte=_start_of(today)).order_by()
    totals = trades.aggregate(
        count=Count("id"),
        contracts=Sum("quantity"),
        gpu_hours=Sum(
            F("quantity") * F("instrument__gpu_hours_per_contract"),
            output_field=IntegerField(),
        ),
    )
    # The traded value in one GROUP BY per contract size: price x contracts summed in the
    # database, times the GPU-hours here.
    value = Decimal(0)
    for hours, priced in trades.values_list("instrument__gpu_hours_per_contract").annotate(
        priced=Sum(F("price") * F("quantity"), output_field=PRICE_SUM_FIELD)
    ):
        value += priced * hours
    return MarketToday(
        instruments_trading=trading,
        instruments_halted=Instrument.objects.in_trading_status(Instrument.Status.HALTED).count(),
        instruments_expired=by_status.get(Instrument.Status.EXPIRED, 0),
        live_orders=Order.objects.filter(status__in=LIVE_STATUSES).count(),
        trades_today=totals["count"] or 0,
        contracts_today=totals["contracts"] or 0,
        gpu_hours_today=totals["gpu_hours"] or 0,
        traded_value_today=value.quantize(CENT),
        open_margin_calls=MarginCall.objects.filter(status=MarginCall.Status.OPEN).count(),
        pending_withdrawals=Withdrawal.objects.filter(status=Withdrawal.Status.REQUESTED).count(),
        payouts_to_retry=Withdrawal.objects.filter(status=Withdrawal.Status.APPROVED).count(),
        last_cycle=RiskCycle.objects.order_by("-trading_date").first(),
    )


def instruments_listed(
    *, status: str = "", kind: str = "", symbol: str = ""
) -> QuerySet[Instrument]:
    """Instruments for the trading status page, with their resting orders counted, and an
    option's future (``Instrument.halted_by``: a halted future halts its options). ``status``
    is the status as trading sees it (``InstrumentQuerySet.in_trading_status``): the options of
    a halted future are halted, though their own status says active."""
    rows = Instrument.objects.select_related("sku", "region", "underlying").annotate(
        resting_orders=Count("orders", filter=Q(orders__status__in=RESTING_STATUSES))
    )
    if status:
        rows = rows.in_trading_status(status)
    if kind:
        rows = rows.filter(kind=kind)
    if symbol:
        rows = rows.filter(symbol__icontains=symbol)
    # Halted first (the options of a halted future with them): what staff look for; then
    # trading, then expired.
    order = Case(
        When(InstrumentQuerySet.halted_condition(), then=Value(0)),
        When(status=Instrument.Status.ACTIVE, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return rows.order_by(order, "symbol")


def resting_orders_in(instrument: Instrument) -> int:
    return Order.objects.filter(instrument=instrument, status__in=RESTING_STATUSES).count()


def resting_orders_by_instrument(instrument_ids: list[int]) -> dict[int, int]:
    """Resting orders per instrument id, for the instruments given (absent: none)."""
    rows = (
        Order.objects.filter(instrument_id__in=instrument_ids, status__in=RESTING_STATUSES)
        .order_by()
        .values_list("instrument_id")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def _positions(account_ids: list[int] | None = None) -> list[tuple[int, str, int]]:
    """(trading account id, instrument symbol, contracts) of every non-flat position, or of
    those of ``account_ids``."""
    rows = LedgerAccount.objects.filter(
        commodity__kind=Commodity.Kind.POSITION, code__startswith=POSITION_CODE_PREFIX
    ).exclude(debits_posted=F("credits_posted"))
    if account_ids is not None:
        # Each account's position codes start "trading:<id>:position:", so one prefix each.
        prefixes = Q(pk__in=[])
        for account_id in account_ids:
            prefixes |= Q(code__startswith=f"{POSITION_CODE_PREFIX}{account_id}{POSITION_MARKER}")
        rows = rows.filter(prefixes)
    result = []
    for code, debits, credits in rows.values_list("code", "debits_posted", "credits_posted"):
        account_part, _, symbol = code[len(POSITION_CODE_PREFIX) :].partition(POSITION_MARKER)
        if symbol and account_part.isdigit():
            result.append((int(account_part), symbol, debits - credits))
    return result


def _marks(symbols: set[str]) -> dict[str, Decimal]:
    """Each instrument's mark (``selectors.marks``), as its holders' portfolios show it."""
    instruments = list(Instrument.objects.filter(symbol__in=symbols).only("pk", "symbol"))
    marks = marks_for(instruments)
    return {i.symbol: marks[i.pk].price for i in instruments if i.pk in marks}


def positions_by_account(account_ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """The non-flat positions of the accounts given: (symbol, contracts, long positive), by
    symbol."""
    held: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for account_id, symbol, contracts in sorted(_positions(account_ids)):
        held[account_id].append((symbol, contracts))
    return dict(held)


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
            (mark * contracts * instrument.gpu_hours_per_contract).quantize(CENT)
            if mark is not None
            else None
        )
        rows.append(OpenInterest(instrument, contracts, holders[symbol], mark, notional))
    return sorted(rows, key=lambda row: (-row.contracts, row.instrument.symbol))


def _usd_by_account(marker: str) -> tuple[dict[int, int], dict[int, int]]:
    """Per trading account id: (credit balance, pending debits) in micro-USD, summed over its
    USD accounts whose code contains ``marker`` (cash and margin are liabilities: what the
    exchange owes is their credit balance)."""
    balances: dict[int, int] = defaultdict(int)
    pending: dict[int, int] = defaultdict(int)
    rows = LedgerAccount.objects.filter(
        code__startswith=POSITION_CODE_PREFIX, code__contains=marker, commodity__code=USD_CODE
    ).values_list("code", "debits_posted", "credits_posted", "debits_pending")
    for code, debits, credits, debits_pending in rows:
        account_part = code[len(POSITION_CODE_PREFIX) :].partition(":")[0]
        if account_part.isdigit():
            balances[int(account_part)] += credits - debits
            pending[int(account_part)] += debits_pending
    return balances, pending


def exposures() -> list[Exposure]:
    """Every trading account with a position or an open margin call, largest gross notional
    first (at most ``EXPOSURE_ROWS_MAX``)."""
    positions = _positions()
    symbols = {symbol for _, symbol, _ in positions}
    hours = dict(
        Instrument.objects.filter(symbol__in=symbols).values_list(
            "symbol", "gpu_hours_per_contract"
        )
    )
    marks = _marks(symbols)
    held_positions: dict[int, list[Position]] = defaultdict(list)
    for account_id, symbol, contracts in sorted(positions, key=lambda row: (row[0], row[1])):
        mark = marks.get(symbol)
        notional = (
            (abs(contracts) * hours[symbol] * mark).quantize(CENT)
            if mark is not None and symbol in hours
            else None
        )
        held_positions[account_id].append(Position(symbol, contracts, notional))
    calls = {
        call.account_id: call for call in MarginCall.objects.filter(status=MarginCall.Status.OPEN)
    }
    cash, cash_held = _usd_by_account(CASH_SUFFIX)
    margin, _ = _usd_by_account(MARGIN_MARKER)
    owed, _ = _usd_by_account(DEFICIT_SUFFIX)  # A receivable: its balance is a debit.
    accounts = Account.objects.filter(pk__in=set(held_positions) | set(calls)).select_related(
        "organization"
    )
    rows = []
    for account in accounts:
        held = held_positions.get(account.pk, [])
        rows.append(
            Exposure(
                account=account,
                positions=held,
                long_contracts=sum(p.contracts for p in held if p.contracts > 0),
                short_contracts=-sum(p.contracts for p in held if p.contracts < 0),
                gross_notional=sum(
                    (p.notional for p in held if p.notional is not None), Decimal(0)
                ).quantize(CENT),
                unmarked=sum(1 for p in held if p.notional is None),
                cash=micros_to_usd(cash.get(account.pk, 0)),
                held=micros_to_usd(cash_held.get(account.pk, 0)),
                margin=micros_to_usd(margin.get(account.pk, 0)),
                deficit=micros_to_usd(-owed.get(account.pk, 0)),
                margin_call=calls.get(account.pk),
            )
        )
    rows.sort(key=lambda row: (-row.gross_notional, row.account.pk))
    return rows[:EXPOSURE_ROWS_MAX]


def audit_entries(
    *, actor: str = "", action: str = "", target_type: str = "", target_id: str = ""
) -> QuerySet[AuditEntry]:
    """The audit log, newest first, filtered by actor (user name or system label, exact),
    action (exact, or a prefix ending in a dot: ``withdrawal.``) and target."""
    rows = AuditEntry.objects.select_related("actor").order_by("-created_at", "-id")
    if actor:
        rows = rows.filter(actor_label=actor)
    if action:
        rows = (
            rows.filter(action__startswith=action)
            if action.endswith(".")
            else rows.filter(action=action)
        )
    if target_type:
        rows = rows.filter(target_type=target_type)
    if target_id:
        rows = rows.filter(target_id=target_id)
    return rows


# The distinct values of an indexed column of the audit log, in order, one index seek each (a
# "loose index scan": each step asks the index for the next value above the last one), at most
# the limit (the query's one parameter) of them. A SELECT DISTINCT read the whole log instead,
# twice on every audit log page. Plain SQL that SQLite and PostgreSQL both run.
DISTINCT_BY_INDEX_SQL = """
WITH RECURSIVE found(value, position) AS (
    SELECT (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1), 1
    UNION ALL
    SELECT (SELECT {column} FROM {table} WHERE {column} > found.value ORDER BY {column} LIMIT 1),
           found.position + 1
    FROM found
    WHERE found.value IS NOT NULL AND found.position < %s
)
SELECT value FROM found WHERE value IS NOT NULL ORDER BY position
"""
# The services' action names and the models they act on are a few dozen each (not user input).
AUDIT_CHOICES_MAX = 200


def _audit_distinct(field: str) -> list[str]:
    """The values of ``field`` (one with an index that starts with it) that occur in the log,
    sorted, at most ``AUDIT_CHOICES_MAX``."""
    meta = AuditEntry._meta
    column = meta.get_field(field)
    assert isinstance(column, models.Field) and column.column, field
    quote = connection.ops.quote_name
    sql = DISTINCT_BY_INDEX_SQL.format(table=quote(meta.db_table), column=quote(column.column))
    with connection.cursor() as cursor:
        cursor.execute(sql, [AUDIT_CHOICES_MAX])
        return sorted(value for (value,) in cursor.fetchall())


def rows_in_key_span(model: type[models.Model]) -> int:
    """How many rows the whole table of ``model`` holds, from the ends of its primary key: two
    index seeks where ``COUNT(*)`` reads every row. For tables whose rows are never deleted
    (the audit log, which refuses it, with a trigger on PostgreSQL; orders, trades, settlement
    prices, which no code deletes) and whose key is an auto-incremented integer. This is the
    count, or on PostgreSQL a little above it by the ids of rolled-back inserts (a sequence does
    not give them back): the pages past the last row are then shorter or empty, and no row is
    ever beyond the last page. PostgreSQL's estimate (``pg_class.reltuples``) was not used: it
    is only as recent as the last ANALYZE, so it can fall short and leave the oldest rows on no
    page, and it is unknown before the first."""
    key = model._meta.pk
    assert isinstance(key, models.AutoField), f"{model.__name__}: no auto-incremented key"
    ids = model._default_manager.order_by("pk").values_list("pk", flat=True)
    first = ids.first()
    last = ids.reverse().first()
    return 0 if first is None or last is None else last - first + 1


def audit_choices() -> tuple[list[str], list[str]]:
    """The actions and the target types that occur in the log, sorted: each read through its
    index (``audit_action``, ``audit_target``), one seek per value, not the whole log."""
    return _audit_distinct("action"), _audit_distinct("target_type")
