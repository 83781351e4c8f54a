"""Consistency checks of orders, trades and their collateral, for ``simulate_market``."""

from collections import defaultdict
from decimal import Decimal

from django.db.models import Sum

from exchange.models import LIVE_STATUSES, RESTING_STATUSES, Order, OrderHold, Side, Trade
from exchange.services.ledger_accounts import house_account_code
from ledger.models import Entry, Hold, Posting

PROBLEMS_REPORTED_MAX = 100


def order_book_problems() -> list[str]:
    """Everything inconsistent between orders and trades; an empty list means all is well."""
    problems: list[str] = []
    fills: dict[int, int] = defaultdict(int)
    for field in ("maker_order_id", "taker_order_id"):
        for row in Trade.objects.values(field).annotate(total=Sum("quantity")):
            fills[row[field]] += row["total"]
    orders = Order.objects.only(
        "id",
        "instrument_id",
        "side",
        "price",
        "status",
        "quantity",
        "filled_quantity",
        "cancelled_quantity",
    )
    best_bid: dict[int, Decimal] = {}
    best_ask: dict[int, Decimal] = {}
    for order in orders.iterator(chunk_size=2000):
        if fills.get(order.pk, 0) != order.filled_quantity:
            problems.append(
                f"order {order.pk}: filled {order.filled_quantity}"
                f" but trades sum to {fills.get(order.pk, 0)}"
            )
        # The quantities' own remainder: ``Order.open_quantity`` is 0 for any order that has
        # ended, which is what this check verifies of the quantities (a rejected order is not
        # checked: it keeps its quantity and cancels none).
        open_quantity = order.quantity - order.filled_quantity - order.cancelled_quantity
        if open_quantity < 0:
            problems.append(f"order {order.pk}: negative open quantity")
        resting = order.status in RESTING_STATUSES
        finished = order.status in (
            Order.Status.FILLED,
            Order.Status.CANCELLED,
            Order.Status.EXPIRED,
        )
        if (resting and open_quantity <= 0) or (finished and open_quantity != 0):
            problems.append(
                f"order {order.pk}: status {order.status} with open quantity {open_quantity}"
            )
        if order.status == Order.Status.FILLED and not order.filled_quantity:
            # Self-trade prevention may have removed part of a filled order, so filled can be
            # below quantity; a filled order with no fills at all is wrong.
            problems.append(f"order {order.pk}: filled status without fills")
        if resting:
            assert order.price is not None  # Market orders never rest.
            table = best_bid if order.side == Side.BUY else best_ask
            current = table.get(order.instrument_id)
            better = current is None or (
                order.price > current if order.side == Side.BUY else order.price < current
            )
            if better:
                table[order.instrument_id] = order.price
        if len(problems) >= PROBLEMS_REPORTED_MAX:
            return problems
    for instrument_id, bid in best_bid.items():
        ask = best_ask.get(instrument_id)
        if ask is not None and bid >= ask:
            problems.append(f"instrument {instrument_id}: crossed book, bid {bid} >= ask {ask}")
    problems += collateral_problems(limit=PROBLEMS_REPORTED_MAX - len(problems))
    return problems


def collateral_problems(*, limit: int = PROBLEMS_REPORTED_MAX) -> list[str]:
    """Orders whose collateral is out of step with their state: a finished order still holding
    something, or a live order whose active holds are gone. Trades without their ledger entry,
    or whose stored fees are not what their entry took."""
    problems: list[str] = []
    finished = OrderHold.objects.filter(hold__status=Hold.Status.PENDING, active=True).exclude(
        order__status__in=LIVE_STATUSES
    )
    for row in finished.values("order_id", "order__status", "hold_id")[:limit]:
        problems.append(
            f"order {row['order_id']}: {row['order__status']} but hold {row['hold_id']} pending"
        )
    broken = (
        OrderHold.objects.filter(active=True, order__status__in=RESTING_STATUSES)
        .exclude(hold__status=Hold.Status.PENDING)
        .exclude(hold__status=Hold.Status.POSTED)  # Consumed in full by fills: nothing left.
    )
    for broken_row in broken.values("order_id", "hold_id", "hold__status")[:limit]:
        problems.append(
            f"order {broken_row['order_id']}: resting but hold {broken_row['hold_id']}"
            f" {broken_row['hold__status']}"
        )
    fees = {
        f"trade:{instrument_id}:{sequence}": buyer_fee + seller_fee
        for instrument_id, sequence, buyer_fee, seller_fee in Trade.objects.values_list(
            "instrument_id", "sequence", "buyer_fee", "seller_fee"
        )
    }
    settled = set(
        Entry.objects.filter(idempotency_key__startswith="trade:").values_list(
            "idempotency_key", flat=True
        )
    )
    for key in sorted(fees.keys() - settled)[:limit]:
        problems.append(f"{key}: trade without its ledger entry")
    posted = dict(
        Posting.objects.filter(
            account__code=house_account_code("fees"), entry__idempotency_key__startswith="trade:"
        ).values_list("entry__idempotency_key", "amount")
    )
    for key in sorted(settled & fees.keys()):
        if -posted.get(key, 0) != fees[key]:
            problems.append(
                f"{key}: the trade's fees are {fees[key]} micro-USD, its entry took"
                f" {-posted.get(key, 0)}"
            )
            if len(problems) >= limit:
                break
    return problems[:limit]
