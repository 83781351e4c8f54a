"""Reading a trading account's figures from the ledger in tests, in micro-USD or contracts,
independently of the selectors under test."""

from decimal import Decimal

from django.conf import settings

from ledger.models import Account as LedgerAccount
from ledger.models import Entry

MICROS = 10**6


def usd(amount) -> int:
    """Dollars as micro-dollars; refuses fractions of one (a test's arithmetic error)."""
    value = Decimal(amount) * MICROS
    assert value == value.to_integral_value()
    return int(value)


def balance(code: str) -> int:
    """A ledger account's posted balance, debit positive (0 if it was never opened)."""
    account = LedgerAccount.objects.filter(code=code).first()
    return account.balance if account is not None else 0


def cash(account) -> int:
    """Cash owned by ``account`` (a liability: its credit balance)."""
    return -balance(f"trading:{account.pk}:cash:USD")


def margin_held(account, symbol: str) -> int:
    return -balance(f"trading:{account.pk}:margin:{symbol}:USD")


def position(account, symbol: str) -> int:
    return balance(f"trading:{account.pk}:position:{symbol}")


def cost(account, symbol: str) -> int:
    return balance(f"trading:{account.pk}:cost:{symbol}:USD")


def deficit(account) -> int:
    """What ``account`` owes the exchange (an asset of the exchange: its debit balance)."""
    return balance(f"trading:{account.pk}:deficit:USD")


def usd_of_accounts(*accounts) -> int:
    """Everything the trading accounts own in USD: cash and margin, less what they owe."""
    total = 0
    for account in accounts:
        for row in LedgerAccount.objects.filter(
            code__startswith=f"trading:{account.pk}:", commodity__code="USD"
        ):
            # Cash and margin are owed to the account (credit balances), a deficit by it (a
            # debit balance): both count with the credit sign.
            if any(part in row.code for part in (":cash:", ":margin:", ":deficit:")):
                total -= row.balance
    return total


def fees() -> int:
    return -balance("exchange:fees:USD")


def entry_postings(key: str) -> dict[str, int]:
    entry = Entry.objects.get(idempotency_key=key)
    return {posting.account.code: posting.amount for posting in entry.postings.all()}


def scan(price: str, contracts: int, hours: int) -> int:
    """Initial margin of a futures position at ``price``: the price scan range of its value."""
    return usd(settings.EXCHANGE_PRICE_SCAN * Decimal(price) * contracts * hours)
