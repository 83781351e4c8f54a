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
    # The exchange operator's own accounts trade in none of its markets.
    ACCOUNT_IS_OPERATOR = "ORDER_ACCOUNT_IS_OPERATOR"
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
    # A future's buy above, or sell below, its mark by more than the price limit.
    PRICE_OUTSIDE_LIMIT = "ORDER_PRICE_OUTSIDE_LIMIT"
    PRICE_REQUIRED = "ORDER_PRICE_REQUIRED"
    PRICE_NOT_ALLOWED = "ORDER_PRICE_NOT_ALLOWED"
    POST_ONLY_MARKET = "ORDER_POST_ONLY_MARKET"
    POST_ONLY_TIME_IN_FORCE = "ORDER_POST_ONLY_TIME_IN_FORCE"
    EXPIRY_REQUIRED = "ORDER_EXPIRY_REQUIRED"
    EXPIRY_NOT_ALLOWED = "ORDER_EXPIRY_NOT_ALLOWED"
    EXPIRY_IN_PAST = "ORDER_EXPIRY_IN_PAST"
    EXPIRY_INVALID = "ORDER_EXPIRY_INVALID"
    CLIENT_ORDER_ID_INVALID = "ORDER_CLIENT_ORDER_ID_INVALID"
    CLIENT_ORDER_ID_CONFLICT = "ORDER_CLIENT_ORDER_ID_CONFLICT"
    NOT_LIVE = "ORDER_NOT_LIVE"
    MARKET_ORDER_NOT_REPLACEABLE = "ORDER_MARKET_ORDER_NOT_REPLACEABLE"
    BATCH_TOO_LARGE = "ORDER_BATCH_TOO_LARGE"
    CANCEL_AFTER_TIMEOUT_INVALID = "ORDER_CANCEL_AFTER_TIMEOUT_INVALID"
    # Staff cancelling a customer's order: active staff with the operations role.
    NOT_STAFF = "ORDER_NOT_STAFF"
    ROLE_REQUIRED = "ORDER_ROLE_REQUIRED"
    REASON_REQUIRED = "ORDER_REASON_REQUIRED"
    # Risk: the collateral an order needs (exchange.services.collateral).
    INSUFFICIENT_FUNDS = "RISK_INSUFFICIENT_FUNDS"
    INSUFFICIENT_ENTITLEMENT = "RISK_INSUFFICIENT_ENTITLEMENT"
    NO_REFERENCE_PRICE = "RISK_NO_REFERENCE_PRICE"
    NOTIONAL_TOO_LARGE = "RISK_NOTIONAL_TOO_LARGE"
    COLLATERAL_MISSING = "RISK_COLLATERAL_MISSING"
    REDUCE_ONLY = "RISK_REDUCE_ONLY"
    # A reducing order (placed under a margin call, without margin or fee) replaced after the
    # call ended: it may only be cancelled (the cure cancels it).
    MARGIN_CALL_ENDED = "RISK_MARGIN_CALL_ENDED"
    # A resale sell beyond what the seller's organization holds of the block.
    BLOCK_NOT_HELD = "RISK_BLOCK_NOT_HELD"
    # An order that could take its organization's net position in a future (with the future's
    # options) beyond the future's position limit, counting its resting orders on that side.
    POSITION_LIMIT = "RISK_POSITION_LIMIT"


