from dataclasses import dataclass

import pytest
from django.db.models import Sum

from ledger import selectors, services
from ledger.models import Account, Commodity, Entry, Hold, Posting

Type, Limit = Account.Type, Account.Limit

GPU_CODE = "H100SXM-USEAST-202701-C2.50"
SLOT_CODE = "gpuh:a100:eu"


@dataclass
class SmallLedger:
    usd: Commodity
    gpu: Commodity
    slot: Commodity
    accounts: dict[str, Account]
    entries: dict[str, Entry]
    hold: Hold


def build_ledger() -> SmallLedger:
    """Three commodities (two with codes Beancount refuses), accounts of every type, entries
    including a multi-commodity one, a reversal, a partly consumed hold and a voided one."""
    usd = services.commodity_define(
        code="USD", name="US dollar", kind=Commodity.Kind.CURRENCY, scale=6
    )
    gpu = services.commodity_define(
        code=GPU_CODE, name="H100 call", kind=Commodity.Kind.POSITION, scale=3
    )
    slot = services.commodity_define(
        code=SLOT_CODE, name="A100 hours", kind=Commodity.Kind.ENTITLEMENT, scale=0
    )

    def open_(code, commodity, type, limit=Limit.NONE):
        return services.account_open(
            code=code, owner=code.split(":")[0], commodity=commodity, type=type, limit=limit
        )

    a = {
        "bank": open_("exchange:bank", usd, Type.ASSET),
        "capital": open_("exchange:capital", usd, Type.EQUITY),
        "fees": open_("exchange:fees", usd, Type.INCOME),
        "cloud": open_("exchange:cloud_costs", usd, Type.EXPENSE),
        "alice": open_(
            "customer:alice:cash", usd, Type.LIABILITY, Limit.DEBITS_MUST_NOT_EXCEED_CREDITS
        ),
        "bob": open_(
            "customer:bob:cash", usd, Type.LIABILITY, Limit.DEBITS_MUST_NOT_EXCEED_CREDITS
        ),
        "issued": open_("exchange:issued", gpu, Type.EQUITY),
        "alice_gpu": open_(
            "customer:alice:position", gpu, Type.ASSET, Limit.CREDITS_MUST_NOT_EXCEED_DEBITS
        ),
        "bob_gpu": open_("customer:bob:position", gpu, Type.ASSET),
        "slots": open_("exchange:slots", slot, Type.EQUITY),
        "bob_slots": open_("customer:bob:slots", slot, Type.ASSET),
    }

    def post(key, description, *postings, **kwargs):
        return services.entry_post(
            key=key, description=description, postings=list(postings), **kwargs
        )

    e = {}
    e["capital"] = post(
        "capital", "Paid-in capital", (a["bank"], 10_000_000_000), (a["capital"], -10_000_000_000)
    )
    e["deposit_a"] = post(
        "dep-a", 'Deposit "alice"', (a["bank"], 500_000_000), (a["alice"], -500_000_000)
    )
    e["deposit_b"] = post(
        "dep-b", "Deposit bob", (a["bank"], 250_000_000), (a["bob"], -250_000_000)
    )
    e["fee"] = post("fee", "Fee", (a["alice"], 1_500_000), (a["fees"], -1_500_000))
    e["fee_reversal"] = services.entry_reverse(entry=e["fee"], key="fee-rev")
    e["cost"] = post("cost", "Cloud bill", (a["cloud"], 2_000_001), (a["bank"], -2_000_001))
    e["issue"] = post("issue", "Issue 10 calls", (a["alice_gpu"], 10_000), (a["issued"], -10_000))
    e["slots"] = post("slots", "Slots", (a["bob_slots"], 7), (a["slots"], -7))
    e["trade"] = post(
        "trade",
        "Bob buys 2.5 calls from alice",
        (a["bob"], 100_000_000),
        (a["alice"], -100_000_000),
        (a["bob_gpu"], 2_500),
        (a["alice_gpu"], -2_500),
    )
    hold = services.hold_create(
        key="hold", account=a["alice"], side=Hold.Side.DEBIT, amount=50_000_000, description="Bid"
    )
    e["fill"] = post(
        "fill",
        "Partial fill against the hold",
        (a["alice"], 20_000_000),
        (a["bob"], -20_000_000),
        holds=[(hold, 20_000_000)],
    )
    voided = services.hold_create(
        key="hold-2", account=a["bob"], side=Hold.Side.DEBIT, amount=1_000, description="Bid 2"
    )
    services.hold_void(hold=voided)
    for account in a.values():
        account.refresh_from_db()
    hold.refresh_from_db()
    return SmallLedger(usd, gpu, slot, a, e, hold)


