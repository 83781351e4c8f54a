"""The one place where Decimal prices and quantities become the engine's integers and back.

Rounding rule: none. An input price must be an exact multiple of the instrument's tick and a
quantity an exact multiple of its lot; anything else is rejected, never rounded, because
rounding a price silently changes what a trader asked for. Engine prices (ticks) and quantities
(lots) convert back exactly: ``ticks * tick_size`` and ``lots * lot_size``.
Time given to the engine is integer microseconds since the Unix epoch (UTC).
Dollars written for people (``usd_figure``) are exact too: whole cents when the amount is, else
every micro-dollar the ledger holds.
"""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext

from exchange.errors import OrderRejectCode, OrderRejected

# Wide enough for any price the catalog accepts (price_max over the smallest tick) with room.
DECIMAL_PRECISION_DIGITS = 40
CENTS = Decimal("0.01")
MICROS = Decimal("0.000001")


def price_to_ticks(price: Decimal, tick_size: Decimal, *, field: str = "price") -> int:
    """Convert a price in $/GPU-hr to an integer number of ticks, refusing prices off the tick."""
    if not isinstance(price, Decimal) or not price.is_finite():
        raise OrderRejected(
            OrderRejectCode.INVALID_PRICE, "Price must be a finite decimal.", field=field
        )
    with localcontext() as context:
        context.prec = DECIMAL_PRECISION_DIGITS
        try:
            ticks = price / tick_size
        except InvalidOperation as error:
            raise OrderRejected(
                OrderRejectCode.INVALID_PRICE, "Price is not a number.", field=field
            ) from error
        if ticks != ticks.to_integral_value():
            raise OrderRejected(
                OrderRejectCode.PRICE_OFF_TICK,
                f"Price {price} is not a multiple of the tick size {tick_size.normalize():f}.",
                field=field,
            )
    return int(ticks)


def ticks_to_price(ticks: int, tick_size: Decimal) -> Decimal:
    return tick_size * ticks


def quantity_to_lots(quantity: int, lot_size: int, *, field: str = "quantity") -> int:
    """Convert a quantity in contracts to an integer number of lots, refusing partial lots."""
    if quantity % lot_size:
        raise OrderRejected(
            OrderRejectCode.QUANTITY_OFF_LOT,
            f"Quantity {quantity} is not a multiple of the lot size {lot_size}.",
            field=field,
        )
    return quantity // lot_size


def lots_to_quantity(lots: int, lot_size: int) -> int:
    return lots * lot_size


def engine_time(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    assert moment.tzinfo is not None, "engine times come from aware datetimes"
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def usd_figure(amount: Decimal) -> str:
    """Dollars as pages and refusals write them: thousands separators, whole cents when the
    amount is exact to the cent, else every micro-dollar (a fee or a margin is not always whole
    cents, and a refusal must not round what it says is missing). ``2,790.50``, ``0.00``,
    ``637.563456``; the caller writes the currency ("USD") after it."""
    with localcontext() as context:
        context.prec = DECIMAL_PRECISION_DIGITS
        try:
            cents, micros = amount.quantize(CENTS), amount.quantize(MICROS)
        except InvalidOperation:  # Too many digits to quantize (a refused 1E+400): as given.
            return f"{amount:,}"
    return f"{cents if cents == amount else micros:,}"
