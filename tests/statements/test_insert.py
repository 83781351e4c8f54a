"""``insert_rows`` and ``insert_row``: what they write is what the ORM would have written."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger.models import Commodity
from statements import insert_row, insert_rows, preparer


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


ORDER_PATH_MODELS = [
    "exchange.Order",
    "exchange.OrderCommand",
    "exchange.OrderTransition",
    "exchange.OrderHold",
    "exchange.Trade",
    "exchange.Instrument",
    "ledger.Hold",
    "ledger.Entry",
    "ledger.Posting",
    "ledger.HoldConsumption",
    "ledger.Account",
]
# Values of every kind the order path writes, and some it should never see.
VALUES = [None, 0, 1, -7, 2**40, True, False, "", "x", "open", "12", Decimal("2.5"), 1.5]


@pytest.mark.django_db
@pytest.mark.parametrize("label", ORDER_PATH_MODELS)
def test_a_preparer_gives_what_get_db_prep_save_gives_for_every_column(label):
    model = apps.get_model(label)
    checked = 0
    for field in model._meta.concrete_fields:
        prepare = preparer(field)
        for value in VALUES:
            try:
                expected = field.get_db_prep_save(value, connection)
            except (TypeError, ValueError, ValidationError) as error:
                with pytest.raises(type(error)):
                    prepare(value, connection)
                continue
            got = prepare(value, connection)
            # (A JSON value is wrapped in an object of psycopg's that compares by identity.)
            assert (type(got), getattr(got, "obj", got)) == (
                type(expected),
                getattr(expected, "obj", expected),
            ), (field.name, value)
            checked += 1
    assert checked
