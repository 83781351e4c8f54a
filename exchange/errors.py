"""Named rejection codes of the exchange domain, shown to users as stable error codes.

The matching engine's own codes (``MATCHING_*``) live in ``matching``; these cover what is
checked before an order reaches the engine.
"""

from enum import StrEnum


class OrderRejectCode(StrEnum):
    UNKNOWN_INSTRUMENT = "ORDER_UNKNOWN_INSTRUMENT"
    INSTRUMENT_HALTED = "ORDER_INSTRUMENT_HALTED"
    INSTRUMENT_EXPIRED = "ORDER_INSTRUMENT_EXPIRED"
    ACCOUNT_INACTIVE = "ORDER_ACCOUNT_INACTIVE"
    INVALID_SIDE = "ORDER_INVALID_SIDE"
    INVALID_TYPE = "ORDER_INVALID_TYPE"
    INVALID_TIME_IN_FORCE = "ORDER_INVALID_TIME_IN_FORCE"
    INVALID_SELF_TRADE_PREVENTION = "ORDER_INVALID_SELF_TRADE_PREVENTION"
    INVALID_QUANTITY = "ORDER_INVALID_QUANTITY"
    QUANTITY_OFF_LOT = "ORDER_QUANTITY_OFF_LOT"
    QUANTITY_TOO_LARGE = "ORDER_QUANTITY_TOO_LARGE"
    INVALID_PRICE = "ORDER_INVALID_PRICE"
    PRICE_OFF_TICK = "ORDER_PRICE_OFF_TICK"
    PRICE_OUT_OF_BAND = "ORDER_PRICE_OUT_OF_BAND"
    PRICE_REQUIRED = "ORDER_PRICE_REQUIRED"
    PRICE_NOT_ALLOWED = "ORDER_PRICE_NOT_ALLOWED"
    POST_ONLY_MARKET = "ORDER_POST_ONLY_MARKET"
    EXPIRY_REQUIRED = "ORDER_EXPIRY_REQUIRED"
    EXPIRY_NOT_ALLOWED = "ORDER_EXPIRY_NOT_ALLOWED"
    EXPIRY_IN_PAST = "ORDER_EXPIRY_IN_PAST"
    CLIENT_ORDER_ID_INVALID = "ORDER_CLIENT_ORDER_ID_INVALID"
    CLIENT_ORDER_ID_CONFLICT = "ORDER_CLIENT_ORDER_ID_CONFLICT"
    NOT_LIVE = "ORDER_NOT_LIVE"
    MARKET_ORDER_NOT_REPLACEABLE = "ORDER_MARKET_ORDER_NOT_REPLACEABLE"


class CatalogErrorCode(StrEnum):
    INVALID_SYMBOL = "CATALOG_INVALID_SYMBOL"
    INVALID_LISTING = "CATALOG_INVALID_LISTING"
    RESERVATION_ALREADY_STARTED = "CATALOG_RESERVATION_ALREADY_STARTED"
    RESERVATION_ALREADY_LISTED = "CATALOG_RESERVATION_ALREADY_LISTED"
    INVALID_STATUS_CHANGE = "CATALOG_INVALID_STATUS_CHANGE"


class ExchangeError(Exception):
    """An expected refusal: a stable code, a message for people, and the field at fault."""

    def __init__(self, code: StrEnum, message: str, *, field: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


class OrderRejected(ExchangeError):
    pass


class CatalogError(ExchangeError):
    pass
