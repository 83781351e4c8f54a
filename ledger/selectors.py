"""Read-only views of the ledger: trial balance, account statements and a consistency check.

Nothing here writes. Totals are computed with aggregate (GROUP BY) queries so that the checks
scale with the number of accounts, not with the number of postings held in memory.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, Sum, Value, When
from django.db.models.functions import Coalesce

from ledger.models import Account, Commodity, Entry, Hold, Posting

STATEMENT_PAGE_MAX = 1000
PROBLEMS_MAX = 1000


@dataclass(frozen=True)
class TrialBalanceLine:
    account: Account
    debits_posted: int
    credits_posted: int
    balance: int
    debits_pending: int
    credits_pending: int


@dataclass
class TrialBalanceCommodity:
    commodity: Commodity
    lines: list[TrialBalanceLine] = field(default_factory=list)
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def balance(self) -> int:
        """Sum of the account balances: zero in a consistent ledger."""
        return self.debits_posted - self.credits_posted


def trial_balance() -> list[TrialBalanceCommodity]:
    """Per commodity (by code), per account (by code): posted totals, balance and pending."""
    result: dict[int, TrialBalanceCommodity] = {}
    accounts = Account.objects.select_related("commodity").order_by("commodity__code", "code")
    for account in accounts.iterator(chunk_size=2000):
        group = result.get(account.commodity_id)
        if group is None:
            group = result[account.commodity_id] = TrialBalanceCommodity(account.commodity)
        group.lines.append(
            TrialBalanceLine(
                account=account,
                debits_posted=account.debits_posted,
                credits_posted=account.credits_posted,
                balance=account.balance,
                debits_pending=account.debits_pending,
                credits_pending=account.credits_pending,
            )
        )
        group.debits_posted += account.debits_posted
        group.credits_posted += account.credits_posted
        group.debits_pending += account.debits_pending
        group.credits_pending += account.credits_pending
    return list(result.values())


@dataclass(frozen=True)
class StatementLine:
    posting_id: int
    entry_id: int
    created_at: datetime
    description: str
    amount: int
    balance: int  # The account's posted balance after this posting.


@dataclass(frozen=True)
class StatementPage:
    account: Account
    opening_balance: int  # Balance before the first line of the page.
    lines: list[StatementLine]
    next_after_id: int | None  # Pass as ``after_id`` for the next page; None on the last page.


def account_statement(
    account: Account, *, after_id: int | None = None, limit: int = 100
) -> StatementPage:
    """The account's postings in id order after ``after_id``, with the running balance.

    ``limit`` is bounded by ``STATEMENT_PAGE_MAX``. The running balance starts from the sum of
    the account's postings up to ``after_id``, so it is right on every page.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    limit = min(limit, STATEMENT_PAGE_MAX)
    postings = Posting.objects.filter(account=account)
    opening = 0
    if after_id is not None:
        opening = postings.filter(id__lte=after_id).aggregate(total=Sum("amount"))["total"] or 0
        postings = postings.filter(id__gt=after_id)
    rows = list(
        postings.order_by("id").values_list(
            "id", "entry_id", "entry__created_at", "entry__description", "amount"
        )[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    lines = []
    balance = opening
    for posting_id, entry_id, created_at, description, amount in rows:
        balance += amount
        lines.append(StatementLine(posting_id, entry_id, created_at, description, amount, balance))
    return StatementPage(
        account=account,
        opening_balance=opening,
        lines=lines,
        next_after_id=lines[-1].posting_id if more else None,
    )


def _debit_credit_sums() -> dict[int, tuple[int, int]]:
    """Per account id: (sum of debits, sum of credits) recomputed from its postings."""
    rows = (
        Posting.objects.order_by()
        .values("account_id")
        .annotate(
            debits=Coalesce(Sum("amount", filter=Q(amount__gt=0)), 0),
            credits=Coalesce(Sum(-F("amount"), filter=Q(amount__lt=0)), 0),
        )
        .values_list("account_id", "debits", "credits")
    )
    return {account_id: (debits, credits) for account_id, debits, credits in rows}


def _pending_sums() -> dict[int, tuple[int, int]]:
    """Per account id: (pending debits, pending credits) from its pending holds' remaining."""
    rows = (
        Hold.objects.filter(status=Hold.Status.PENDING)
        .order_by()
        .values("account_id", "side")
        .annotate(total=Sum("remaining"))
        .values_list("account_id", "side", "total")
    )
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for account_id, side, total in rows:
        sums[account_id][0 if side == Hold.Side.DEBIT else 1] += total
    return {account_id: (debit, credit) for account_id, (debit, credit) in sums.items()}


class _Problems:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[str] = []
        self.truncated = False

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def add(self, problem: str) -> bool:
        """Record a problem; False once the bound is reached (the caller stops looking)."""
        if self.full:
            self.truncated = True
            return False
        self.items.append(problem)
        return True


def ledger_problems(*, limit: int = PROBLEMS_MAX) -> list[str]:
    """Every inconsistency of the ledger found, as readable lines (at most ``limit`` of them).

    Checks: cached account totals against the postings and pending holds; entries summing to
    zero per commodity; entries having postings; postings in their account's commodity; holds'
    remaining against their status, amount and consumptions.
    """
    problems = _Problems(limit)
    _check_account_totals(problems)
    _check_entries(problems)
    _check_posting_commodities(problems)
    _check_holds(problems)
    if problems.truncated:
        problems.items.append(f"... more problems not shown (limit {limit})")
    return problems.items


def _check_account_totals(problems: _Problems) -> None:
    posted = _debit_credit_sums()
    pending = _pending_sums()
    names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
    accounts = Account.objects.order_by("id").values_list("id", "code", *names)
    for account_id, code, *cached in accounts.iterator(chunk_size=5000):
        recomputed = (*posted.get(account_id, (0, 0)), *pending.get(account_id, (0, 0)))
        for name, have, want in zip(names, cached, recomputed, strict=True):
            if have != want and not problems.add(
                f"account {code} (#{account_id}): {name} is {have}, "
                f"recomputed from postings and holds {want}"
            ):
                return


def _check_entries(problems: _Problems) -> None:
    unbalanced = (
        Posting.objects.order_by()
        .values("entry_id", "commodity__code")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .order_by("entry_id", "commodity__code")
        .values_list("entry_id", "commodity__code", "total")
    )
    for entry_id, commodity_code, total in unbalanced[: problems.limit + 1]:
        if not problems.add(f"entry #{entry_id}: postings sum to {total} in {commodity_code}"):
            return
    empty = (
        Entry.objects.filter(~Exists(Posting.objects.filter(entry=OuterRef("pk"))))
        .order_by("id")
        .values_list("id", flat=True)
    )
    for entry_id in empty[: problems.limit + 1]:
        if not problems.add(f"entry #{entry_id}: has no postings"):
            return


def _check_posting_commodities(problems: _Problems) -> None:
    mismatched = (
        Posting.objects.exclude(commodity_id=F("account__commodity_id"))
        .order_by("id")
        .values_list(
            "id", "entry_id", "account__code", "commodity__code", "account__commodity__code"
        )
    )
    for posting_id, entry_id, account_code, commodity, account_commodity in mismatched[
        : problems.limit + 1
    ]:
        if not problems.add(
            f"posting #{posting_id} of entry #{entry_id}: commodity {commodity} differs from "
            f"{account_commodity} of account {account_code}"
        ):
            return


def _check_holds(problems: _Problems) -> None:
    """A pending hold has remaining > 0 and remaining + consumed + released == amount (what was
    released in part while it stayed pending); a resolved hold has remaining == 0 and consumed
    + released <= amount (the rest was released when it was resolved)."""
    consumed = Coalesce(
        Sum("consumptions__amount"), Value(0), output_field=IntegerField()
    )  # One GROUP BY over the holds joined with their consumptions.
    pending = Q(status=Hold.Status.PENDING)
    bad = (
        Hold.objects.order_by()
        .annotate(consumed=consumed)
        .annotate(
            wrong=Case(
                When(pending & Q(remaining__lte=0), then=Value(1)),
                When(
                    pending & ~Q(remaining=F("amount") - F("consumed") - F("released")),
                    then=Value(1),
                ),
                When(~pending & ~Q(remaining=0), then=Value(1)),
                When(~pending & Q(consumed__gt=F("amount") - F("released")), then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            )
        )
        .filter(wrong=1)
        .order_by("id")
        .values_list("id", "account__code", "status", "amount", "remaining", "consumed")
    )
    for hold_id, account_code, status, amount, remaining, used in bad[: problems.limit + 1]:
        if not problems.add(
            f"hold #{hold_id} on account {account_code}: {status} with amount {amount}, "
            f"remaining {remaining}, consumed {used}"
        ):
            return
