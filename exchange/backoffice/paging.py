"""Paging the audit log without counting it.

The log only grows (``exchange.models.audit``), to millions of rows; ``COUNT(*)`` of the whole
table reads all of it (PostgreSQL has no stored row count), on every page of the admin and of
the back office. The whole log's size is read instead from the two ends of its primary key
(``audit_entries_size``: two index seeks). A filtered page still counts what it matches, through
the filter's index, exactly.
"""

from functools import cached_property

from django.core.paginator import Paginator
from django.db.models import QuerySet

from exchange.models import AuditEntry
from exchange.selectors.backoffice import audit_entries_size


class AuditLogPaginator(Paginator[AuditEntry]):
    """A paginator of audit rows whose count of the unfiltered log is
    ``audit_entries_size``; of a filtered queryset, Django's exact count."""

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if isinstance(rows, QuerySet) and not rows.query.where:
            return audit_entries_size()
        return super().count