class CatalogErrorCode(StrEnum):
    INVALID_SYMBOL = "CATALOG_INVALID_SYMBOL"
    INVALID_LISTING = "CATALOG_INVALID_LISTING"
    INVALID_CAPACITY = "CATALOG_INVALID_CAPACITY"
    PROVIDER_REQUIRED = "CATALOG_PROVIDER_REQUIRED"
    # GPU-hours issued to the exchange operator's own organization.
    HOLDER_IS_OPERATOR = "CATALOG_HOLDER_IS_OPERATOR"
    RESERVATION_ALREADY_STARTED = "CATALOG_RESERVATION_ALREADY_STARTED"
    RESERVATION_ALREADY_LISTED = "CATALOG_RESERVATION_ALREADY_LISTED"
    INVALID_STATUS_CHANGE = "CATALOG_INVALID_STATUS_CHANGE"
    # Trading status and listings are staff's: active staff with the operations role.
    NOT_STAFF = "CATALOG_NOT_STAFF"
    ROLE_REQUIRED = "CATALOG_ROLE_REQUIRED"
    # A position limit set on an instrument that is no future, or not a whole number >= 0.
    POSITION_LIMIT_INVALID = "CATALOG_POSITION_LIMIT_INVALID"
    # A new strip over a month already listed on other contract terms.
    STRIP_TERMS_DIFFER = "CATALOG_STRIP_TERMS_DIFFER"


class FundingErrorCode(StrEnum):
    AMOUNT_INVALID = "FUNDING_AMOUNT_INVALID"
    AMOUNT_TOO_LARGE = "FUNDING_AMOUNT_TOO_LARGE"
    # Below Stripe Checkout's minimum charge (test funds take any whole number of cents).
    AMOUNT_TOO_SMALL = "FUNDING_AMOUNT_TOO_SMALL"
    TEST_FUNDS_DISABLED = "FUNDING_TEST_FUNDS_DISABLED"
    STRIPE_NOT_CONFIGURED = "FUNDING_STRIPE_NOT_CONFIGURED"
    STRIPE_ERROR = "FUNDING_STRIPE_ERROR"
    WEBHOOK_SIGNATURE_INVALID = "FUNDING_WEBHOOK_SIGNATURE_INVALID"
    WEBHOOK_PAYLOAD_INVALID = "FUNDING_WEBHOOK_PAYLOAD_INVALID"
    WEBHOOK_NOT_CONFIGURED = "FUNDING_WEBHOOK_NOT_CONFIGURED"
    CHECKOUT_MISMATCH = "FUNDING_CHECKOUT_MISMATCH"
    PARTIAL_REFUND = "FUNDING_PARTIAL_REFUND"
    ACCOUNT_INACTIVE = "FUNDING_ACCOUNT_INACTIVE"
    INSUFFICIENT_FUNDS = "FUNDING_INSUFFICIENT_FUNDS"
    NOT_STAFF = "FUNDING_NOT_STAFF"
    NOT_FINANCE = "FUNDING_NOT_FINANCE"
    # Finance staff approving a withdrawal of an organization they are a member of.
    REVIEWER_IS_MEMBER = "FUNDING_REVIEWER_IS_MEMBER"
    INVALID_STATUS_CHANGE = "FUNDING_INVALID_STATUS_CHANGE"
    PAYOUT_FAILED = "FUNDING_PAYOUT_FAILED"
    PAYOUT_UNCONFIRMED = "FUNDING_PAYOUT_UNCONFIRMED"
    MARGIN_CALL_OPEN = "FUNDING_MARGIN_CALL_OPEN"


class RiskErrorCode(StrEnum):
    """The daily risk cycle and staff risk actions (settlement prices, margin calls)."""

    REASON_REQUIRED = "RISK_REASON_REQUIRED"
    INVALID_PRICE = "RISK_INVALID_SETTLEMENT_PRICE"
    NOT_SETTLED_DAILY = "RISK_NOT_SETTLED_DAILY"
    DAY_SETTLED = "RISK_DAY_SETTLED"
    DAY_IN_FUTURE = "RISK_DAY_IN_FUTURE"
    DAY_NOT_CLOSED = "RISK_DAY_NOT_CLOSED"
    DAY_OUT_OF_ORDER = "RISK_DAY_OUT_OF_ORDER"
    DAY_BEFORE_LISTING = "RISK_DAY_BEFORE_LISTING"
    DAY_NOT_PRICED = "RISK_DAY_NOT_PRICED"
    PRICE_MISSING = "RISK_SETTLEMENT_PRICE_MISSING"
    NO_OPEN_MARGIN_CALL = "RISK_NO_OPEN_MARGIN_CALL"
    # Staff risk actions: active staff with the risk role.
    NOT_STAFF = "RISK_NOT_STAFF"
    ROLE_REQUIRED = "RISK_ROLE_REQUIRED"


