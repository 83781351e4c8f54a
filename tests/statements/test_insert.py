"""``insert_rows`` and ``insert_row``: what they write is what the ORM would have written."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger.models import Commodity
from statements import insert_row, insert_rows


def _commodities(count: int) -> list[Commodity]:
    return [
        Commodity(code=f"C{index}", name=f"Commodity {index}", kind="currency", scale=index)
        for index in range(count)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 3])
def test_insert_rows_returning_sets_each_rows_key_in_order(count):
    rows = _commodities(count)

    insert_rows(Commodity, rows, returning=True)

    for row in rows:
        assert row.pk is not None
        assert not row._state.adding
        stored = Commodity.objects.get(pk=row.pk)
        assert (stored.code, stored.name, stored.kind, stored.scale) == (
            row.code,
            row.name,
            row.kind,
            row.scale,
        )
        assert stored.created_at == row.created_at  # auto_now_add went through pre_save.
    assert len({row.pk for row in rows}) == count


@pytest.mark.django_db
def test_insert_rows_without_returning_writes_every_row_and_leaves_keys_unset():
    rows = _commodities(3)

    insert_rows(Commodity, rows)

    assert all(row.pk is None for row in rows)
    assert sorted(Commodity.objects.values_list("code", flat=True)) == ["C0", "C1", "C2"]


@pytest.mark.django_db
def test_insert_rows_of_nothing_sends_nothing():
    with CaptureQueriesContext(connection) as queries:
        insert_rows(Commodity, [], returning=True)
    assert len(queries) == 0


@pytest.mark.django_db
def test_insert_row_is_insert_rows_for_one():
    row = insert_row(_commodities(1)[0])

    assert Commodity.objects.get(pk=row.pk).code == "C0"


@pytest.mark.django_db
def test_insert_rows_refused_by_a_constraint_raises_and_writes_no_key():
    insert_row(_commodities(1)[0])
    rows = _commodities(2)  # C0 again: the unique code refuses it.

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(Commodity, rows, returning=True)

    assert all(row.pk is None for row in rows)
    assert Commodity.objects.count() == 1
