"""The client: one method per endpoint, typed results, one exception for every error.

Prices and money are ``Decimal`` (the API sends them as strings); quantities are ``int``.
Requests are HMAC-signed when the client is made with ``sign=True`` (see docs/API.md).
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import UnionType
from typing import Any, Self, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import requests

from exchange_client.feed import Feed, FeedError

API_PREFIX = "/api/v1"
# A bound on the pages one listing follows: a list longer than that raises rather than ending
# early (its first rows taken for all of them); narrow it with the list's filters.
PAGES_MAX = 1000
# Rows per page the lists ask for (``?limit=``): the most the API gives, its paginator's
# ``max_page_size`` (exchange.api.pagination.NewestFirst); a test holds the two equal. Its
# default page is 100 rows: ten times the requests, and of the key's rate limit, for a list.
PAGE_ROWS = 1000
# Seconds a retried 429 waits when its answer has no ``Retry-After`` in seconds (a proxy's).
RETRY_AFTER_DEFAULT_SECONDS = 1.0
T = TypeVar("T")
# The push feed's scheme for the REST API's, when the feed is on the same server.
FEED_SCHEMES = {"http": "ws", "https": "wss"}


class ApiError(Exception):
    """An error response: the HTTP status and the envelope's stable code, message and field;
    for a rate-limited request (429, ``RATE_LIMITED``), the seconds to wait before the next."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class RateLimit:
    """The key's standing in its rate-limit window, as the last answer gave it."""

    limit: int  # Requests a window allows.
    remaining: int  # Requests left in the current window.
    reset_seconds: int  # Seconds until the current window closes.

    @classmethod
    def of(cls, headers: Any) -> "RateLimit | None":
        try:
            return cls(
                int(headers["RateLimit-Limit"]),
                int(headers["RateLimit-Remaining"]),
                int(headers["RateLimit-Reset"]),
            )
        except (KeyError, ValueError):
            return None


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _datetime(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _digits(value: Decimal | int | str) -> str:
    """A decimal for a request body as the API takes it, digits and a point: never the
    exponent ``str`` gives some decimals (``Decimal("10.00").normalize()`` is ``1E+1``)."""
    return format(Decimal(value), "f")


def _time_param(moment: datetime | None) -> str | None:
    """A time for a query parameter: ISO 8601 with its zone (the API refuses a naive one)."""
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment} has no time zone: give an aware datetime.")
    return moment.isoformat()


@dataclass(frozen=True)
class Instrument:
    symbol: str
    kind: str
    status: str
    sku: str
    region: str
    tick_size: Decimal
    lot_size: int
    gpu_hours_per_contract: int
    # The most a price may be (above it: ORDER_PRICE_OUT_OF_BAND), and the largest order in
    # contracts (ORDER_QUANTITY_TOO_LARGE): a larger quantity goes as several orders.
    price_max: Decimal
    quantity_max: int
    delivery_start: str
    delivery_end: str  # Exclusive.
    last_trading_day: str
    settlement: str  # How it settles: "cash" or "physical".
    underlying: str | None
    option_type: str
    strike: Decimal | None
    # The close of its last trading day: orders from then on are refused, while its status
    # stays active until the daily cycle expires it.
    trading_ends_at: datetime
    # An option's future while that future is halted: the option is halted with it (orders are
    # refused), whatever its own status says.
    halted_by: str | None = None
    # A future's price limits now, from one instrument's answer (``instrument()``; None in a
    # list, and for what has none): a buy above the high or a sell below the low is refused
    # with ORDER_PRICE_OUTSIDE_LIMIT.
    price_limit_low: Decimal | None = None
    price_limit_high: Decimal | None = None
    # The position limit orders on it count against, contracts net per organization in the
    # future (an option's: its future's) with its options, worst case with resting orders
    # (``instrument()``; None in a list, and where none applies): beyond it an order is refused
    # with RISK_POSITION_LIMIT.
    position_limit: int | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Instrument":
        return cls(
            symbol=data["symbol"],
            kind=data["kind"],
            status=data["status"],
            sku=data["sku"],
            region=data["region"],
            tick_size=Decimal(data["tick_size"]),
            lot_size=int(data["lot_size"]),
            gpu_hours_per_contract=int(data["gpu_hours_per_contract"]),
            price_max=Decimal(data["price_max"]),
            quantity_max=int(data["quantity_max"]),
            delivery_start=data["delivery_start"],
            delivery_end=data["delivery_end"],
            last_trading_day=data["last_trading_day"],
            settlement=data["settlement"],
            underlying=data.get("underlying"),
            option_type=data.get("option_type") or "",
            strike=_decimal(data.get("strike")),
            trading_ends_at=datetime.fromisoformat(data["trading_ends_at"].replace("Z", "+00:00")),
            halted_by=data.get("halted_by"),
            price_limit_low=_decimal(data.get("price_limit_low")),
            price_limit_high=_decimal(data.get("price_limit_high")),
            position_limit=data.get("position_limit"),
        )


@dataclass(frozen=True)
class Level:
    price: Decimal
    quantity: int
    orders: int


@dataclass(frozen=True)
class Book:
    symbol: str
    bids: list[Level]
    asks: list[Level]
    as_of: datetime | None  # When the exchange read it.

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0].price if self.asks else None


@dataclass(frozen=True)
class Trade:
    sequence: int
    price: Decimal
    quantity: int
    taker_side: str
    executed_at: datetime | None


@dataclass(frozen=True)
class Candle:
    """One period's OHLCV: prices in USD per GPU-hour, ``volume`` in contracts; ``start`` is
    the period's UTC-aligned beginning."""

    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    trades: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Candle":
        start = _datetime(data["start"])
        assert start is not None
        return cls(
            start=start,
            open=Decimal(data["open"]),
            high=Decimal(data["high"]),
            low=Decimal(data["low"]),
            close=Decimal(data["close"]),
            volume=int(data["volume"]),
            trades=int(data["trades"]),
        )


@dataclass(frozen=True)
class Order:
    """An order as the API answers it; ``Order.of_message`` reads the feed's "order" message."""

    id: int
    client_order_id: str | None
    instrument: str
    side: str
    type: str
    time_in_force: str
    post_only: bool
    self_trade_prevention: str
    price: Decimal | None
    # A market order's worst fill price (None for a limit order).
    protection_price: Decimal | None
    quantity: int
    filled_quantity: int
    cancelled_quantity: int
    open_quantity: int
    average_price: Decimal | None
    status: str
    reject_code: str
    done_reason: str
    # Reducing (placed under a margin call, or by a liquidation): no margin, no fee, and it
    # fills no more than closes the position (the rest is cancelled, reduce_only_exceeded).
    reduce_only: bool
    expires_at: datetime | None  # A GTD order's.
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Order":
        return cls(
            id=int(data["id"]),
            client_order_id=data.get("client_order_id"),
            instrument=data["instrument"],
            side=data["side"],
            type=data["type"],
            time_in_force=data["time_in_force"],
            post_only=bool(data["post_only"]),
            self_trade_prevention=data["self_trade_prevention"],
            price=_decimal(data.get("price")),
            protection_price=_decimal(data.get("protection_price")),
            quantity=int(data["quantity"]),
            filled_quantity=int(data["filled_quantity"]),
            cancelled_quantity=int(data["cancelled_quantity"]),
            open_quantity=int(data["open_quantity"]),
            average_price=_decimal(data.get("average_price")),
            status=data["status"],
            reject_code=data.get("reject_code") or "",
            done_reason=data.get("done_reason") or "",
            reduce_only=bool(data["reduce_only"]),
            expires_at=_datetime(data.get("expires_at")),
            created_at=_datetime(data.get("created_at")),
            updated_at=_datetime(data.get("updated_at")),
        )

    @classmethod
    def of_message(cls, message: dict[str, Any]) -> "Order":
        """The order of a feed's "order" message, which names the order's type ``order_type``
        (its ``type`` is the message's)."""
        if message.get("type") != "order":
            raise ValueError(f"Not an order message: {message.get('type')!r}.")
        return cls.of({**message, "type": message["order_type"]})

    @property
    def is_live(self) -> bool:
        return self.status in {"new", "open", "partially_filled"}


@dataclass(frozen=True)
class OrderEvent:
    """One thing the matcher did to an order: a status change or a replace."""

    sequence: int | None
    from_status: str
    to_status: str
    reason: str
    at: datetime | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "OrderEvent":
        return cls(
            sequence=None if data.get("sequence") is None else int(data["sequence"]),
            from_status=data["from_status"],
            to_status=data["to_status"],
            reason=data["reason"],
            at=_datetime(data.get("at")),
        )


