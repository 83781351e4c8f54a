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
from datetime import datetime
from decimal import Decimal
from typing import Any
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
        body["price"] = str(body["price"])
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


@dataclass(frozen=True)
class Pool:
    """A portfolio pool as the caller sees it (``role``: sponsor or member)."""

    id: int
    name: str
    sponsor: str
    role: str
    rule: str
    subsidy_percent: Decimal
    credit_line: Decimal
    cutoff_at: datetime | None
    status: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Pool":
        return cls(
            id=int(data["id"]),
            name=data["name"],
            sponsor=data["sponsor"],
            role=data["role"],
            rule=data["rule"],
            subsidy_percent=Decimal(data["subsidy_percent"]),
            credit_line=Decimal(data["credit_line"]),
            cutoff_at=_datetime(data.get("cutoff_at")),
            status=data["status"],
        )


@dataclass(frozen=True)
class PoolDemand:
    """One member's demand for one delivery month."""

    id: int
    member: int
    organization: str
    instrument: str
    month: str  # YYYY-MM
    quantity: int  # Contracts: one GPU for the month each.
    gpu_hours: int
    limit_price: Decimal
    status: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolDemand":
        return cls(
            id=int(data["id"]),
            member=int(data["member"]),
            organization=data["organization"],
            instrument=data["instrument"],
            month=data["month"],
            quantity=int(data["quantity"]),
            gpu_hours=int(data["gpu_hours"]),
            limit_price=Decimal(data["limit_price"]),
            status=data["status"],
        )


@dataclass(frozen=True)
class PoolTier:
    """One price tier of a round: the pool order placed for it (None: refused)."""

    instrument: str
    price: Decimal
    quantity: int
    order: Order | None
    refusal_code: str


@dataclass(frozen=True)
class PoolAllocation:
    """What one demand received in a round; amounts in USD."""

    id: int
    round: int
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

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolAllocation":
        return cls(
            id=int(data["id"]),
            round=int(data["round"]),
            member=int(data["member"]),
            organization=data["organization"],
            instrument=data["instrument"],
            status=data["status"],
            requested=int(data["requested"]),
            quantity=int(data["quantity"]),
            cost=Decimal(data["cost"]),
            fee=Decimal(data["fee"]),
            subsidy=Decimal(data["subsidy"]),
            margin=Decimal(data["margin"]),
            credit=Decimal(data["credit"]),
        )


@dataclass(frozen=True)
class PoolRound:
    """A cut-off: its tiers (None for a member) and allocations (a member's own only)."""

    id: int
    number: int
    status: str
    cut_off_at: datetime | None
    closes_at: datetime | None
    tiers: list[PoolTier] | None
    allocations: list[PoolAllocation]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolRound":
        orders = data.get("orders")
        return cls(
            id=int(data["id"]),
            number=int(data["number"]),
            status=data["status"],
            cut_off_at=_datetime(data.get("cut_off_at")),
            closes_at=_datetime(data.get("closes_at")),
            tiers=None
            if orders is None
            else [
                PoolTier(
                    instrument=row["instrument"],
                    price=Decimal(row["price"]),
                    quantity=int(row["quantity"]),
                    order=Order.of(row["order"]) if row.get("order") else None,
                    refusal_code=row.get("refusal_code") or "",
                )
                for row in orders
            ],
            allocations=[PoolAllocation.of(row) for row in data.get("allocations") or []],
        )


@dataclass(frozen=True)
class PoolReport:
    """Demand against fills, prices and savings; ``lines`` as the API sends them."""

    gpu_hours_requested: int
    gpu_hours_filled: int
    fill_ratio: Decimal | None  # Percent.
    average_price: Decimal | None
    cost: Decimal
    subsidy: Decimal
    fee: Decimal
    savings_vs_market: Decimal
    savings_vs_on_demand: Decimal
    lines: list[dict[str, Any]]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PoolReport":
        return cls(
            gpu_hours_requested=int(data["gpu_hours_requested"]),
            gpu_hours_filled=int(data["gpu_hours_filled"]),
            fill_ratio=_decimal(data.get("fill_ratio")),
            average_price=_decimal(data.get("average_price")),
            cost=Decimal(data["cost"]),
            subsidy=Decimal(data["subsidy"]),
            fee=Decimal(data["fee"]),
            savings_vs_market=Decimal(data["savings_vs_market"]),
            savings_vs_on_demand=Decimal(data["savings_vs_on_demand"]),
            lines=list(data["lines"]),
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

    def instruments(self, **filters: str) -> list[Instrument]:
        _, rows = self.request("GET", "instruments/", params=filters)
        return [Instrument.of(row) for row in rows]

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

    def settlements(self, symbol: str, limit: int = 10) -> list[dict[str, Any]]:
        _, rows = self.request("GET", f"instruments/{symbol}/settlements/", params={"limit": limit})
        return list(rows)

    def chain(self, future: str) -> dict[str, Any]:
        _, data = self.request("GET", f"instruments/{future}/chain/")
        return dict(data)

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
        ``rate_limit_retries``, was refused before anything was placed."""
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
            "POST", f"orders/{order_id}/replace/", body={"price": str(price), "quantity": quantity}
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

    def me(self) -> dict[str, Any]:
        _, data = self.request("GET", "me/")
        return dict(data)

    def balances(self) -> list[dict[str, Any]]:
        _, data = self.request("GET", "account/balances/")
        return list(data)

    def positions(self) -> Any:
        _, data = self.request("GET", "account/positions/")
        return data

    # Portfolio pools ---------------------------------------------------------------------

    def pools(self) -> Iterator[Pool]:
        """Pools the caller sponsors or belongs to."""
        for row in self._pages("pools/", {}):
            yield Pool.of(row)

    def pool(self, pool_id: int) -> dict[str, Any]:
        """One pool: whole for its sponsor, its terms and the caller's membership for a member."""
        _, data = self.request("GET", f"pools/{pool_id}/")
        return dict(data)

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
            "limit_price": str(limit_price),
            "gpus": gpus,
            "gpu_hours": gpu_hours,
        }
        _, rows = self.request("POST", f"pools/{pool_id}/demands/", body=body)
        return [PoolDemand.of(row) for row in rows]

    def demands(self, pool_id: int, *, status: str | None = None) -> Iterator[PoolDemand]:
        for row in self._pages(f"pools/{pool_id}/demands/", {"status": status}):
            yield PoolDemand.of(row)

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