class StaffErrorCode(StrEnum):
    """Back-office accounts: granting staff roles is a superuser's (``staff_roles_grant``)."""

    NOT_STAFF = "STAFF_NOT_STAFF"
    SUPERUSER_REQUIRED = "STAFF_SUPERUSER_REQUIRED"


class ApiAuthErrorCode(StrEnum):
    """API authentication (401), authorization (403) and key management (400)."""

    REQUIRED = "AUTH_REQUIRED"
    KEY_INVALID = "AUTH_KEY_INVALID"
    KEY_REVOKED = "AUTH_KEY_REVOKED"
    IP_NOT_ALLOWED = "AUTH_IP_NOT_ALLOWED"
    SIGNATURE_REQUIRED = "AUTH_SIGNATURE_REQUIRED"
    SIGNATURE_INVALID = "AUTH_SIGNATURE_INVALID"
    SIGNATURE_EXPIRED = "AUTH_SIGNATURE_EXPIRED"
    SIGNATURE_REPLAYED = "AUTH_SIGNATURE_REPLAYED"
    SCOPE_MISSING = "AUTH_SCOPE_MISSING"
    ROLE_MISSING = "AUTH_ROLE_MISSING"
    NO_ORGANIZATION = "AUTH_NO_ORGANIZATION"
    SCOPES_INVALID = "API_KEY_SCOPES_INVALID"
    NAME_INVALID = "API_KEY_NAME_INVALID"
    IP_ALLOWLIST_INVALID = "API_KEY_IP_ALLOWLIST_INVALID"


class PricingErrorCode(StrEnum):
    """Option quotes, implied volatilities and hedge recommendations (``/api/v1/pricing/``)."""

    INVALID_INPUT = "PRICING_INVALID_INPUT"
    PRICE_BELOW_INTRINSIC = "PRICING_PRICE_BELOW_INTRINSIC"
    PRICE_ABOVE_UPPER_BOUND = "PRICING_PRICE_ABOVE_UPPER_BOUND"
    NOT_CONVERGED = "PRICING_NOT_CONVERGED"
    NOT_AN_OPTION = "PRICING_NOT_AN_OPTION"
    OPTION_EXPIRED = "PRICING_OPTION_EXPIRED"
    NO_REFERENCE_PRICE = "PRICING_NO_REFERENCE_PRICE"
    NO_FUTURES = "PRICING_NO_FUTURES"
    NO_PRICES = "PRICING_NO_PRICES"
    MONTH_NOT_LISTED = "PRICING_MONTH_NOT_LISTED"
    HEDGE_INVALID = "PRICING_HEDGE_INVALID"


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


class FundingError(ExchangeError):
    pass


class RiskError(ExchangeError):
    def __init__(self, code: StrEnum, message: str, field: str = "") -> None:
        super().__init__(code, message, field=field)


class StaffError(ExchangeError):
    pass


class ApiAuthError(ExchangeError):
    def __init__(
        self, code: StrEnum, message: str, field: str = "", *, key_prefix: str = ""
    ) -> None:
        super().__init__(code, message, field=field)
        # The key the request proved it holds when it is refused all the same (from an
        # address the key's allow-list refuses): its answer tells that key's rate-limit standing.
        self.key_prefix = key_prefix


class PricingError(ExchangeError):
    pass