@dataclass(frozen=True)
class Fill:
    trade_sequence: int
    order_id: int
    instrument: str
    side: str
    price: Decimal
    quantity: int
    fee: Decimal
    liquidity: str
    executed_at: datetime | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Fill":
        return cls(
            trade_sequence=int(data["trade_sequence"]),
            order_id=int(data["order_id"]),
            instrument=data["instrument"],
            side=data["side"],
            price=Decimal(data["price"]),
            quantity=int(data["quantity"]),
            fee=Decimal(data["fee"]),
            liquidity=data["liquidity"],
            executed_at=_datetime(data.get("executed_at")),
        )


@dataclass(frozen=True)
class Placement:
    """What a placement did: the order as the matcher left it, its fills, what rests."""

    order: Order
    fills: list[Fill]
    resting_quantity: int
    market_remainder: int
    created: bool  # False: a repeat of a client order id answered with the original order.


@dataclass(frozen=True)
class DryRun:
    """What placing an order would hold (``ExchangeClient.dry_run``): nothing was placed."""

    instrument: str
    # By asset: "USD" in dollars, an entitlement's code in GPU-hours.
    collateral: dict[str, Decimal | int]
    margin_per_contract: Decimal
    fee_per_contract_max: Decimal  # At the higher of the maker and taker rates.
    protection_price: Decimal | None  # A market order's worst fill price.

    @classmethod
    def of(cls, data: dict[str, Any]) -> "DryRun":
        return cls(
            instrument=data["instrument"],
            collateral={
                row["asset"]: row["amount"]
                if isinstance(row["amount"], int)
                else Decimal(row["amount"])
                for row in data["collateral"]
            },
            margin_per_contract=Decimal(data["margin_per_contract"]),
            fee_per_contract_max=Decimal(data["fee_per_contract_max"]),
            protection_price=_decimal(data.get("protection_price")),
        )


@dataclass(frozen=True)
class CancelAllTimer:
    """The dead man's switch: unless armed again before ``fires_at``, every live order is
    cancelled then. Disarmed: ``armed`` False, ``timeout_seconds`` 0, no times."""

    armed: bool
    timeout_seconds: int
    fires_at: datetime | None
    armed_at: datetime | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "CancelAllTimer":
        return cls(
            armed=bool(data["armed"]),
            timeout_seconds=int(data["timeout_seconds"]),
            fires_at=_datetime(data.get("fires_at")),
            armed_at=_datetime(data.get("armed_at")),
        )


ORDER_FIELDS = {
    "instrument",
    "side",
    "quantity",
    "price",
    "type",
    "time_in_force",
    "post_only",
    "self_trade_prevention",
    "client_order_id",
    "expires_at",
}
ORDER_DEFAULTS = {
    "type": "limit",
    "post_only": False,
    "self_trade_prevention": "cancel_newest",
}


def _order_body(order: dict[str, Any]) -> dict[str, Any]:
    """An order's JSON body from ``place_order``'s keyword arguments (None: left out)."""
    unknown = order.keys() - ORDER_FIELDS
    if unknown:
        raise TypeError(f"Not an order field: {', '.join(sorted(unknown))}.")
    body = {**ORDER_DEFAULTS, **{key: value for key, value in order.items() if value is not None}}
    if "price" in body:
        body["price"] = _digits(body["price"])
    if "expires_at" in body:
        body["expires_at"] = body["expires_at"].isoformat()
    return body


def _placement(data: dict[str, Any], *, created: bool) -> Placement:
    return Placement(
        order=Order.of(data["order"]),
        fills=[Fill.of(row) for row in data["fills"]],
        resting_quantity=int(data["resting_quantity"]),
        market_remainder=int(data["market_remainder"]),
        created=created,
    )


def _amount(value: Any) -> Decimal | int | None:
    """An amount of an asset: USD as a decimal string, GPU-hours as an integer."""
    if value is None:
        return None
    return value if isinstance(value, int) else Decimal(str(value))


def _typed(cls: type[T], data: dict[str, Any], **nested: Any) -> T:
    """``cls`` read from an answer by its fields' types: ``Decimal`` from the API's strings,
    ``datetime`` from ISO 8601, ``Decimal | int`` for an amount of any asset; ``nested`` gives
    the fields that are objects or lists of them. A field the answer lacks is a ``KeyError``
    unless it may be None (a sponsor's or a member's view leaves some out)."""
    values: dict[str, Any] = {}
    for field, kind in get_type_hints(cls).items():
        if field in nested:
            values[field] = nested[field]
            continue
        options = set(get_args(kind)) if get_origin(kind) in {Union, UnionType} else {kind}
        value = data.get(field) if type(None) in options else data[field]
        if value is None:
            values[field] = None
        elif Decimal in options and int in options:
            values[field] = _amount(value)
        elif Decimal in options:
            values[field] = Decimal(str(value))
        elif datetime in options:
            values[field] = _datetime(value)
        elif int in options and bool not in options:
            values[field] = int(value)
        else:
            values[field] = value
    return cls(**values)


class _Read:
    """An object of the API's answers: ``of`` reads it by its fields' types (``_typed``)."""

    @classmethod
    def of(cls, data: dict[str, Any]) -> Self:
        return _typed(cls, data)


@dataclass(frozen=True)
class Pool(_Read):
    """A portfolio pool as the caller sees it (``role``: sponsor or member)."""

    id: int
    name: str
    sponsor: str
    sponsor_name: str
    role: str
    rule: str
    subsidy_percent: Decimal
    credit_line: Decimal
    cutoff_at: datetime | None
    status: str
    created_at: datetime


@dataclass(frozen=True)
class PoolMember(_Read):
    """A startup in a pool; ``credit_owed`` (USD) where the answer gives it (one member)."""

    id: int
    organization: str
    organization_name: str
    priority: int
    status: str
    joined_at: datetime
    left_at: datetime | None
    credit_owed: Decimal | None = None


@dataclass(frozen=True)
class PoolCash(_Read):
    """The pool account's USD: posted, held for its live orders, and the difference."""

    posted: Decimal
    pending: Decimal
    available: Decimal


@dataclass(frozen=True)
class PoolOpenDemand(_Read):
    """What the next cut-off would aggregate for one instrument."""

    instrument: str
    members: int
    quantity: int  # Contracts.
    gpu_hours: int
    lowest_limit: Decimal
    highest_limit: Decimal


@dataclass(frozen=True)
class PoolDetail(Pool):
    """One pool: for its sponsor with ``cash``, ``members`` and ``open_demand`` (a member's
    are None); for a member with its own ``membership`` (the sponsor's is None)."""

    membership: PoolMember | None = None
    cash: PoolCash | None = None
    members: list[PoolMember] | None = None
    open_demand: list[PoolOpenDemand] | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolDetail":
        membership, cash = data.get("membership"), data.get("cash")
        members, open_demand = data.get("members"), data.get("open_demand")
        return _typed(
            cls,
            data,
            membership=None if membership is None else PoolMember.of(membership),
            cash=None if cash is None else PoolCash.of(cash),
            members=None if members is None else [PoolMember.of(row) for row in members],
            open_demand=None
            if open_demand is None
            else [PoolOpenDemand.of(row) for row in open_demand],
        )


@dataclass(frozen=True)
class PoolDemand(_Read):
    """One member's demand for one delivery month."""

    id: int
    member: int
    organization: str
    instrument: str
    sku: str
    region: str
    month: str  # YYYY-MM
    quantity: int  # Contracts: one GPU for the month each.
    gpu_hours: int
    limit_price: Decimal
    status: str
    pool_order: int | None  # The tier order the cut-off placed for it.
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PoolTier:
    """One price tier of a round: the pool order placed for it (None: refused, with the
    refusal's code and message)."""

    id: int
    instrument: str
    price: Decimal
    quantity: int
    order: Order | None
    refusal_code: str
    refusal_message: str
    placement_note: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolTier":
        order = data.get("order")
        return _typed(
            cls,
            {"refusal_code": "", "refusal_message": "", "placement_note": "", **data},
            order=Order.of(order) if order else None,
        )


@dataclass(frozen=True)
class PoolAllocation(_Read):
    """What one demand received in a round; amounts in USD."""

    id: int
    round: int
    round_number: int
    demand: int
    member: int
    organization: str
    instrument: str
    status: str
    requested: int
    quantity: int
    cost: Decimal
    fee: Decimal
    subsidy: Decimal
    margin: Decimal
    credit: Decimal
    created_at: datetime


@dataclass(frozen=True)
class PoolRound:
    """A cut-off: its tiers (None for a member, and in the list of rounds) and allocations
    (a member's own only; none in the list of rounds)."""

    id: int
    number: int
    status: str
    cut_off_at: datetime | None
    closes_at: datetime | None
    allocated_at: datetime | None
    close_reason: str
    close_message: str
    tiers: list[PoolTier] | None
    allocations: list[PoolAllocation]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolRound":
        orders = data.get("orders")
        return _typed(
            cls,
            data,
            tiers=None if orders is None else [PoolTier.of(row) for row in orders],
            allocations=[PoolAllocation.of(row) for row in data.get("allocations") or []],
        )


