"""A small typed Python client for the GPU Exchange REST API (``/api/v1/``).

It needs only ``requests`` (and ``websockets`` for the push feed); nothing of the exchange's
server code. See docs/API.md.

>>> from exchange_client import ExchangeClient
>>> client = ExchangeClient("http://127.0.0.1:8000", "gx_...")  # doctest: +SKIP
>>> client.place_order(instrument="H100SXM-USEAST-202701", side="buy", quantity=2,
...                    price=Decimal("2.40"))  # doctest: +SKIP
"""

from exchange_client.client import (
    ApiError,
    Book,
    CancelAllTimer,
    Candle,
    DryRun,
    ExchangeClient,
    Fill,
    Instrument,
    Level,
    Order,
    OrderEvent,
    Placement,
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolReport,
    PoolRound,
    PoolTier,
    RateLimit,
    Trade,
)
from exchange_client.feed import Feed, FeedError

__all__ = [
    "ApiError",
    "Book",
    "CancelAllTimer",
    "Candle",
    "DryRun",
    "ExchangeClient",
    "Feed",
    "FeedError",
    "Fill",
    "Instrument",
    "Level",
    "Order",
    "OrderEvent",
    "Placement",
    "Pool",
    "PoolAllocation",
    "PoolDemand",
    "PoolReport",
    "PoolRound",
    "PoolTier",
    "RateLimit",
    "Trade",
]
