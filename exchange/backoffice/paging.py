"""Paging tables that only grow without counting them.

The audit log, orders, trades and settlement prices are never deleted and grow to millions of
rows; ``COUNT(*)`` of a whole table reads all of it (PostgreSQL keeps no row count), on every
page of the admin and of the back office. The whole table's size is read instead from the two
ends of its primary key (``rows_in_key_span``: two index seeks). A filtered page still counts
what it matches, through the filter's index, exactly.
"""

from functools import cached_property
from typing import TypeVar

from django.core.paginator import Paginator
from django.db.models import Model, QuerySet

from exchange.selectors.backoffice import rows_in_key_span

ModelT = TypeVar("ModelT", bound=Model)


class AppendOnlyPaginator(Paginator[ModelT]):
    """A paginator of the rows of a table that only grows (no row is ever deleted): its count
    of the unfiltered table is ``rows_in_key_span``; of a filtered queryset, Django's exact
    count. The admin's change lists that use it also set ``show_full_result_count = False``,
    so that a filtered page does not count the whole table beside what it matches."""

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if isinstance(rows, QuerySet) and not rows.query.where:
            return rows_in_key_span(rows.model)
        return super().count