@dataclass(frozen=True)
class PoolReportLine(_Read):
    """One allocation in a pool's report: GPU-hours, prices ($/GPU-hr) and USD."""

    allocation: int
    round_number: int
    member: int
    organization: str
    instrument: str
    status: str
    gpu_hours_requested: int
    gpu_hours_filled: int
    average_price: Decimal | None
    market_price: Decimal | None
    on_demand_price: Decimal | None
    cost: Decimal
    subsidy: Decimal
    fee: Decimal
    savings_vs_market: Decimal | None
    savings_vs_on_demand: Decimal | None


@dataclass(frozen=True)
class PoolReport:
    """Demand against fills, prices and savings, in total and per allocation (``lines``)."""

    gpu_hours_requested: int
    gpu_hours_filled: int
    fill_ratio: Decimal | None  # Percent.
    average_price: Decimal | None
    cost: Decimal
    subsidy: Decimal
    fee: Decimal
    savings_vs_market: Decimal
    savings_vs_on_demand: Decimal
    lines: list[PoolReportLine]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolReport":
        return _typed(cls, data, lines=[PoolReportLine.of(row) for row in data["lines"]])


@dataclass(frozen=True)
class PoolHolding(_Read):
    """Contracts held: the pool's, or a member's from the pool."""

    instrument: str
    contracts: int


@dataclass(frozen=True)
class PoolTransfer(_Read):
    """Contracts a sponsor took back from a member or reallocated to one, at the mark."""

    id: int
    kind: str
    member: int
    organization: str
    instrument: str
    quantity: int
    price: Decimal
    created_at: datetime


@dataclass(frozen=True)
class PoolCashMoved:
    """Cash moved between the sponsor's main account and the pool's: the ledger entry, the
    amount (USD) and the pool's cash after it."""

    entry: int
    amount: Decimal
    cash: PoolCash

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolCashMoved":
        return _typed(cls, data, cash=PoolCash.of(data["cash"]))


@dataclass(frozen=True)
class PoolCreditRepaid(_Read):
    """A member's repayment of pool credit: the ledger entry, the amount and what it still
    owes (USD)."""

    entry: int
    amount: Decimal
    credit_owed: Decimal


def _json_body(fields: dict[str, Any]) -> dict[str, Any]:
    """A request body from keyword arguments: None left out (the API's default), decimals as
    strings of digits, times and dates in ISO 8601 (a time with its zone)."""
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Decimal):
            body[name] = _digits(value)
        elif isinstance(value, datetime):
            body[name] = _time_param(value)
        elif isinstance(value, date):
            body[name] = value.isoformat()
        else:
            body[name] = value
    return body


@dataclass(frozen=True)
class CurvePoint(_Read):
    """One delivery month of a forward curve ($/GPU-hr): ``source`` says where the price comes
    from (settlement, last_trade, mid or model; ``symbol`` None for a month no future lists)."""

    month: str  # YYYY-MM-DD, the month's first day.
    symbol: str | None
    price: Decimal
    source: str


@dataclass(frozen=True)
class Curve:
    sku: str
    region: str
    points: list[CurvePoint]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Curve":
        return _typed(cls, data, points=[CurvePoint.of(row) for row in data["points"]])


@dataclass(frozen=True)
class MarginCall(_Read):
    """An open margin call (USD): what the settlement of ``trading_date`` called, and its
    figures as of ``figured_at``; the account is reduce-only until ``amount_due`` is paid."""

    trading_date: str
    created_at: datetime
    amount_called: Decimal
    figured_at: datetime
    required: Decimal
    held: Decimal
    deficit: Decimal
    amount_due: Decimal


@dataclass(frozen=True)
class Notice(_Read):
    """What the exchange told the organization: a margin call (``margin_call``), its cure
    (``margin_call_cured``), a ``liquidation``, a deposit credited or reversed, a withdrawal
    paid or refused, a delivery failure penalty (``delivery_failed``). Also pushed on the
    orders feed as a ``notice`` message (``Notice.of_message``)."""

    id: int
    kind: str
    account: str
    subject: str
    message: str
    created_at: datetime
    emailed_at: datetime | None

    @classmethod
    def of_message(cls, message: dict[str, Any]) -> "Notice":
        """A ``notice`` message of the feed (not emailed yet when it is sent)."""
        return cls.of({**message, "emailed_at": None})


@dataclass(frozen=True)
class StatementLine(_Read):
    """One ledger entry of an asset's statement: USD as ``Decimal``, GPU-hours as ``int``."""

    entry_id: int
    posted_at: datetime
    description: str
    amount: Decimal | int
    balance_after: Decimal | int


@dataclass(frozen=True)
class Entitlement(_Read):
    """GPU-hours of one SKU, region and month the account holds, those held for its open
    sell orders, and the difference."""

    code: str
    name: str
    sku: str
    region: str
    month: str  # YYYY-MM-DD, the month's first day.
    held: int
    on_hold: int
    available: int


@dataclass(frozen=True)
class ApiKeyInfo(_Read):
    """One of the organization's API keys (never its secret)."""

    prefix: str
    name: str
    scopes: list[str]
    ip_allowlist: list[str]
    require_signature: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Capacity(_Read):
    """A reserved block the caller provides, holds or bought GPUs of; ``held_gpus`` is what
    the caller's organization holds of it now, ``listed_symbol`` its latest resale listing
    (``listing_trading``: still trading), ``resale_from`` the hour a listing made now would
    sell from (the term's start before it, then a day's start, 00:00 UTC, more than a day
    ahead; None when nothing is left)."""

    id: int
    provider: str
    holder: str
    cluster: str
    sku: str
    region: str
    starts_at: datetime
    ends_at: datetime
    gpus: int
    interconnect: str
    contiguous_block_gpus: int
    created_at: datetime
    listed_symbol: str | None
    listing_trading: bool
    resale_from: datetime | None
    held_gpus: int


@dataclass(frozen=True)
class Deposit(_Read):
    """A deposit (USD); a new one's ``checkout_url`` is the Stripe page to pay at (None when
    credited at once, and in the history)."""

    id: int
    amount: Decimal
    method: str
    status: str
    created_at: datetime
    updated_at: datetime
    checkout_url: str | None = None


@dataclass(frozen=True)
class Withdrawal(_Read):
    """A withdrawal (USD): held at once, paid out when staff approve it."""

    id: int
    amount: Decimal
    status: str
    reason: str
    created_at: datetime
    updated_at: datetime
    reviewed_at: datetime | None


@dataclass(frozen=True)
class OptionValuation(_Read):
    """Black-76 value ($/GPU-hr) and greeks; for a listed option (``instrument``), at the
    forward the chain uses (``forward_source``) and the volatility it values it at, unless one
    was given (``volatility_source``: implied, chain, historical, default or requested)."""

    instrument: str | None
    option_type: str
    forward: Decimal
    forward_source: str | None
    strike: Decimal
    expiry: str | None
    years: Decimal
    rate: Decimal
    volatility: Decimal
    volatility_source: str | None
    price: Decimal
    delta: Decimal
    gamma: Decimal
    vega: Decimal
    theta: Decimal
    rho: Decimal


@dataclass(frozen=True)
class HedgeOrders(_Read):
    """``count`` orders of ``quantity`` contracts each."""

    quantity: int
    count: int


@dataclass(frozen=True)
class HedgeFuturesLeg:
    """One month of the strip: the future to buy (a seller's, to sell) at its curve
    ``forward``, and the volatility the month's prices are simulated at."""

    month: str
    symbol: str
    forward: Decimal
    source: str
    gpu_hours_per_contract: int
    available: bool
    reason: str  # Why it is unavailable; empty when available.
    contracts: int
    lot_size: int
    orders: list[HedgeOrders]
    # Annualized, the one the month's prices are simulated at (at most 5), and where it comes
    # from: requested; else its option bought's (a buyer's call, a seller's put: implied, chain,
    # historical or default), else its future's (historical or default). None for a month
    # priced at 0, left out of the simulation.
    volatility: Decimal | None
    volatility_source: str | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "HedgeFuturesLeg":
        return _typed(cls, data, orders=[HedgeOrders.of(row) for row in data["orders"]])


@dataclass(frozen=True)
class HedgeOptionLeg:
    """One month's listed option of a cap or collar, or why there is none (``available``
    False, ``reason``; its option's fields None, ``contracts`` 0)."""

    month: str
    underlying: str
    option_type: str
    available: bool
    reason: str
    target_strike: Decimal
    symbol: str | None
    strike: Decimal | None
    expiry: str | None
    years_to_expiry: Decimal | None
    price: Decimal | None  # Black-76, $/GPU-hr.
    premium: Decimal | None  # USD for the contracts.
    contracts: int
    lot_size: int | None
    orders: list[HedgeOrders]
    # The volatility ``price`` is taken at, and where it comes from: implied, chain,
    # historical, default or requested (None while unavailable).
    volatility: Decimal | None
    volatility_source: str | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "HedgeOptionLeg":
        return _typed(cls, data, orders=[HedgeOrders.of(row) for row in data["orders"]])


