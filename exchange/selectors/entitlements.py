"""Reads of the GPU-hour entitlements a trading account holds, from the ledger."""

from dataclasses import dataclass

from exchange.models import Account
from exchange.services.ledger_accounts import owner_of
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity

ENTITLEMENT_ROWS_MAX = 500


@dataclass(frozen=True)
class EntitlementHolding:
    code: str
    name: str
    gpu_hours: int  # Posted balance.
    available: int  # What is not held for open sell orders.


def entitlements_of(account: Account) -> list[EntitlementHolding]:
    """``account``'s non-zero GPU-hour entitlements, by commodity code."""
    ledger_accounts = (
        LedgerAccount.objects.filter(
            owner=owner_of(account), commodity__kind=Commodity.Kind.ENTITLEMENT
        )
        .select_related("commodity")
        .order_by("commodity__code")[:ENTITLEMENT_ROWS_MAX]
    )
    return [
        EntitlementHolding(
            code=row.commodity.code,
            name=row.commodity.name,
            gpu_hours=row.balance,
            available=row.available,
        )
        for row in ledger_accounts
        if row.balance
    ]
