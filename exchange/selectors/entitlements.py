"""Reads of the GPU-hour entitlements a trading account holds, from the ledger."""

from dataclasses import dataclass
from datetime import date

from django.db.models import F

from exchange.models import Account
from exchange.services.ledger_accounts import entitlement_parts, owner_of
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity


@dataclass(frozen=True)
class EntitlementHolding:
    code: str
    name: str
    gpu_hours: int  # Posted balance.
    available: int  # What is not held for open sell orders.
    sku_code: str
    region_code: str
    month: date  # The first day of the month the GPU-hours are usable in.

    @property
    def on_hold(self) -> int:
        """GPU-hours held (for open sell orders): posted, but not available."""
        return self.gpu_hours - self.available


def entitlements_of(account: Account) -> list[EntitlementHolding]:
    """``account``'s non-zero GPU-hour entitlements, by commodity code: all of them, since
    the balances and the valuation read this too, and a holding left off would be GPU-hours the
    account could not see (a provider's months x SKUs x regions run to thousands of rows at
    most, one query).

    The accounts at 0 are left out: GPU-hour accounts stay once opened (a short's when its
    future delivers, a seller's that sold all)."""
    ledger_accounts = (
        LedgerAccount.objects.filter(
            owner=owner_of(account), commodity__kind=Commodity.Kind.ENTITLEMENT
        )
        .exclude(debits_posted=F("credits_posted"))
        .select_related("commodity")
        .order_by("commodity__code")
    )
    holdings = []
    for row in ledger_accounts:
        parts = entitlement_parts(row.commodity.code)
        assert parts is not None, f"entitlement commodity {row.commodity.code} is misnamed"
        holdings.append(
            EntitlementHolding(
                code=row.commodity.code,
                name=row.commodity.name,
                gpu_hours=row.balance,
                available=row.available,
                sku_code=parts.sku_code,
                region_code=parts.region_code,
                month=parts.month,
            )
        )
    return holdings