@dataclass(frozen=True)
class HedgeCost(_Read):
    """USD: the simulation's mean and its 95th percentile."""

    expected_cost: Decimal
    worst_case_cost: Decimal


@dataclass(frozen=True)
class HedgeFutures:
    legs: list[HedgeFuturesLeg]
    expected_cost: Decimal
    worst_case_cost: Decimal

    @classmethod
    def of(cls, data: dict[str, Any]) -> "HedgeFutures":
        return _typed(cls, data, legs=[HedgeFuturesLeg.of(row) for row in data["legs"]])


@dataclass(frozen=True)
class HedgeCap:
    calls: list[HedgeOptionLeg]  # To buy.
    premium: Decimal
    expected_cost: Decimal
    worst_case_cost: Decimal

    @classmethod
    def of(cls, data: dict[str, Any]) -> "HedgeCap":
        return _typed(cls, data, calls=[HedgeOptionLeg.of(row) for row in data["calls"]])


@dataclass(frozen=True)
class HedgeCollar:
    calls: list[HedgeOptionLeg]  # To buy.
    puts: list[HedgeOptionLeg]  # To sell.
    premium: Decimal  # Net of the puts'.
    expected_cost: Decimal
    worst_case_cost: Decimal

    @classmethod
    def of(cls, data: dict[str, Any]) -> "HedgeCollar":
        return _typed(
            cls,
            data,
            calls=[HedgeOptionLeg.of(row) for row in data["calls"]],
            puts=[HedgeOptionLeg.of(row) for row in data["puts"]],
        )


@dataclass(frozen=True)
class HedgeRecommendation:
    """``POST /api/v1/pricing/hedge/`` for a buyer's need (side buy): the futures strip, the
    call cap and the collar, each with its costs, and the cost left unhedged."""

    sku: str
    region: str
    gpus: int
    # The one requested, every month's; else the default, the one a month with neither an
    # option's volatility nor a history of its future is simulated at. Each month's is on its
    # futures leg (``volatility``, ``volatility_source``), each option leg's on it.
    volatility: Decimal
    rate: Decimal
    unhedged: HedgeCost
    futures: HedgeFutures
    cap: HedgeCap
    collar: HedgeCollar

    @classmethod
    def of(cls, data: dict[str, Any]) -> "HedgeRecommendation":
        if data.get("side", "buy") != "buy":
            raise ValueError("A seller's hedge: read it as a SellHedgeRecommendation.")
        return _typed(
            cls,
            data,
            unhedged=HedgeCost.of(data["unhedged"]),
            futures=HedgeFutures.of(data["futures"]),
            cap=HedgeCap.of(data["cap"]),
            collar=HedgeCollar.of(data["collar"]),
        )


@dataclass(frozen=True)
class SellHedgeRevenue(_Read):
    """USD: the simulation's mean and its 5th percentile (a seller's 95% worst case)."""

    expected_revenue: Decimal
    worst_case_revenue: Decimal


@dataclass(frozen=True)
class SellHedgeFutures:
    legs: list[HedgeFuturesLeg]  # To sell.
    expected_revenue: Decimal
    worst_case_revenue: Decimal

    @classmethod
    def of(cls, data: dict[str, Any]) -> "SellHedgeFutures":
        return _typed(cls, data, legs=[HedgeFuturesLeg.of(row) for row in data["legs"]])


@dataclass(frozen=True)
class SellHedgeFloor:
    puts: list[HedgeOptionLeg]  # To buy.
    premium: Decimal  # Paid.
    expected_revenue: Decimal
    worst_case_revenue: Decimal

    @classmethod
    def of(cls, data: dict[str, Any]) -> "SellHedgeFloor":
        return _typed(cls, data, puts=[HedgeOptionLeg.of(row) for row in data["puts"]])


@dataclass(frozen=True)
class SellHedgeCollar:
    puts: list[HedgeOptionLeg]  # To buy.
    calls: list[HedgeOptionLeg]  # To sell.
    premium: Decimal  # The puts' net of the calls'.
    expected_revenue: Decimal
    worst_case_revenue: Decimal

    @classmethod
    def of(cls, data: dict[str, Any]) -> "SellHedgeCollar":
        return _typed(
            cls,
            data,
            puts=[HedgeOptionLeg.of(row) for row in data["puts"]],
            calls=[HedgeOptionLeg.of(row) for row in data["calls"]],
        )


@dataclass(frozen=True)
class SellHedgeRecommendation:
    """``POST /api/v1/pricing/hedge/`` for a seller's capacity (side sell): the futures strip
    sold, the put floor and the collar (puts bought, calls sold), each with its revenues, and
    the revenue left unhedged."""

    side: str  # "sell".
    sku: str
    region: str
    gpus: int
    # The one requested, every month's; else the default, the one a month with neither an
    # option's volatility nor a history of its future is simulated at. Each month's is on its
    # futures leg (``volatility``, ``volatility_source``), each option leg's on it.
    volatility: Decimal
    rate: Decimal
    unhedged: SellHedgeRevenue
    futures: SellHedgeFutures
    floor: SellHedgeFloor
    collar: SellHedgeCollar

    @classmethod
    def of(cls, data: dict[str, Any]) -> "SellHedgeRecommendation":
        if data.get("side") != "sell":
            raise ValueError("A buyer's hedge: read it as a HedgeRecommendation.")
        return _typed(
            cls,
            data,
            unhedged=SellHedgeRevenue.of(data["unhedged"]),
            futures=SellHedgeFutures.of(data["futures"]),
            floor=SellHedgeFloor.of(data["floor"]),
            collar=SellHedgeCollar.of(data["collar"]),
        )


@dataclass(frozen=True)
class Settlement(_Read):
    """A daily settlement price ($/GPU-hr): how it was taken (``source``), the contracts in
    its closing window, and for an option its implied volatility."""

    trading_date: str
    price: Decimal
    source: str
    volume: int
    implied_volatility: Decimal | None


@dataclass(frozen=True)
class ChainSide(_Read):
    """One option of a chain's row: its market, Black-76 fair value, implied vol and delta;
    ``halted_by`` the future while that future is halted (the option is halted with it)."""

    symbol: str
    status: str
    halted_by: str | None
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    fair_value: Decimal | None
    implied_volatility: Decimal | None
    delta: Decimal | None


@dataclass(frozen=True)
class ChainRow:
    strike: Decimal
    call: ChainSide | None
    put: ChainSide | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "ChainRow":
        call, put = data.get("call"), data.get("put")
        return _typed(
            cls,
            data,
            call=None if call is None else ChainSide.of(call),
            put=None if put is None else ChainSide.of(put),
        )


@dataclass(frozen=True)
class Chain:
    """A future's option chain at its ``forward`` (None with no price), from
    ``forward_source`` (settlement, trade or mid)."""

    future: str
    forward: Decimal | None
    forward_source: str | None
    rows: list[ChainRow]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Chain":
        return _typed(cls, data, rows=[ChainRow.of(row) for row in data["rows"]])


@dataclass(frozen=True)
class Me(_Read):
    """The caller: its organization (slug and kind), trading account, scopes and key prefix
    (None for a signed-in member's session)."""

    organization: str
    organization_kind: str
    account: int
    scopes: list[str]
    key: str | None


@dataclass(frozen=True)
class Balance(_Read):
    """One asset's balance: USD as ``Decimal``, an entitlement's GPU-hours as ``int``;
    ``owed`` the USD deficit (0 for GPU-hours)."""

    asset: str
    kind: str
    posted: Decimal | int
    pending: Decimal | int
    available: Decimal | int
    owed: Decimal | int


@dataclass(frozen=True)
class Position(_Read):
    """A position (contracts: long positive, short negative) at its mark; the mark's fields
    None while the instrument has neither a settlement price nor a trade."""

    symbol: str
    kind: str
    contracts: int
    gpu_hours: int
    cost: Decimal
    average_price: Decimal | None
    mark_price: Decimal | None
    mark_source: str | None
    market_value: Decimal | None
    pnl: Decimal | None
    margin: Decimal


@dataclass(frozen=True)
class PortfolioTotals(_Read):
    margin: Decimal
    pnl: Decimal  # Over the positions with a mark.


@dataclass(frozen=True)
class Portfolio:
    positions: list[Position]
    totals: PortfolioTotals

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Portfolio":
        return _typed(
            cls,
            data,
            positions=[Position.of(row) for row in data["positions"]],
            totals=PortfolioTotals.of(data["totals"]),
        )


