"""Helpers of the ledger tests: unique names, accounts, recomputed totals, write snapshots."""

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
from django.db.models import Sum

from ledger import services
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account, Commodity, Entry, Hold, HoldConsumption, Posting

Limit = Account.Limit
DEBIT, CREDIT = Hold.Side.DEBIT, Hold.Side.CREDIT


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def commodity(kind: str = Commodity.Kind.CURRENCY, scale: int = 2) -> Commodity:
    code = unique("C")
    return services.commodity_define(code=code, name=code, kind=kind, scale=scale)


def account(
    commodity: Commodity, limit: str = Limit.NONE, type: str = Account.Type.ASSET
) -> Account:
    return services.account_open(
        code=unique("acct"), owner=unique("owner"), commodity=commodity, type=type, limit=limit
    )


def cash(commodity: Commodity) -> Account:
    """A customer's cash: it can spend (be debited) only what it was credited."""
    return account(commodity, Limit.DEBITS_MUST_NOT_EXCEED_CREDITS, Account.Type.LIABILITY)


def holding(commodity: Commodity) -> Account:
    """A holder's entitlements: it can give (be credited) only what it was debited."""
    return account(commodity, Limit.CREDITS_MUST_NOT_EXCEED_DEBITS, Account.Type.ASSET)


def move(debit: Account, credit: Account, amount: int, key: str | None = None) -> Entry:
    """Debit one account and credit the other by ``amount``."""
    return services.entry_post(
        key=key or unique("move"),
        description="move",
        postings=[(debit, amount), (credit, -amount)],
    )


def totals(account: Account) -> tuple[int, int, int, int]:
    account.refresh_from_db()
    return (
        account.debits_posted,
        account.credits_posted,
        account.debits_pending,
        account.credits_pending,
    )


def recomputed(account: Account) -> tuple[int, int, int, int]:
    """The four totals of an account recomputed from its postings and pending holds."""
    amounts = list(Posting.objects.filter(account=account).values_list("amount", flat=True))
    pending = Hold.objects.filter(account=account, status=Hold.Status.PENDING)
    return (
        sum(a for a in amounts if a > 0),
        -sum(a for a in amounts if a < 0),
        sum(h.remaining for h in pending if h.side == DEBIT),
        sum(h.remaining for h in pending if h.side == CREDIT),
    )


def assert_consistent(accounts: Iterable[Account]) -> None:
    """Cached totals equal recomputed ones; limits hold; each commodity's postings sum to 0."""
    commodities = set()
    for acc in accounts:
        assert totals(acc) == recomputed(acc), acc.code
        if acc.limit != Limit.NONE:
            assert acc.available >= 0, acc.code
        commodities.add(acc.commodity_id)
    for commodity_id in commodities:
        total = Posting.objects.filter(commodity_id=commodity_id).aggregate(s=Sum("amount"))["s"]
        assert (total or 0) == 0
    for hold in Hold.objects.filter(account__in=list(accounts)):
        consumed = sum(c.amount for c in hold.consumptions.all())
        assert 0 <= hold.remaining <= hold.amount
        assert consumed <= hold.amount - hold.remaining
        if hold.status == Hold.Status.PENDING:
            assert hold.remaining == hold.amount - consumed > 0


def snapshot() -> tuple:
    """Everything the ledger writes, to compare before and after a refused operation."""
    return (
        Entry.objects.count(),
        Posting.objects.count(),
        HoldConsumption.objects.count(),
        list(
            Hold.objects.order_by("pk").values_list(
                "pk", "remaining", "released", "status", "resolved_at"
            )
        ),
        list(
            Account.objects.order_by("pk").values_list(
                "pk", "debits_posted", "credits_posted", "debits_pending", "credits_pending"
            )
        ),
        Commodity.objects.count(),
    )


@contextmanager
def refused(code: LedgerErrorCode) -> Iterator[pytest.ExceptionInfo[LedgerError]]:
    """Expect a ``LedgerError`` with ``code`` and that nothing at all was written."""
    before = snapshot()
    with pytest.raises(LedgerError) as info:
        yield info
    assert info.value.code == code, str(info.value)
    assert snapshot() == before
