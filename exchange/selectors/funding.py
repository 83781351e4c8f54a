"""Reads of the money a trading account holds, from the ledger."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from exchange.models import Account, Deposit, Withdrawal
from exchange.services.ledger_accounts import cash_account_code, micros_to_usd
from ledger.models import Account as LedgerAccount


@dataclass(frozen=True)
class CashBalance:
    """USD. ``posted``: what the exchange owes the account; ``pending``: held (withdrawals
    waiting for review, and whatever else holds cash); ``available`` = posted - pending."""

    posted: Decimal
    pending: Decimal
    available: Decimal


def cash_balance(account: Account) -> CashBalance:
    ledger_account = LedgerAccount.objects.filter(code=cash_account_code(account)).first()
    if ledger_account is None:  # Opened on first use: no money has moved yet.
        return CashBalance(posted=Decimal(0), pending=Decimal(0), available=Decimal(0))
    # The cash account is a liability: the customer's money is its credit balance.
    posted = ledger_account.credits_posted - ledger_account.debits_posted
    return CashBalance(
        posted=micros_to_usd(posted),
        pending=micros_to_usd(ledger_account.debits_pending),
        available=micros_to_usd(ledger_account.available),
    )


def deposits_of(account: Account) -> QuerySet[Deposit]:
    return Deposit.objects.filter(account=account).select_related("account__organization")


def withdrawals_of(account: Account) -> QuerySet[Withdrawal]:
    return Withdrawal.objects.filter(account=account).select_related("account__organization")