class ExchangeClient:
    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        sign: bool = False,
        timeout_seconds: float = 10.0,
        session: requests.Session | None = None,
        feed_url: str | None = None,
        rate_limit_retries: int = 0,
        rate_limit_wait_max_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``rate_limit_retries``: how many times a request refused with 429 is sent again
        (0, the default: never; the 429 raises ``ApiError`` at once), each after sleeping the
        answer's ``Retry-After`` seconds, at most ``rate_limit_wait_max_seconds`` (then it may
        be refused again, and spend another retry); past them the last 429 raises. No other
        error is retried. ``sleep``: how it waits (tests pass their own)."""
        if rate_limit_retries < 0:
            raise ValueError("rate_limit_retries must be 0 or more.")
        if rate_limit_wait_max_seconds < 0:
            raise ValueError("rate_limit_wait_max_seconds must be 0 or more.")
        self.rate_limit_retries = rate_limit_retries
        self.rate_limit_wait_max_seconds = rate_limit_wait_max_seconds
        self._sleep = sleep
        self.base_url = base_url.rstrip("/")
        base = urlsplit(self.base_url)
        # Requests go to the base URL's origin, at its path (a proxy's prefix, "/exchange" in
        # http://host/exchange) followed by the API's: the whole path is what the exchange
        # sees when it knows its prefix (SCRIPT_NAME, a root path), so each signature covers it.
        self._origin = f"{base.scheme}://{base.netloc}"
        self._api_path = f"{base.path}{API_PREFIX}"
        # The push feed's address: the same server and prefix by default (ws:// for http://,
        # wss:// for https://); production serves it on a port of its own behind the proxy.
        if feed_url is None:
            scheme = FEED_SCHEMES.get(base.scheme.lower(), base.scheme)
            feed_url = urlunsplit((scheme, base.netloc, base.path, "", ""))
        self.feed_url = feed_url.rstrip("/")
        self.key = key
        self.sign = sign
        self.timeout_seconds = timeout_seconds
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        # The key's rate-limit standing after the last answer that gave one.
        self.rate_limit: RateLimit | None = None
        # Added to this machine's clock for a signature's timestamp (``sync_clock``).
        self.clock_offset_seconds = 0.0

    def close(self) -> None:
        """Close the keep-alive connections to the exchange (the session's)."""
        self.session.close()

    def __enter__(self) -> "ExchangeClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Transport ---------------------------------------------------------------------------

    def _signing_key(self) -> bytes:
        secret = self.key.split("_", 2)[2]
        return hashlib.sha256(f"gx-signing:{secret}".encode()).digest()

    def _signature_headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        # Microseconds: a request repeated within a second signs differently, and the
        # exchange refuses only a replay of the same signature.
        timestamp = f"{time.time() + self.clock_offset_seconds:.6f}"
        message = f"{timestamp}\n{method.upper()}\n{target}\n".encode() + body
        return {
            "X-GX-Timestamp": timestamp,
            "X-GX-Signature": hmac.new(self._signing_key(), message, hashlib.sha256).hexdigest(),
        }

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        anonymous: bool = False,
    ) -> tuple[int, Any]:
        """Send one request to ``path`` under the API (``orders/``; with a leading slash, a path
        under the base URL: ``/api/v1/orders/``), with ``anonymous`` for public data without the
        key; return (status, decoded JSON) or raise ``ApiError``. A 429 is sent again up to
        ``rate_limit_retries`` times, signed afresh each time (the exchange refuses a signature
        it has seen); it refuses a request over the rate before the request reaches the
        endpoint."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        base_path = self._api_path.removesuffix(API_PREFIX)
        target = f"{base_path}{path}" if path.startswith("/") else f"{self._api_path}/{path}"
        if query:
            target = f"{target}?{urlencode(query)}"
        data = json.dumps(body, default=str).encode() if body is not None else b""
        response = self._send(method, target, data, json_body=body is not None, anonymous=anonymous)
        for _ in range(self.rate_limit_retries):
            if response.status_code != 429:
                break
            self._sleep(self._retry_wait(response))
            response = self._send(
                method, target, data, json_body=body is not None, anonymous=anonymous
            )
        try:
            payload = response.json() if response.content else None
        except ValueError:  # Not the exchange's answer: a proxy's error page, say.
            if response.status_code < 400:
                raise
            payload = None
        if response.status_code >= 400:
            # The exchange's envelope, or what a proxy or gateway in front of it answered
            # instead: any JSON ("Bad Gateway", {"error": "upstream timed out"}), or none.
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict):
                error = {"message": error} if isinstance(error, str) else {}
            raise ApiError(
                response.status_code,
                error.get("code") or "HTTP_ERROR",
                error.get("message") or response.reason,
                error.get("field"),
                _int_or_none(response.headers.get("Retry-After")),
            )
        return response.status_code, payload

    def _send(
        self, method: str, target: str, data: bytes, *, json_body: bool, anonymous: bool
    ) -> requests.Response:
        headers: dict[str, str | None] = {"Content-Type": "application/json"} if json_body else {}
        if anonymous:
            headers["Authorization"] = None  # requests drops the session's header.
        elif self.sign:
            headers.update(self._signature_headers(method, target, data))
        response = self.session.request(
            method,
            self._origin + target,
            data=data or None,
            headers=headers,
            timeout=self.timeout_seconds,
        )
        self.rate_limit = RateLimit.of(response.headers) or self.rate_limit
        return response

    def _retry_wait(self, refused: requests.Response) -> float:
        """Seconds to sleep before sending a 429'd request again: its ``Retry-After`` (or
        ``RETRY_AFTER_DEFAULT_SECONDS`` without one in seconds), at most the client's bound."""
        told = _int_or_none(refused.headers.get("Retry-After"))
        wait = RETRY_AFTER_DEFAULT_SECONDS if told is None else float(told)
        return min(wait, self.rate_limit_wait_max_seconds)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        # Each ``next`` address keeps the ``limit`` of the first request.
        _, page = self.request("GET", path, params={**params, "limit": PAGE_ROWS})
        for _ in range(PAGES_MAX):
            yield from page["results"]
            if not page.get("next"):
                return
            _, page = self.request("GET", self._api_relative(page["next"]))
        raise RuntimeError(
            f"{path} has more than {PAGES_MAX} page{'s' if PAGES_MAX > 1 else ''}: read it "
            "in parts with its filters (a time range, an instrument, a status)."
        )

    def _api_relative(self, address: str) -> str:
        """A ``next`` address as a path under the API: the exchange writes its own address,
        with the prefix it is mounted at when it knows it, without when a proxy strips the
        prefix unsaid; either way the next page is asked for at the base URL."""
        parts = urlsplit(address)
        for api_path in (self._api_path, API_PREFIX):
            if parts.path.startswith(f"{api_path}/"):
                relative = parts.path.removeprefix(f"{api_path}/")
                return f"{relative}?{parts.query}" if parts.query else relative
        raise ValueError(f"{address} is not an address of the API ({self._api_path}/).")

    # Push feed ---------------------------------------------------------------------------

    def orders_feed(self) -> Feed:
        """The key's organization's "order", "fill" and "replace_rejected" messages
        (``ws/v1/orders/``, the "read" scope), after the "subscribed" message, which this
        returns past. A "gap" message means some were lost: read
        ``orders(updated_since=...)`` and ``fills(since=...)``."""
        feed = self._feed("/ws/v1/orders/", authenticated=True)
        welcome = feed.receive(self.timeout_seconds)
        if welcome.get("type") != "subscribed":
            feed.close()
            raise FeedError("UNEXPECTED", f"Expected 'subscribed', got {welcome!r}.", None)
        return feed

    def instrument_feed(self, symbol: str) -> Feed:
        """One instrument's public channel: a "book" snapshot first, then "trade" and "book"
        messages (``ws/v1/instruments/<symbol>/``)."""
        return self._feed(f"/ws/v1/instruments/{quote(symbol, safe='')}/", authenticated=False)

    def _feed(self, path: str, *, authenticated: bool) -> Feed:
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        headers = {}
        if authenticated:
            headers["Authorization"] = f"Bearer {self.key}"
            if self.sign:  # Over GET, the whole path (the feed URL's own included), no body.
                feed_path = urlsplit(self.feed_url).path
                headers.update(self._signature_headers("GET", feed_path + path, b""))
        try:
            connection = connect(
                self.feed_url + path,
                additional_headers=headers,
                open_timeout=self.timeout_seconds,
            )
        except InvalidStatus as refused:  # No feed there: gunicorn's 404, a proxy's 502...
            raise FeedError(
                "HTTP_ERROR", f"The server answered {refused.response.status_code}.", None
            ) from refused
        except InvalidHandshake as failed:  # Not a WebSocket server at all.
            raise FeedError("HANDSHAKE_FAILED", str(failed), None) from failed
        # Entered as its context manager (websockets 17 warns otherwise); ``Feed.close`` ends it.
        return Feed(connection.__enter__())

    # Market data -------------------------------------------------------------------------

    def server_time(self) -> datetime:
        # Without the key: a signature made with a drifted clock would be refused.
        _, data = self.request("GET", "time/", anonymous=True)
        moment = _datetime(data["server_time"])
        assert moment is not None
        return moment

    def sync_clock(self) -> float:
        """Measure how far this machine's clock is from the exchange's, and sign with the
        exchange's from now on (a signature's timestamp must be within the exchange's window,
        30 s by default); returns the offset in seconds."""
        sent = time.time()
        server = self.server_time().timestamp()
        received = time.time()
        # The exchange read its clock about halfway through the round trip.
        self.clock_offset_seconds = server - (sent + received) / 2
        return self.clock_offset_seconds

    def now(self) -> datetime:
        """The exchange's time as this machine's clock reads it, corrected by the offset
        ``sync_clock`` measured (this machine's own time until then)."""
        return datetime.fromtimestamp(time.time() + self.clock_offset_seconds, UTC)

    def instruments(self, **filters: str) -> list[Instrument]:
        _, rows = self.request("GET", "instruments/", params=filters)
        return [Instrument.of(row) for row in rows]

    def instrument(self, symbol: str) -> Instrument:
        _, data = self.request("GET", f"instruments/{symbol}/")
        return Instrument.of(data)

    def book(self, symbol: str, depth: int = 10) -> Book:
        _, data = self.request("GET", f"instruments/{symbol}/book/", params={"depth": depth})

        def levels(rows: list[dict[str, Any]]) -> list[Level]:
            return [Level(Decimal(r["price"]), int(r["quantity"]), int(r["orders"])) for r in rows]

        return Book(
            data["symbol"], levels(data["bids"]), levels(data["asks"]), _datetime(data["as_of"])
        )

    def trades(self, symbol: str, limit: int = 50) -> list[Trade]:
        _, rows = self.request("GET", f"instruments/{symbol}/trades/", params={"limit": limit})
        return [
            Trade(
                int(r["sequence"]),
                Decimal(r["price"]),
                int(r["quantity"]),
                r["taker_side"],
                _datetime(r.get("executed_at")),
            )
            for r in rows
        ]

    def candles(self, symbol: str, interval: str = "1h", limit: int = 100) -> list[Candle]:
        """OHLCV of the last ``limit`` periods of ``interval`` (1m 5m 15m 1h 4h 1d), oldest
        first; a period without trades has no candle, so fewer than ``limit`` may come."""
        _, rows = self.request(
            "GET", f"instruments/{symbol}/candles/", params={"interval": interval, "limit": limit}
        )
        return [Candle.of(row) for row in rows]

    def settlements(self, symbol: str, limit: int = 50) -> list[Settlement]:
        """The latest ``limit`` daily settlement prices (the API's default, 50), newest
        first."""
        _, rows = self.request("GET", f"instruments/{symbol}/settlements/", params={"limit": limit})
        return [Settlement.of(row) for row in rows]

    def chain(self, future: str) -> Chain:
        """The future's options that still trade, by strike."""
        _, data = self.request("GET", f"instruments/{future}/chain/")
        return Chain.of(data)

    def curve(self, sku: str, region: str) -> Curve:
        """The forward curve of a SKU in a region, by delivery month."""
        _, data = self.request("GET", f"curves/{sku}/{region}/")
        return Curve.of(data)

    # Pricing -----------------------------------------------------------------------------

    def option_quote(
        self,
        *,
        instrument: str | None = None,
        forward: Decimal | None = None,
        strike: Decimal | None = None,
        expiry: date | None = None,
        years: Decimal | None = None,
        rate: Decimal | None = None,
        option_type: str | None = None,
        volatility: Decimal | None = None,
    ) -> OptionValuation:
        """Black-76 value and greeks: of a listed option (``instrument``, at the forward its
        chain uses), or of the terms given (forward, strike, ``expiry`` or ``years``, type)."""
        body = _json_body(
            {
                "instrument": instrument,
                "forward": forward,
                "strike": strike,
                "expiry": expiry,
                "years": years,
                "rate": rate,
                "option_type": option_type,
                "volatility": volatility,
            }
        )
        _, data = self.request("POST", "pricing/option-quote/", body=body, anonymous=True)
        return OptionValuation.of(data)

    def implied_volatility(
        self,
        *,
        price: Decimal,
        forward: Decimal,
        strike: Decimal,
        option_type: str,
        expiry: date | None = None,
        years: Decimal | None = None,
        rate: Decimal | None = None,
    ) -> Decimal:
        """The annualized Black-76 volatility that gives ``price`` ($/GPU-hr)."""
        body = _json_body(
            {
                "price": price,
                "forward": forward,
                "strike": strike,
                "option_type": option_type,
                "expiry": expiry,
                "years": years,
                "rate": rate,
            }
        )
        _, data = self.request("POST", "pricing/implied-volatility/", body=body, anonymous=True)
        return Decimal(data["implied_volatility"])

    def hedge(
        self,
        *,
        sku: str,
        region: str,
        gpus: int,
        first_month: str,
        months: int,
        volatility: Decimal | None = None,
        rate: Decimal | None = None,
    ) -> HedgeRecommendation:
        """The hedge of a need of ``gpus`` for ``months`` from ``first_month`` ("YYYY-MM"):
        the futures strip, the call cap and the collar on listed options. ``volatility``, if
        given, is every month's simulated prices' and every option leg's; else each leg is
        valued at its own, as the option chain values it (``volatility_source``), and each
        month simulated at the market's (its futures leg's ``volatility_source``)."""
        body = _json_body(
            {
                "sku": sku,
                "region": region,
                "gpus": gpus,
                "first_month": first_month,
                "months": months,
                "volatility": volatility,
                "rate": rate,
            }
        )
        _, data = self.request("POST", "pricing/hedge/", body=body, anonymous=True)
        return HedgeRecommendation.of(data)

    def sell_hedge(
        self,
        *,
        sku: str,
        region: str,
        gpus: int,
        first_month: str,
        months: int,
        volatility: Decimal | None = None,
        rate: Decimal | None = None,
    ) -> SellHedgeRecommendation:
        """The hedge of a provider's capacity of ``gpus`` to sell for ``months`` from
        ``first_month`` ("YYYY-MM"): the futures strip sold, the put floor and the collar (puts
        bought, calls sold) on listed options, with their revenues. ``volatility`` as in
        `hedge`."""
        body = _json_body(
            {
                "side": "sell",
                "sku": sku,
                "region": region,
                "gpus": gpus,
                "first_month": first_month,
                "months": months,
                "volatility": volatility,
                "rate": rate,
            }
        )
        _, data = self.request("POST", "pricing/hedge/", body=body, anonymous=True)
        return SellHedgeRecommendation.of(data)

    # Trading -----------------------------------------------------------------------------

    def place_order(
        self,
        *,
        instrument: str,
        side: str,
        quantity: int,
        price: Decimal | None = None,
        type: str = "limit",
        time_in_force: str | None = None,
        post_only: bool = False,
        self_trade_prevention: str = "cancel_newest",
        client_order_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> Placement:
        """Place one order. The client sets no ``client_order_id`` of its own: pass one to
        make a placement safe to send again after its answer was lost (a timeout, a dropped
        connection, which the client never retries): the same id and body answers the
        original order (``created`` False). A 429, which the client retries when made with
        ``rate_limit_retries``, was refused before anything was placed.
        ``self_trade_prevention``: what happens instead of a trade when the order meets a
        resting order of the caller's own organization (any of its accounts, a pool's too)."""
        body = _order_body(
            {
                "instrument": instrument,
                "side": side,
                "quantity": quantity,
                "price": price,
                "type": type,
                "time_in_force": time_in_force,
                "post_only": post_only,
                "self_trade_prevention": self_trade_prevention,
                "client_order_id": client_order_id,
                "expires_at": expires_at,
            }
        )
        status, data = self.request("POST", "orders/", body=body)
        return _placement(data, created=status == 201)

    def dry_run(self, **order: Any) -> DryRun:
        """Check an order, given as ``place_order``'s keyword arguments, without placing it
        (``?dry_run=true``): every check placing it runs, each refusal the ``ApiError`` it
        would raise, and the collateral it would hold now."""
        _, data = self.request(
            "POST", "orders/", params={"dry_run": "true"}, body=_order_body(order)
        )
        return DryRun.of(data)

    def place_orders(self, orders: list[dict[str, Any]]) -> list[Placement | ApiError]:
        """Place up to 20 orders in one request, each given as ``place_order``'s keyword
        arguments. Each order is placed on its own, in the order given: its result is its
        ``Placement``, or the ``ApiError`` its own request would have raised (a refused order
        does not stop the next). A malformed order raises ``ApiError`` for the whole batch,
        and then nothing was placed. The batch counts one request per order against the
        key's rate limit; one over what the key's window has left is refused whole (429),
        nothing placed."""
        body = {"orders": [_order_body(order) for order in orders]}
        _, data = self.request("POST", "orders/batch/", body=body)
        results: list[Placement | ApiError] = []
        for result in data["results"]:
            if result["placement"] is not None:
                results.append(_placement(result["placement"], created=result["status"] == 201))
            else:
                error = result["error"]
                results.append(
                    ApiError(result["status"], error["code"], error["message"], error["field"])
                )
        return results

    def order(self, order_id: int) -> Order:
        _, data = self.request("GET", f"orders/{order_id}/")
        return Order.of(data)

    def orders(
        self,
        *,
        status: str | None = None,
        instrument: str | None = None,
        side: str | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[Order]:
        """The organization's orders, newest first; ``updated_since`` (an aware time): those
        that changed since, to catch up after a disconnect."""
        query = {
            "status": status,
            "instrument": instrument,
            "side": side,
            "updated_since": _time_param(updated_since),
        }
        for row in self._pages("orders/", query):
            yield Order.of(row)

    def order_by_client_order_id(self, client_order_id: str) -> Order | None:
        """The order placed with ``client_order_id``, or None: after a placement whose answer
        was lost, whether it was accepted."""
        _, page = self.request("GET", "orders/", params={"client_order_id": client_order_id})
        rows = page["results"]
        return Order.of(rows[0]) if rows else None

    def order_history(self, order_id: int) -> Iterator[OrderEvent]:
        """What the matcher did to the order, newest first."""
        for row in self._pages(f"orders/{order_id}/history/", {}):
            yield OrderEvent.of(row)

    def cancel(self, order_id: int) -> Order:
        _, data = self.request("DELETE", f"orders/{order_id}/")
        return Order.of(data)

    def replace(self, order_id: int, *, price: Decimal, quantity: int) -> Order:
        _, data = self.request(
            "POST",
            f"orders/{order_id}/replace/",
            body={"price": _digits(price), "quantity": quantity},
        )
        return Order.of(data)

    def cancel_orders(
        self, order_ids: list[int] | None = None, *, client_order_ids: list[str] | None = None
    ) -> list[Order | ApiError]:
        """Cancel up to 100 orders by id, or by the client order ids they were placed with, in
        one request: per id, the order after its cancel was asked for, or the ``ApiError``
        cancelling it alone would have raised (404 not yours, 409 no longer live). Counts one
        request per id against the rate limit."""
        if (order_ids is None) == (client_order_ids is None):
            raise ValueError("Give order_ids or client_order_ids, one of them.")
        body: dict[str, Any] = (
            {"order_ids": order_ids}
            if order_ids is not None
            else {"client_order_ids": client_order_ids}
        )
        _, data = self.request("POST", "orders/batch/cancel/", body=body)
        return [
            Order.of(result["order"])
            if result["order"] is not None
            else ApiError(
                result["status"],
                result["error"]["code"],
                result["error"]["message"],
                result["error"]["field"],
            )
            for result in data["results"]
        ]

    def cancel_all(self, instrument: str | None = None) -> int:
        """Cancel every live order, or (``instrument``) those of one instrument; how many were
        asked to cancel. Only None means every instrument: an empty symbol is sent as it is,
        for the exchange to refuse (400), not read as "all"."""
        body = {"instrument": instrument} if instrument is not None else {}
        _, data = self.request("POST", "orders/cancel-all/", body=body)
        return int(data["cancelled"])

    def cancel_all_after(self, timeout_seconds: int) -> CancelAllTimer:
        """Arm the dead man's switch: every live order is cancelled ``timeout_seconds`` from
        now unless this is called again before; 0 disarms. Call it every few seconds (well
        inside the timeout) while the program runs."""
        _, data = self.request(
            "POST", "orders/cancel-all-after/", body={"timeout_seconds": timeout_seconds}
        )
        return CancelAllTimer.of(data)

    def cancel_all_timer(self) -> CancelAllTimer:
        """The dead man's switch as it stands."""
        _, data = self.request("GET", "orders/cancel-all-after/")
        return CancelAllTimer.of(data)

    def fills(
        self,
        *,
        instrument: str | None = None,
        order_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Fill]:
        """The organization's fills, newest first, executed in [``since``, ``until``); of one
        of its orders with ``order_id``."""
        query = {
            "instrument": instrument,
            "order": order_id,
            "since": _time_param(since),
            "until": _time_param(until),
        }
        for row in self._pages("fills/", query):
            yield Fill.of(row)

    # Account -----------------------------------------------------------------------------

    def me(self) -> Me:
        _, data = self.request("GET", "me/")
        return Me.of(data)

    def balances(self) -> list[Balance]:
        """USD first, then each GPU-hour entitlement held."""
        _, rows = self.request("GET", "account/balances/")
        return [Balance.of(row) for row in rows]

    def positions(self) -> Portfolio:
        """Positions with their marks, P&L and margin, and the totals."""
        _, data = self.request("GET", "account/positions/")
        return Portfolio.of(data)

    def margin_call(self) -> MarginCall | None:
        """The account's open margin call, or None."""
        _, data = self.request("GET", "account/margin-call/")
        call = data["margin_call"]
        return None if call is None else MarginCall.of(call)

    def notices(self) -> Iterator[Notice]:
        """What the exchange told the organization, newest first (every page)."""
        for row in self._pages("account/notices/", {}):
            yield Notice.of(row)

    def statement(self, asset: str | None = None) -> Iterator[StatementLine]:
        """The ledger entries of one asset (USD by default, or an entitlement's code), with
        the running balance, newest first."""
        for row in self._pages("account/statement/", {"asset": asset}):
            yield StatementLine.of(row)

    def entitlements(self) -> list[Entitlement]:
        _, rows = self.request("GET", "account/entitlements/")
        return [Entitlement.of(row) for row in rows]

    def keys(self) -> list[ApiKeyInfo]:
        """The organization's API keys."""
        _, rows = self.request("GET", "keys/")
        return [ApiKeyInfo.of(row) for row in rows]

    def revoke_key(self, prefix: str) -> ApiKeyInfo:
        _, data = self.request("DELETE", f"keys/{prefix}/")
        return ApiKeyInfo.of(data)

    # Capacity ----------------------------------------------------------------------------

    def register_capacity(
        self,
        *,
        holder: str,
        cluster: str,
        sku: str,
        region: str,
        starts_at: datetime,
        ends_at: datetime,
        gpus: int,
        interconnect: str,
        contiguous_block_gpus: int,
    ) -> Capacity:
        """A provider registers a reserved block; its GPU-hours are issued to ``holder`` (an
        organization's slug). ``starts_at`` and ``ends_at``: aware times on whole hours."""
        body = _json_body(
            {
                "holder": holder,
                "cluster": cluster,
                "sku": sku,
                "region": region,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "gpus": gpus,
                "interconnect": interconnect,
                "contiguous_block_gpus": contiguous_block_gpus,
            }
        )
        _, data = self.request("POST", "capacity/", body=body)
        return Capacity.of(data)

    def capacity(self) -> Iterator[Capacity]:
        """The blocks the organization provides, holds, or bought GPUs of, newest first."""
        for row in self._pages("capacity/", {}):
            yield Capacity.of(row)

    def list_for_resale(self, capacity_id: int, *, lot_gpus: int | None = None) -> Instrument:
        """List a block the organization holds for resale: the new instrument."""
        body = _json_body({"lot_gpus": lot_gpus})
        _, data = self.request("POST", f"capacity/{capacity_id}/list/", body=body)
        return Instrument.of(data)

    # Funding -----------------------------------------------------------------------------

    def deposit(self, amount: Decimal) -> Deposit:
        """Ask for a deposit of ``amount`` USD (whole cents): pay at its ``checkout_url``, or
        credited at once in test-funds mode."""
        _, data = self.request("POST", "funding/deposits/", body=_json_body({"amount": amount}))
        return Deposit.of(data)

    def withdraw(self, amount: Decimal) -> Withdrawal:
        """Ask for a withdrawal of ``amount`` USD: held at once, paid when staff approve."""
        body = _json_body({"amount": amount})
        _, data = self.request("POST", "funding/withdrawals/", body=body)
        return Withdrawal.of(data)

    def cancel_withdrawal(self, withdrawal_id: int) -> Withdrawal:
        """Take back a withdrawal staff have not reviewed: its held amount is available again
        (``FUNDING_INVALID_STATUS_CHANGE`` once it is reviewed)."""
        _, data = self.request("POST", f"funding/withdrawals/{withdrawal_id}/cancel/")
        return Withdrawal.of(data)

    def deposits(self) -> Iterator[Deposit]:
        for row in self._pages("funding/deposits/", {}):
            yield Deposit.of(row)

    def withdrawals(self) -> Iterator[Withdrawal]:
        for row in self._pages("funding/withdrawals/", {}):
            yield Withdrawal.of(row)

    # Portfolio pools ---------------------------------------------------------------------

    def pools(self) -> Iterator[Pool]:
        """Pools the caller sponsors or belongs to."""
        for row in self._pages("pools/", {}):
            yield Pool.of(row)

    def pool(self, pool_id: int) -> PoolDetail:
        """One pool: whole for its sponsor, its terms and the caller's membership for a member."""
        _, data = self.request("GET", f"pools/{pool_id}/")
        return PoolDetail.of(data)

    def create_pool(
        self,
        *,
        name: str,
        rule: str | None = None,
        subsidy_percent: Decimal | None = None,
        credit_line: Decimal | None = None,
        cutoff_at: datetime | None = None,
    ) -> PoolDetail:
        """A sponsor's new pool (what is left out takes the API's default)."""
        body = _json_body(
            {
                "name": name,
                "rule": rule,
                "subsidy_percent": subsidy_percent,
                "credit_line": credit_line,
                "cutoff_at": cutoff_at,
            }
        )
        _, data = self.request("POST", "pools/", body=body)
        return PoolDetail.of(data)

    def update_pool(
        self,
        pool_id: int,
        *,
        rule: str | None = None,
        subsidy_percent: Decimal | None = None,
        credit_line: Decimal | None = None,
        cutoff_at: datetime | None = None,
    ) -> PoolDetail:
        """Change a pool's settings: those left out stay as they are."""
        body = _json_body(
            {
                "rule": rule,
                "subsidy_percent": subsidy_percent,
                "credit_line": credit_line,
                "cutoff_at": cutoff_at,
            }
        )
        _, data = self.request("PATCH", f"pools/{pool_id}/", body=body)
        return PoolDetail.of(data)

    def fund_pool(self, pool_id: int, amount: Decimal) -> PoolCashMoved:
        """USD from the sponsor's main account to the pool's."""
        body = _json_body({"amount": amount})
        _, data = self.request("POST", f"pools/{pool_id}/fund/", body=body)
        return PoolCashMoved.of(data)

    def withdraw_from_pool(self, pool_id: int, amount: Decimal) -> PoolCashMoved:
        """USD from the pool's account back to the sponsor's main account."""
        body = _json_body({"amount": amount})
        _, data = self.request("POST", f"pools/{pool_id}/withdraw/", body=body)
        return PoolCashMoved.of(data)

    def pool_members(self, pool_id: int) -> Iterator[PoolMember]:
        for row in self._pages(f"pools/{pool_id}/members/", {}):
            yield PoolMember.of(row)

    def add_pool_member(
        self, pool_id: int, organization: str, *, priority: int | None = None
    ) -> PoolMember:
        """Add a startup (its organization's slug) to the pool."""
        body = _json_body({"organization": organization, "priority": priority})
        _, data = self.request("POST", f"pools/{pool_id}/members/", body=body)
        return PoolMember.of(data)

    def pool_member(self, pool_id: int, member_id: int) -> PoolMember:
        """One member, with the credit it owes."""
        _, data = self.request("GET", f"pools/{pool_id}/members/{member_id}/")
        return PoolMember.of(data)

    def set_member_priority(self, pool_id: int, member_id: int, priority: int) -> PoolMember:
        body = {"priority": priority}
        _, data = self.request("PATCH", f"pools/{pool_id}/members/{member_id}/", body=body)
        return PoolMember.of(data)

    def graduate_member(self, pool_id: int, member_id: int) -> PoolMember:
        """The member leaves the pool; its demand not yet allocated is withdrawn."""
        _, data = self.request("POST", f"pools/{pool_id}/members/{member_id}/graduate/")
        return PoolMember.of(data)

    def submit_demand(
        self,
        pool_id: int,
        *,
        sku: str,
        region: str,
        months: list[str],
        limit_price: Decimal,
        gpus: int | None = None,
        gpu_hours: int | None = None,
    ) -> list[PoolDemand]:
        """A member's demand, one per delivery month ("YYYY-MM"): give gpus or gpu_hours."""
        body: dict[str, Any] = {
            "sku": sku,
            "region": region,
            "months": months,
            "limit_price": _digits(limit_price),
            "gpus": gpus,
            "gpu_hours": gpu_hours,
        }
        _, rows = self.request("POST", f"pools/{pool_id}/demands/", body=body)
        return [PoolDemand.of(row) for row in rows]

    def demands(self, pool_id: int, *, status: str | None = None) -> Iterator[PoolDemand]:
        for row in self._pages(f"pools/{pool_id}/demands/", {"status": status}):
            yield PoolDemand.of(row)

    def demand(self, pool_id: int, demand_id: int) -> PoolDemand:
        _, data = self.request("GET", f"pools/{pool_id}/demands/{demand_id}/")
        return PoolDemand.of(data)

    def amend_demand(
        self,
        pool_id: int,
        demand_id: int,
        *,
        limit_price: Decimal | None = None,
        gpus: int | None = None,
        gpu_hours: int | None = None,
    ) -> PoolDemand:
        """Amend an open demand: its limit price, its quantity (gpus or gpu_hours), or both."""
        body = _json_body({"limit_price": limit_price, "gpus": gpus, "gpu_hours": gpu_hours})
        _, data = self.request("PATCH", f"pools/{pool_id}/demands/{demand_id}/", body=body)
        return PoolDemand.of(data)

    def withdraw_demand(self, pool_id: int, demand_id: int) -> PoolDemand:
        _, data = self.request("DELETE", f"pools/{pool_id}/demands/{demand_id}/")
        return PoolDemand.of(data)

    def cut_off(self, pool_id: int) -> PoolRound:
        """The sponsor's cut-off: the new round with its tier orders."""
        _, data = self.request("POST", f"pools/{pool_id}/cut-off/")
        return PoolRound.of(data)

    def close_round(self, pool_id: int, round_id: int) -> PoolRound:
        """The sponsor closes a round: what still works is cancelled, the fills allocated."""
        _, data = self.request("POST", f"pools/{pool_id}/rounds/{round_id}/close/")
        return PoolRound.of(data)

    def pool_rounds(self, pool_id: int) -> Iterator[PoolRound]:
        """The pool's rounds, newest first (without their tiers and allocations)."""
        for row in self._pages(f"pools/{pool_id}/rounds/", {}):
            yield PoolRound.of(row)

    def pool_round(self, pool_id: int, round_id: int) -> PoolRound:
        """One round with its tiers (the sponsor's) and allocations."""
        _, data = self.request("GET", f"pools/{pool_id}/rounds/{round_id}/")
        return PoolRound.of(data)

    def pool_allocations(
        self, pool_id: int, *, round_id: int | None = None, member: int | None = None
    ) -> Iterator[PoolAllocation]:
        """A member's own allocations, or every member's (or one's) for the sponsor."""
        params = {"round": round_id, "member": member}
        for row in self._pages(f"pools/{pool_id}/allocations/", params):
            yield PoolAllocation.of(row)

    def pool_report(self, pool_id: int, *, member: int | None = None) -> PoolReport:
        _, data = self.request("GET", f"pools/{pool_id}/report/", params={"member": member})
        return PoolReport.of(data)

    def pool_holdings(self, pool_id: int, *, member: int | None = None) -> list[PoolHolding]:
        """Contracts the pool holds, or (``member``; a member: its own) a member holds from
        the pool."""
        _, rows = self.request("GET", f"pools/{pool_id}/holdings/", params={"member": member})
        return [PoolHolding.of(row) for row in rows]

    def pool_transfers(self, pool_id: int, *, member: int | None = None) -> Iterator[PoolTransfer]:
        """Contracts taken back from members or reallocated to them."""
        for row in self._pages(f"pools/{pool_id}/transfers/", {"member": member}):
            yield PoolTransfer.of(row)

    def take_back(
        self, pool_id: int, *, member: int, instrument: str, quantity: int
    ) -> PoolTransfer:
        """The sponsor takes back contracts the pool gave a member, at the latest mark."""
        body = {"member": member, "instrument": instrument, "quantity": quantity}
        _, data = self.request("POST", f"pools/{pool_id}/take-back/", body=body)
        return PoolTransfer.of(data)

    def reallocate(
        self, pool_id: int, *, member: int, instrument: str, quantity: int
    ) -> PoolTransfer:
        """The sponsor gives a member contracts the pool holds, at the latest mark, against
        its demand not yet received."""
        body = {"member": member, "instrument": instrument, "quantity": quantity}
        _, data = self.request("POST", f"pools/{pool_id}/reallocate/", body=body)
        return PoolTransfer.of(data)

    def offer(self, pool_id: int, *, instrument: str, quantity: int, price: Decimal) -> Order:
        """The sponsor sells contracts the pool holds: the pool's sell order."""
        body = _json_body({"instrument": instrument, "quantity": quantity, "price": price})
        _, data = self.request("POST", f"pools/{pool_id}/offer/", body=body)
        return Order.of(data)

    def withdraw_offer(self, pool_id: int, order_id: int) -> Order:
        """Cancel what is left of a pool's offer; its contracts are the pool's again."""
        _, data = self.request("DELETE", f"pools/{pool_id}/offer/{order_id}/")
        return Order.of(data)

    def repay_credit(self, pool_id: int, amount: Decimal) -> PoolCreditRepaid:
        """A member pays back credit the pool lent it (USD)."""
        body = _json_body({"amount": amount})
        _, data = self.request("POST", f"pools/{pool_id}/credit/repay/", body=body)
        return PoolCreditRepaid.of(data)
