from exchange.models.api import ApiKey
from exchange.models.audit import AuditEntry
from exchange.models.catalog import Instrument, Interconnect, Region, ReservedCapacity, Sku
from exchange.models.funding import Deposit, StripeEvent, Withdrawal
from exchange.models.notices import Notice
from exchange.models.orders import (
    LIVE_STATUSES,
    RESTING_STATUSES,
    CancelAllTimer,
    CancelReason,
    Order,
    OrderCommand,
    OrderHold,
    OrderRejection,
    OrderTransition,
    Side,
    Trade,
)
from exchange.models.participants import Account, Membership, Organization
from exchange.models.pools import (
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolOrder,
    PoolRound,
    PoolTransfer,
)
from exchange.models.risk import MarginCall, RiskCycle, SettlementPrice

__all__ = [
    "LIVE_STATUSES",
    "RESTING_STATUSES",
    "Account",
    "ApiKey",
    "AuditEntry",
    "CancelAllTimer",
    "CancelReason",
    "Deposit",
    "Instrument",
    "Interconnect",
    "MarginCall",
    "Membership",
    "Notice",
    "Order",
    "OrderCommand",
    "OrderHold",
    "OrderRejection",
    "OrderTransition",
    "Organization",
    "Pool",
    "PoolAllocation",
    "PoolDemand",
    "PoolMember",
    "PoolOrder",
    "PoolRound",
    "PoolTransfer",
    "Region",
    "ReservedCapacity",
    "RiskCycle",
    "SettlementPrice",
    "Side",
    "Sku",
    "StripeEvent",
    "Trade",
    "Withdrawal",
]
