"""The database's own guards: append-only tables (both databases), balance at commit (PG)."""

import pytest
from django.db import DatabaseError, connection, transaction

from ledger.models import Entry, HoldConsumption, Posting
from tests.ledger import support
from tests.ledger.support import move, snapshot, unique

pytestmark = pytest.mark.django_db


def refused_by_database(sql: str, params=(), marker: str = "LEDGER_APPEND_ONLY") -> None:
    before = snapshot()
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as c:
        c.execute(sql, params)
    assert marker in str(info.value)
    assert snapshot() == before


@pytest.fixture
def entry(alice, bob):
    return move(alice, bob, 100)


def test_posting_update_is_refused(entry):
    posting = entry.postings.first()
    refused_by_database("UPDATE ledger_posting SET amount = %s WHERE id = %s", [999, posting.pk])
    refused_by_database("UPDATE ledger_posting SET amount = amount * 2")
    posting.refresh_from_db()
    assert abs(posting.amount) == 100


def test_posting_and_entry_delete_are_refused(entry):
    refused_by_database("DELETE FROM ledger_posting WHERE entry_id = %s", [entry.pk])
    refused_by_database("DELETE FROM ledger_entry")
    refused_by_database("UPDATE ledger_entry SET description = 'changed'")
    assert Entry.objects.filter(pk=entry.pk, description="move").exists()
    assert Posting.objects.filter(entry=entry).count() == 2


def test_orm_update_and_delete_are_refused(entry):
    with pytest.raises(DatabaseError, match="LEDGER_APPEND_ONLY"), transaction.atomic():
        Posting.objects.filter(entry=entry).update(amount=1)
    with pytest.raises(DatabaseError, match="LEDGER_APPEND_ONLY"), transaction.atomic():
        Posting.objects.filter(entry=entry).delete()
    assert Posting.objects.filter(entry=entry).count() == 2


def test_hold_consumption_is_append_only(alice, bob):
    from ledger import services

    hold = services.hold_create(
        key=unique("h"), account=alice, side="debit", amount=10, description="h"
    )
    services.entry_post(
        key=unique("k"), description="c", postings=[(alice, 10), (bob, -10)], holds=[(hold, 10)]
    )
    assert HoldConsumption.objects.count() == 1
    refused_by_database("UPDATE ledger_holdconsumption SET amount = 1")
    refused_by_database("DELETE FROM ledger_holdconsumption")


def _raw_entry(postings: list[tuple[int, int, int]]) -> None:
    """Insert an entry and its postings (account id, commodity id, amount) with raw SQL."""
    with connection.cursor() as c:
        c.execute(
            "INSERT INTO ledger_entry (idempotency_key, content_digest, description, metadata,"
            " created_at) VALUES (%s, '', 'raw', '{}', now()) RETURNING id",
            [unique("raw")],
        )
        entry_id = c.fetchone()[0]
        values = ", ".join(["(%s, %s, %s, %s)"] * len(postings))
        params = [v for a, com, amount in postings for v in (entry_id, a, com, amount)]
        c.execute(
            "INSERT INTO ledger_posting (entry_id, account_id, commodity_id, amount)"
            f" VALUES {values}",
            params,
        )


def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the balance trigger exists on PostgreSQL only")


def test_unbalanced_raw_entry_is_refused_at_check_time(alice, bob):
    _postgresql_only()
    before = snapshot()
    with pytest.raises(DatabaseError) as info, transaction.atomic():
        _raw_entry([(alice.pk, alice.commodity_id, 5)])
        with connection.cursor() as c:
            c.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert "LEDGER_ENTRY_UNBALANCED" in str(info.value)
    with connection.cursor() as c:
        c.execute("SET CONSTRAINTS ALL DEFERRED")
    assert snapshot() == before
    # A balanced raw entry passes the same check.
    with transaction.atomic():
        _raw_entry([(alice.pk, alice.commodity_id, 5), (bob.pk, bob.commodity_id, -5)])
        with connection.cursor() as c:
            c.execute("SET CONSTRAINTS ALL IMMEDIATE")
            c.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.mark.django_db(transaction=True)
def test_unbalanced_raw_entry_is_refused_at_commit(usd):
    _postgresql_only()
    a, b = support.account(usd), support.account(usd)
    before = snapshot()
    with pytest.raises(DatabaseError) as info, transaction.atomic():
        _raw_entry([(a.pk, usd.pk, 5), (b.pk, usd.pk, -4)])
    assert "LEDGER_ENTRY_UNBALANCED" in str(info.value)
    assert snapshot() == before
    with transaction.atomic():
        _raw_entry([(a.pk, usd.pk, 5), (b.pk, usd.pk, -5)])
    assert Posting.objects.count() == 2
