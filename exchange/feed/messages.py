"""The push feed's messages and group names.

Every message is a JSON object with a ``type``. Prices are decimal strings with six places and
times ISO 8601 in UTC, exactly as the REST API shows them; quantities are integers (contracts).
The builders read only objects already in memory: the matcher calls them for every batch.

Group names follow the channel layer's rules (letters, digits, hyphens, underscores, periods,
under 100 characters), so they use ids, never symbols.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from exchange.models import Notice, Order, OrderCommand, Trade
from exchange.selectors.market import Level
from exchange.selectors.orders import Fill

Message = dict[str, Any]

# Prices leave the feed with as many places as the REST API's decimal fields (max 6).
PRICE_QUANTUM = Decimal("0.000001")
# Levels of each side in a "book" message: the snapshot on connect and every update.
BOOK_LEVELS = 10


def instrument_group(instrument_id: int) -> str:
    """Listeners of one instrument's public channel."""
    return f"feed.instrument.{instrument_id}"


def organization_group(organization_id: int) -> str:
    """Listeners of one organization's private orders channel."""
    return f"feed.organization.{organization_id}"


def api_key_group(key_id: int) -> str:
    """The private channel's connections subscribed with one API key: closed when it is revoked."""
    return f"feed.api_key.{key_id}"


def price_text(price: Decimal | None) -> str | None:
    return None if price is None else format(price.quantize(PRICE_QUANTUM), "f")


def time_text(moment: datetime) -> str:
    """ISO 8601 with ``Z`` for UTC, as Django REST framework writes date-times."""
    text = moment.isoformat()
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def _levels(levels: list[Level]) -> list[Message]:
    return [
        {"price": price_text(level.price), "quantity": level.quantity, "orders": level.orders}
        for level in levels
    ]


def book_message(symbol: str, sequence: int, bids: list[Level], asks: list[Level]) -> Message:
    """The whole top of the book (``BOOK_LEVELS`` each side, best first): a replacement, never
    a diff, so a client never has to detect gaps."""
    return {
        "type": "book",
        "symbol": symbol,
        "sequence": sequence,
        "bids": _levels(bids),
        "asks": _levels(asks),
    }


def trade_message(symbol: str, trade: Trade) -> Message:
    return {
        "type": "trade",
        "symbol": symbol,
        "sequence": trade.sequence,
        "price": price_text(trade.price),
        "quantity": trade.quantity,
        "taker_side": trade.taker_side,
        "executed_at": time_text(trade.executed_at),
    }


def order_message(symbol: str, order: Order) -> Message:
    """An order as the matcher wrote it (its state at the end of a batch): every field of the
    REST API's order, the order's own ``type`` as ``order_type`` (``type`` is the message's).
    What the matcher never changes is repeated too, so that an order the client did not place
    itself (a liquidation, one from the web UI) reads whole from its first message."""
    return {
        "type": "order",
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "instrument": symbol,
        "side": order.side,
        "order_type": order.type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "self_trade_prevention": order.self_trade_prevention,
        "status": order.status,
        "price": price_text(order.price),
        "protection_price": price_text(order.protection_price),
        "quantity": order.quantity,
        "filled_quantity": order.filled_quantity,
        "cancelled_quantity": order.cancelled_quantity,
        "open_quantity": order.open_quantity,
        "average_price": price_text(order.average_fill_price),
        "reject_code": order.reject_code,
        "done_reason": order.done_reason,
        "reduce_only": order.reduce_only,
        "expires_at": None if order.expires_at is None else time_text(order.expires_at),
        "created_at": time_text(order.created_at),
        "updated_at": time_text(order.updated_at),
    }


def replace_rejected_message(symbol: str, command: OrderCommand) -> Message:
    """A replace the matcher refused: the order is as it was, so no ``order`` message says so.
    The API answers it as a 422 when its wait sees it; a replace still pending when the wait
    ran out is heard of here."""
    order = command.order
    assert command.processed_at is not None  # Set by the batch that refused it.
    return {
        "type": "replace_rejected",
        "order_id": order.pk,
        "client_order_id": order.client_order_id,
        "instrument": symbol,
        "price": price_text(command.price),
        "quantity": command.quantity,
        "reject_code": command.reject_code,
        "rejected_at": time_text(command.processed_at),
    }


def notice_message(notice: Notice) -> Message:
    """A notice to the organization (a margin call, its cure, a liquidation, funds credited or
    refused, a delivery failed): ``GET /api/v1/account/notices/`` answers the same fields."""
    return {
        "type": "notice",
        "id": notice.pk,
        "kind": notice.kind,
        "account": notice.account.name,
        "subject": notice.subject,
        "message": notice.message,
        "created_at": time_text(notice.created_at),
    }


def fill_message(fill: Fill) -> Message:
    """One side of a trade, for the organization of its order: the REST API's fill."""
    return {
        "type": "fill",
        "trade_sequence": fill.trade_sequence,
        "order_id": fill.order_id,
        "instrument": fill.instrument,
        "side": fill.side,
        "price": price_text(fill.price),
        "quantity": fill.quantity,
        "fee": price_text(fill.fee),
        "liquidity": fill.liquidity,
        "executed_at": time_text(fill.executed_at),
    }
