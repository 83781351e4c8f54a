"""Reads of a trading account as a customer sees it: what it holds of each asset, and the
statement of an asset with the balance after each movement.

Assets are US dollars (``USD``) and GPU-hour entitlements (their commodity code, such as
``GPUH-H100SXM-USEAST-202702``). Amounts are in each asset's own unit: dollars as ``Decimal``,
GPU-hours as ``int``. Signs are the customer's: money or GPU-hours coming in are positive.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from exchange.models import Account
from exchange.selectors.entitlements import entitlements_of
from exchange.selectors.funding import cash_balance
from exchange.services.ledger_accounts import (
    USD_CODE,
    cash_account_code,
    deficit_account_code,
    entitlement_account_code,
    entitlement_parts,
    micros_to_usd,
    owner_of,
)
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity, Posting

Quantity = Decimal | int  # Dollars, or GPU-hours.


@dataclass(frozen=True)
class AssetBalance:
    """``posted``: what the account holds; ``pending``: held (for open orders, withdrawals
    under review); ``available`` = posted - pending; ``owed``: dollars of losses the account
    could not pay from cash or margin and owes the exchange (its deficit; none in GPU-hours)."""

    asset: str
    kind: str  # Commodity.Kind: currency or entitlement.
    posted: Quantity
    pending: Quantity
    available: Quantity
    owed: Quantity = 0


def balances_of(account: Account) -> list[AssetBalance]:
    """Dollars first (always, even before any deposit), then each GPU-hour entitlement held."""
    cash = cash_balance(account)
    deficit = LedgerAccount.objects.filter(code=deficit_account_code(account)).first()
    balances = [
        AssetBalance(
            USD_CODE,
            Commodity.Kind.CURRENCY,
            cash.posted,
            cash.pending,
            cash.available,
            owed=micros_to_usd(deficit.balance if deficit is not None else 0),
        )
    ]
    balances += [
        AssetBalance(
            holding.code,
            Commodity.Kind.ENTITLEMENT,
            holding.gpu_hours,
            holding.on_hold,
            holding.available,
        )
        for holding in entitlements_of(account)
    ]
    return balances


@dataclass(frozen=True)
class StatementSource:
    """The ledger account a statement of ``asset`` reads, and how to read its postings."""

    asset: str
    ledger_account: LedgerAccount | None  # None: not opened yet, as no money has moved.
    # The cash account is the exchange's liability, so the customer's money is its credits;
    # an entitlement account is an asset, so GPU-hours held are its debits.
    sign: int

    def quantity(self, units: int) -> Quantity:
        """Ledger units (a posting's amount or a sum of them) in the customer's terms."""
        if self.asset == USD_CODE:
            return micros_to_usd(self.sign * units)
        return self.sign * units


def statement_source(account: Account, asset: str) -> StatementSource | None:
    """Where ``account``'s statement of ``asset`` comes from; None if it never held it.

    Only the account's own ledger accounts are looked up (their codes start with its id and
    their owner is checked), so no asset name reaches another account's statement.
    """
    if asset == USD_CODE:
        cash = LedgerAccount.objects.filter(code=cash_account_code(account)).first()
        return StatementSource(asset, cash, sign=-1)
    if entitlement_parts(asset) is None:
        return None
    held = LedgerAccount.objects.filter(
        code=entitlement_account_code(account, asset),
        owner=owner_of(account),
        commodity__kind=Commodity.Kind.ENTITLEMENT,
    ).first()
    return StatementSource(asset, held, sign=1) if held is not None else None


def statement_postings(source: StatementSource) -> QuerySet[Posting]:
    """The postings of the statement, newest first, with their entries."""
    if source.ledger_account is None:
        return Posting.objects.none()
    return (
        Posting.objects.filter(account=source.ledger_account)
        .select_related("entry")
        .order_by("-id")
    )


@dataclass(frozen=True)
class StatementLine:
    posting_id: int
    entry_id: int
    posted_at: datetime
    description: str
    amount: Quantity
    balance_after: Quantity


def statement_lines(source: StatementSource, postings: Sequence[Posting]) -> list[StatementLine]:
    """Lines for ``postings`` with the balance after each one.

    ``postings`` are consecutive postings of the statement, newest first (a page of
    ``statement_postings``). The balance after the first of them is the sum of the account's
    postings up to it (one aggregate query); each next line's is the previous one's less the
    previous posting, so every page is right whatever page came before.
    """
    if not postings:
        return []
    assert source.ledger_account is not None
    balance = (
        Posting.objects.filter(account=source.ledger_account, id__lte=postings[0].pk).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    lines = []
    for posting in postings:
        lines.append(
            StatementLine(
                posting_id=posting.pk,
                entry_id=posting.entry_id,
                posted_at=posting.entry.created_at,
                description=posting.entry.description,
                amount=source.quantity(posting.amount),
                balance_after=source.quantity(balance),
            )
        )
        balance -= posting.amount
    return lines
