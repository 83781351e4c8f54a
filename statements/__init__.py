"""Prepared statements for the order path, built once from model metadata.

The matcher, ``order_place`` and the ledger's writes under them run the same handful of
statements for every order. Compiling each through the ORM costs more CPU than matching the
order (about 0.3 ms a query), so these helpers build the SQL once per database vendor and run
it with a plain cursor. The package imports only Django, so that the ledger, which may import
nothing of the project's markets, uses it as the exchange does. Values still go through each
field's own conversions, both ways, exactly as the ORM's would: rows become model instances
through ``Model.from_db`` after the backend's and the field's converters, and parameters go
through ``get_db_prep_save`` (or ``preparer``, which gives the same). Everything else in the
project uses the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    CharField,
    Field,
    ForeignKey,
    IntegerField,
    Model,
    TextField,
)

Converter = Callable[[Any, Any, Any], Any]


def _wrapper() -> BaseDatabaseWrapper:
    """The connection itself, not the ``django.db.connection`` proxy, whose every attribute
    access is a thread-local lookup: conversions below touch it once per value."""
    return connections[DEFAULT_DB_ALIAS]


class _Columns:
    """The concrete columns of a model, with the converters that read them."""

    def __init__(self, model: type[Model]) -> None:
        quote = connection.ops.quote_name
        table = model._meta.db_table
        self.model = model
        self.fields: list[Field[Any, Any]] = list(model._meta.concrete_fields)
        self.attnames = [field.attname for field in self.fields]
        self.sql = ", ".join(f"{quote(table)}.{quote(field.column)}" for field in self.fields)
        self.converters: list[list[tuple[Converter, Any]]] = []
        for field in self.fields:
            column = field.get_col(table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            self.converters.append([(converter, column) for converter in found])

    def instance(self, values: Sequence[Any], wrapper: BaseDatabaseWrapper) -> Model:
        converted = list(values)
        for index, converters in enumerate(self.converters):
            for converter, column in converters:
                converted[index] = converter(converted[index], column, wrapper)
        return self.model.from_db(wrapper.alias, self.attnames, converted)


_columns_cache: dict[tuple[str, type[Model]], _Columns] = {}


def columns(model: type[Model]) -> _Columns:
    key = (connection.vendor, model)
    if key not in _columns_cache:
        _columns_cache[key] = _Columns(model)
    return _columns_cache[key]


SIZED_STATEMENTS_MAX = 256


# (value, the calling thread's connection) -> the parameter to send.
Preparer = Callable[[Any, BaseDatabaseWrapper], Any]

# Field classes whose parameters commonly come as these exact Python types on the order path.
_SAMPLES: tuple[tuple[type[Field[Any, Any]], Any], ...] = (
    (BooleanField, True),
    (IntegerField, 1),
    (CharField, "x"),
    (TextField, "x"),
)
_preparers_cache: dict[tuple[str, Field[Any, Any]], Preparer] = {}


def preparer(field: Field[Any, Any]) -> Preparer:
    """A function giving what ``field.get_db_prep_save(value, connection)`` gives.

    ``get_db_prep_save`` walks four or five methods for every value; the matcher prepares
    about fifty values per command. For an integer, text or boolean column (a foreign key
    counts as its target), the function is worked out once by asking Django itself: given
    None or a value of the column's exact Python type, Django either returns it unchanged or
    wraps it in a type of its own (``Int8`` for a big integer on PostgreSQL), and the function
    does the same without the walk. Any other value, or any other column, goes through
    ``get_db_prep_save``.
    """
    key = (connection.vendor, field)
    found = _preparers_cache.get(key)
    if found is None:
        found = _preparers_cache[key] = _build_preparer(field, _wrapper())
    return found


def _build_preparer(field: Field[Any, Any], probe: BaseDatabaseWrapper) -> Preparer:
    """``probe``: the building thread's connection, only asked what Django does; the preparer
    is shared by threads, each passing its own connection."""
    generic = field.get_db_prep_save

    target = field.target_field if isinstance(field, ForeignKey) else field
    sample = next((value for kind, value in _SAMPLES if isinstance(target, kind)), None)
    if sample is None or generic(None, probe) is not None:
        return generic
    exact, prepared = type(sample), generic(sample, probe)
    if prepared is sample:
        wrap = None
    elif isinstance(prepared, exact) and type(prepared)(sample) == prepared:
        wrap = type(prepared)
    else:
        return generic

    def fast(value: Any, wrapper: BaseDatabaseWrapper) -> Any:
        if value is None:
            return None
        if type(value) is exact:
            return value if wrap is None else wrap(value)
        return generic(value, wrapper)

    return fast


class Select:
    """``SELECT <all columns of models...> FROM <from_sql> <rest_sql>``, with ``%s`` parameters.

    ``from_sql`` and ``rest_sql`` are templates receiving the quoted table names of the models
    as ``t0``, ``t1``, ...; each result row becomes one instance per model. ``rest_sql`` may
    hold one ``{values}`` placeholder for a list of parameters of any length (``rows_in``).
    ``postgresql_from_sql``: the FROM clause on PostgreSQL, where it differs (a join written so
    that its plan does not depend on statistics).
    """

    def __init__(
        self,
        models: Sequence[type[Model]],
        from_sql: str,
        rest_sql: str = "",
        *,
        postgresql_from_sql: str | None = None,
    ) -> None:
        self.models = list(models)
        self.from_sql = from_sql
        self.rest_sql = rest_sql
        self.postgresql_from_sql = postgresql_from_sql
        self._sql: dict[str, str] = {}
        self._sized: dict[int, Select] = {}

    def sql(self) -> str:
        vendor = connection.vendor
        if vendor not in self._sql:
            quote = connection.ops.quote_name
            tables = {
                f"t{index}": quote(model._meta.db_table) for index, model in enumerate(self.models)
            }
            selected = ", ".join(columns(model).sql for model in self.models)
            template = self.from_sql
            if vendor == "postgresql" and self.postgresql_from_sql is not None:
                template = self.postgresql_from_sql
            from_sql = template.format(**tables)
            rest_sql = self.rest_sql.format(**tables)
            self._sql[vendor] = f"SELECT {selected} FROM {from_sql} {rest_sql}"
        return self._sql[vendor]

    def rows_in(
        self, values: Sequence[Any], *, for_update: bool = False
    ) -> list[tuple[Model, ...]]:
        """Rows for ``rest_sql``'s ``{values}`` replaced by as many parameters as ``values``."""
        if not values:
            return []
        return self.sized(len(values)).rows(list(values), for_update=for_update)

    def sized(self, count: int) -> Select:
        """This statement with ``{values}`` replaced by ``count`` parameters."""
        sized = self._sized.get(count)
        if sized is None:
            placeholders = ", ".join(["%s"] * count)
            sized = Select(
                self.models,
                self.from_sql,
                self.rest_sql.replace("{values}", placeholders),
                postgresql_from_sql=self.postgresql_from_sql,
            )
            if len(self._sized) < SIZED_STATEMENTS_MAX:
                self._sized[count] = sized
        return sized

    def rows(
        self, parameters: Sequence[Any], *, for_update: bool = False
    ) -> list[tuple[Model, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(self.statement(for_update=for_update), parameters)
            fetched = cursor.fetchall()
        return self.instances(fetched)

    def statement(self, *, for_update: bool = False) -> str:
        statement = self.sql()
        if for_update and connection.vendor == "postgresql":
            # NO KEY: the lock still excludes other lockers and writers of the row, but not
            # the KEY SHARE locks that inserts referencing the row take for their foreign key.
            statement += " FOR NO KEY UPDATE"
        elif for_update and connection.features.has_select_for_update:
            statement += " FOR UPDATE"
        return statement

    def instances(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Model, ...]]:
        """Result rows as one instance per model each."""
        readers = [columns(model) for model in self.models]
        wrapper = _wrapper()
        result = []
        for row in fetched:
            start = 0
            instances = []
            for reader in readers:
                end = start + len(reader.fields)
                instances.append(reader.instance(row[start:end], wrapper))
                start = end
            result.append(tuple(instances))
        return result


@contextmanager
def pipelined() -> Iterator[None]:
    """Send the block's statements without waiting for each result (psycopg's pipeline mode on
    PostgreSQL): one round trip for all the statements sent until a result is fetched
    (``fetchone``/``fetchall``) or the block ends.

    Never read ``rowcount`` in the block: it is not there until psycopg syncs. An error raises
    at the next fetch or at the block's end.
    """
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    with connection.connection.pipeline():
        yield


def rows_together(
    queries: Sequence[tuple[Select, Sequence[Any], bool]],
) -> list[list[tuple[Model, ...]]]:
    """Run ``(select, parameters, for_update)`` queries in order, in one round trip on
    PostgreSQL (pipelined: each runs after the one before, so a row lock taken by one is held
    when the next reads); the rows of each, in order."""
    if connection.vendor != "postgresql":
        return [select.rows(parameters, for_update=lock) for select, parameters, lock in queries]
    results = []
    with pipelined():
        sent = []
        for select, parameters, lock in queries:
            cursor = connection.cursor()
            cursor.execute(select.statement(for_update=lock), parameters)
            sent.append((select, cursor))
        for select, cursor in sent:
            with cursor:
                results.append(select.instances(cursor.fetchall()))
    return results


def update_rows(model: type[Model], rows: Iterable[Model], fields: list[str]) -> None:
    """UPDATE each row's ``fields`` by primary key with one statement run by ``executemany``.

    ``QuerySet.bulk_update`` builds a CASE expression per field and row, which cost ten times
    more than the matching itself.
    """
    statement, prepared = _update_statement(model, tuple(fields))
    wrapper = _wrapper()
    parameters = [
        [prepare(getattr(row, attname), wrapper) for attname, prepare in prepared] + [row.pk]
        for row in rows
    ]
    if parameters:
        _execute_each(statement, parameters)


def insert_rows(model: type[Model], rows: Sequence[Model], *, returning: bool = False) -> None:
    """INSERT new rows with one statement run for each (``executemany``, pipelined by psycopg).

    ``returning``: also set each row's primary key, as ``save()`` would (one result per row,
    read back in order). Field defaults such as ``auto_now_add`` are applied through
    ``pre_save`` as the ORM does. It sends no signals: for models that have none.
    """
    if not rows:
        return
    statement, prepared = _insert_statement(model)
    wrapper = _wrapper()
    parameters = [
        [prepare(pre_save(row, True), wrapper) for pre_save, prepare in prepared] for row in rows
    ]
    if not returning:
        _execute_each(statement, parameters)
        return
    returns = connection.features.can_return_columns_from_insert
    if returns:
        statement += f" RETURNING {connection.ops.quote_name(model._meta.pk.column)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(parameters) > 1:
            raw = cursor.cursor  # psycopg's own: one result set per row.
            keys = []
            with connection.wrap_database_errors:  # Django's exceptions, as its cursor raises.
                raw.executemany(statement, parameters, returning=True)
                while True:
                    keys.append(raw.fetchone()[0])
                    if not raw.nextset():
                        break
        else:
            keys = []
            for values in parameters:
                cursor.execute(statement, values)
                keys.append(cursor.fetchone()[0] if returns else cursor.lastrowid)
    for row, key in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = connection.alias


def _execute_each(statement: str, parameters: list[list[Any]]) -> None:
    """One statement per parameter row: ``executemany`` for several (pipelined by psycopg),
    a plain ``execute`` for one, which spares psycopg a pipeline of its own."""
    with connection.cursor() as cursor:
        if len(parameters) == 1:
            cursor.execute(statement, parameters[0])
        else:
            cursor.executemany(statement, parameters)


_update_sql: dict[
    tuple[str, type[Model], tuple[str, ...]], tuple[str, list[tuple[str, Preparer]]]
] = {}


def _update_statement(
    model: type[Model], fields: tuple[str, ...]
) -> tuple[str, list[tuple[str, Preparer]]]:
    """``UPDATE table SET column = %s, ... WHERE pk = %s`` for ``fields``, built once per
    vendor, model and fields; and each field's attribute name and preparer."""
    key = (connection.vendor, model, fields)
    if key not in _update_sql:
        model_fields = [cast("Field[Any, Any]", model._meta.get_field(name)) for name in fields]
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in model_fields)
        table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
        _update_sql[key] = (
            f"UPDATE {table} SET {assignments} WHERE {pk} = %s",
            [(field.attname, preparer(field)) for field in model_fields],
        )
    return _update_sql[key]


PreSave = Callable[[Model, bool], Any]
_insert_sql: dict[tuple[str, type[Model]], tuple[str, list[tuple[PreSave, Preparer]]]] = {}


def _insert_statement(model: type[Model]) -> tuple[str, list[tuple[PreSave, Preparer]]]:
    """``INSERT INTO table (columns) VALUES (%s, ...)`` for every concrete column but the
    primary key, built once per vendor and model; and each column's ``pre_save`` and
    preparer."""
    key = (connection.vendor, model)
    if key not in _insert_sql:
        model_fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        quote = connection.ops.quote_name
        names = ", ".join(quote(field.column) for field in model_fields)
        placeholders = ", ".join("%s" for _ in model_fields)
        statement = f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES ({placeholders})"
        _insert_sql[key] = (
            statement,
            [(field.pre_save, preparer(field)) for field in model_fields],
        )
    return _insert_sql[key]


def insert_row(row: Model) -> Model:
    """INSERT one new row and set its primary key, as ``save()`` would for a plain model
    (``insert_rows`` with ``returning`` for one row)."""
    insert_rows(type(row), [row], returning=True)
    return row