class ParticipantErrorCode(StrEnum):
    """Signing up an organization with its first member; its traders adding members and
    setting their roles."""

    NAME_INVALID = "PARTICIPANT_NAME_INVALID"
    NAME_TAKEN = "PARTICIPANT_NAME_TAKEN"
    SLUG_INVALID = "PARTICIPANT_SLUG_INVALID"
    SLUG_TAKEN = "PARTICIPANT_SLUG_TAKEN"
    KIND_INVALID = "PARTICIPANT_KIND_INVALID"
    OPERATOR_EXISTS = "PARTICIPANT_OPERATOR_EXISTS"
    USERNAME_INVALID = "PARTICIPANT_USERNAME_INVALID"
    USERNAME_TAKEN = "PARTICIPANT_USERNAME_TAKEN"
    EMAIL_INVALID = "PARTICIPANT_EMAIL_INVALID"
    PASSWORD_INVALID = "PARTICIPANT_PASSWORD_INVALID"
    ROLE_INVALID = "PARTICIPANT_ROLE_INVALID"
    LAST_TRADER = "PARTICIPANT_LAST_TRADER"


class ParticipantError(ExchangeError):
    pass


class PoolErrorCode(StrEnum):
    """Portfolio pools: creating them, members' demand, cut-offs and allocation."""

    NAME_INVALID = "POOL_NAME_INVALID"
    NAME_TAKEN = "POOL_NAME_TAKEN"
    SPONSOR_REQUIRED = "POOL_SPONSOR_REQUIRED"
    RULE_INVALID = "POOL_RULE_INVALID"
    SUBSIDY_INVALID = "POOL_SUBSIDY_INVALID"
    CREDIT_LINE_INVALID = "POOL_CREDIT_LINE_INVALID"
    CUTOFF_INVALID = "POOL_CUTOFF_INVALID"
    CUTOFF_PASSED = "POOL_CUTOFF_PASSED"
    CLOSED = "POOL_CLOSED"
    MEMBER_INVALID = "POOL_MEMBER_INVALID"
    MEMBER_NOT_STARTUP = "POOL_MEMBER_NOT_STARTUP"
    ALREADY_MEMBER = "POOL_ALREADY_MEMBER"
    NOT_A_MEMBER = "POOL_NOT_A_MEMBER"
    SPONSOR_ONLY = "POOL_SPONSOR_ONLY"
    MEMBER_GRADUATED = "POOL_MEMBER_GRADUATED"
    PRIORITY_INVALID = "POOL_PRIORITY_INVALID"
    INSTRUMENT_INVALID = "POOL_INSTRUMENT_INVALID"
    MONTHS_INVALID = "POOL_MONTHS_INVALID"
    QUANTITY_INVALID = "POOL_QUANTITY_INVALID"
    NOT_WHOLE_CONTRACTS = "POOL_NOT_WHOLE_CONTRACTS"
    PRICE_INVALID = "POOL_PRICE_INVALID"
    DEMAND_LOCKED = "POOL_DEMAND_LOCKED"
    NO_DEMAND = "POOL_NO_DEMAND"
    ROUND_WORKING = "POOL_ROUND_WORKING"
    ROUND_NOT_WORKING = "POOL_ROUND_NOT_WORKING"
    ORDERS_NOT_FINAL = "POOL_ORDERS_NOT_FINAL"
    NOT_ENOUGH_HELD = "POOL_NOT_ENOUGH_HELD"
    REALLOCATION_BEYOND_DEMAND = "POOL_REALLOCATION_BEYOND_DEMAND"
    REALLOCATION_ABOVE_LIMIT = "POOL_REALLOCATION_ABOVE_LIMIT"
    NO_MARK = "POOL_NO_MARK"
    INSUFFICIENT_FUNDS = "POOL_INSUFFICIENT_FUNDS"
    AMOUNT_INVALID = "POOL_AMOUNT_INVALID"
    MARGIN_CALL_OPEN = "POOL_MARGIN_CALL_OPEN"


class PoolError(ExchangeError):
    pass
