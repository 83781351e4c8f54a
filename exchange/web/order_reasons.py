"""Why an order ended (``Order.done_reason``), in words for the pages."""

from exchange.models import CancelReason, Order

# Each done_reason but a rejection's, which shows its code.
DONE_REASON_TEXT = {
    "filled": "All of it traded",
    **{reason.value: str(reason.label) for reason in CancelReason},
    "ioc_remainder": "Immediate or cancel: the part not filled at once",
    "market_remainder": "Market order: the part the book could not fill",
    "fok_not_fillable": "Fill or kill: could not fill whole",
    "self_trade": "Self-trade prevention",
    "replaced_to_zero": "Replaced to quantity 0",
    "expired": "Its good-till-date time came",
}


def done_reason_text(order: Order) -> str:
    if order.status == Order.Status.REJECTED:
        return f"Refused by the matcher ({order.done_reason})"
    return DONE_REASON_TEXT.get(order.done_reason, order.done_reason)
