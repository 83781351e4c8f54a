from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ledger.models import Account, Entry, Posting
from tests.ledger.test_selectors import build_ledger


def run_check() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ledger_check", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_consistent_ledger_passes():
    build_ledger()
    out, _ = run_check()
    counts = (Account.objects.count(), Entry.objects.count(), Posting.objects.count())
    assert out.strip() == "ledger ok: {} accounts, {} entries, {} postings".format(*counts)


@pytest.mark.django_db
def test_empty_ledger_passes():
    out, _ = run_check()
    assert out.strip() == "ledger ok: 0 accounts, 0 entries, 0 postings"


@pytest.mark.django_db
def test_corrupted_total_fails_and_names_the_account():
    ledger = build_ledger()
    bank = ledger.accounts["bank"]
    Account.objects.filter(pk=bank.pk).update(debits_posted=bank.debits_posted + 1)
    err = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("ledger_check", stdout=StringIO(), stderr=err)
    assert "exchange:bank" in err.getvalue()
    assert str(bank.debits_posted) in err.getvalue()
    assert str(bank.debits_posted + 1) in err.getvalue()


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="PostgreSQL's commit-time trigger refuses an unbalanced entry",
)
def test_unbalanced_entry_fails():
    ledger = build_ledger()
    entry = Entry.objects.create(idempotency_key="lone", content_digest="x", description="lone")
    bob = ledger.accounts["bob"]
    # A lone posting that bypasses the services: the entry does not balance, and bob's
    # cached totals do not include it.
    Posting.objects.create(entry=entry, account=bob, commodity=ledger.gpu, amount=5)
    empty = Entry.objects.create(idempotency_key="empty", content_digest="x", description="none")
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("ledger_check", stdout=StringIO(), stderr=err)
    report = err.getvalue()
    assert f"entry #{entry.pk}: postings sum to 5 in {ledger.gpu.code}" in report
    assert f"entry #{empty.pk}: has no postings" in report
    assert "commodity H100SXM-USEAST-202701-C2.50 differs from USD" in report
    assert "customer:bob:cash" in report


@pytest.mark.django_db
def test_admin_browses_the_ledger_read_only(client, django_user_model):
    ledger = build_ledger()
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    for path in ["commodity", "account", "entry", "hold"]:
        listing = client.get(f"/admin/ledger/{path}/")
        assert listing.status_code == 200, path
        assert client.get(f"/admin/ledger/{path}/add/").status_code == 403, path
    entry = ledger.entries["trade"]
    page = client.get(f"/admin/ledger/entry/{entry.pk}/change/")
    assert page.status_code == 200
    assert b"customer:bob:position" in page.content
    assert client.post(f"/admin/ledger/entry/{entry.pk}/delete/").status_code == 403
    accounts = client.get("/admin/ledger/account/")
    assert b"-580000000" in accounts.content  # Alice's balance.
