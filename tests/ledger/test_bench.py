import pytest
from django.core.management import call_command
from django.db.models import Sum

from ledger.management.commands.bench_ledger import (
    bench_setup,
    expected_balances,
    percentile,
    post_batched,
    post_single,
    transfer_specs,
)
from ledger.models import Account, Entry, Posting
from ledger.selectors import ledger_problems


@pytest.mark.django_db
def test_bench_helpers_leave_exact_balances():
    ledger = bench_setup(5, prefix="smoke")
    single = transfer_specs(ledger.customers, 12, seed=3, prefix="smoke-single")
    batched = transfer_specs(ledger.customers, 25, seed=4, prefix="smoke-batched")
    assert len(post_single(single)) == 12
    assert len(post_batched(batched, 10)) == 3  # 10 + 10 + 5
    want = expected_balances(ledger, single + batched)
    accounts = Account.objects.filter(pk__in=want)
    assert {a.pk: a.balance for a in accounts} == want
    for account in accounts:
        total = Posting.objects.filter(account=account).aggregate(s=Sum("amount"))["s"]
        assert total == want[account.pk]
        if account.pk != ledger.bank.pk:
            assert account.available == -want[account.pk]
    assert Entry.objects.count() == 5 + 12 + 25
    assert sum(want.values()) == 0
    assert ledger_problems() == []
    # Posting the same specs again is idempotent: nothing changes.
    post_batched(batched, 100)
    assert {a.pk: a.balance for a in Account.objects.filter(pk__in=want)} == want


def test_percentile():
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(100)], 0.99) == 99.0


@pytest.mark.django_db
def test_bench_refuses_bad_arguments():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("bench_ledger", "--entries", "0")