@pytest.fixture
def small_ledger(db) -> SmallLedger:
    return build_ledger()


def test_trial_balance_nets_to_zero_per_commodity(small_ledger):
    groups = {group.commodity.code: group for group in selectors.trial_balance()}
    assert set(groups) == {"USD", GPU_CODE, SLOT_CODE}
    for group in groups.values():
        assert group.balance == 0
        assert sum(line.balance for line in group.lines) == 0
    usd = {line.account.code: line for line in groups["USD"].lines}
    alice = usd["customer:alice:cash"]
    assert alice.balance == -500_000_000 - 100_000_000 + 20_000_000
    assert alice.debits_pending == 30_000_000
    assert groups["USD"].debits_pending == 30_000_000
    assert [line.account.code for line in groups["USD"].lines] == sorted(usd)


def test_statement_running_balance_across_pages(small_ledger):
    alice = small_ledger.accounts["alice"]
    lines, after_id, pages = [], None, 0
    while True:
        page = selectors.account_statement(alice, after_id=after_id, limit=2)
        assert page.opening_balance == (lines[-1].balance if lines else 0)
        lines += page.lines
        pages += 1
        if page.next_after_id is None:
            break
        after_id = page.next_after_id
    postings = list(Posting.objects.filter(account=alice).order_by("id"))
    assert [line.posting_id for line in lines] == [p.pk for p in postings]
    running = 0
    for line, posting in zip(lines, postings, strict=True):
        running += posting.amount
        assert line.balance == running
        assert line.description == posting.entry.description
    assert lines[-1].balance == alice.balance
    assert pages == 3  # Five postings, two per page.


def test_statement_limit_is_bounded(small_ledger):
    page = selectors.account_statement(small_ledger.accounts["bank"], limit=10**9)
    assert len(page.lines) <= selectors.STATEMENT_PAGE_MAX
    assert page.next_after_id is None
    with pytest.raises(ValueError):
        selectors.account_statement(small_ledger.accounts["bank"], limit=0)


def test_consistent_ledger_has_no_problems(small_ledger):
    assert selectors.ledger_problems() == []


def test_corrupted_total_is_reported_with_both_values(small_ledger):
    bob = small_ledger.accounts["bob"]
    Account.objects.filter(pk=bob.pk).update(credits_posted=bob.credits_posted + 7)
    problems = selectors.ledger_problems()
    assert problems == [
        f"account customer:bob:cash (#{bob.pk}): credits_posted is {bob.credits_posted + 7}, "
        f"recomputed from postings and holds {bob.credits_posted}"
    ]


def test_hold_inconsistency_is_reported(small_ledger):
    hold = small_ledger.hold
    Hold.objects.filter(pk=hold.pk).update(remaining=hold.remaining - 1)
    problems = selectors.ledger_problems()
    assert any(p.startswith(f"hold #{hold.pk} ") for p in problems), problems
    assert any("debits_pending" in p and "customer:alice:cash" in p for p in problems), problems


def test_resolved_hold_with_remaining_is_reported(small_ledger):
    voided = Hold.objects.get(idempotency_key="hold-2")
    # Leave the account's pending total alone: only the hold itself is wrong.
    Hold.objects.filter(pk=voided.pk).update(remaining=5)
    problems = selectors.ledger_problems()
    assert problems == [
        f"hold #{voided.pk} on account customer:bob:cash: voided with amount 1000, "
        "remaining 5, consumed 0"
    ]


def test_problems_are_bounded(small_ledger):
    for account in small_ledger.accounts.values():
        Account.objects.filter(pk=account.pk).update(debits_pending=account.debits_pending + 1)
    problems = selectors.ledger_problems(limit=3)
    assert len(problems) == 4
    assert problems[-1].startswith("... more problems")


def test_postings_recomputed_match_cached_totals(small_ledger):
    for account in small_ledger.accounts.values():
        total = Posting.objects.filter(account=account).aggregate(s=Sum("amount"))["s"] or 0
        assert total == account.balance
