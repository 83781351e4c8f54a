"""The audit log: the back-office page (newest first, filters), and rows that cannot be
edited or deleted, by the admin, the model, the queryset or (PostgreSQL) raw SQL."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from exchange.admin import AuditEntryAdmin
from exchange.models import AuditEntry
from exchange.models.audit import AuditLogAppendOnly
from exchange.selectors.backoffice import AUDIT_CHOICES_MAX, audit_choices
from exchange.services.audit import audit_record
from exchange.services.instruments import instrument_halt, instrument_resume

pytestmark = pytest.mark.django_db


@pytest.fixture
def log(futures, operations):
    """A halt and a resume by operations, then a halt by the system (no user)."""
    first, second = futures
    instrument_halt(instrument=first, actor=operations, reason="incident 1")
    instrument_resume(instrument=first, actor=operations, reason="fixed 1")
    instrument_halt(instrument=second, actor=None, reason="circuit breaker")
    return first, second


def _rows(response):
    return [row["entry"] for row in response.context["rows"]]


def test_the_log_lists_every_entry_newest_first(client, finance, log):
    client.force_login(finance)

    response = client.get(reverse("backoffice:audit_log"))

    assert response.status_code == 200
    entries = _rows(response)
    assert entries == list(AuditEntry.objects.order_by("-created_at", "-id")[:100])
    assert [e.action for e in entries[:3]] == [
        "instrument.halted",
        "instrument.active",
        "instrument.halted",
    ]
    page = response.content.decode()
    assert "circuit breaker" in page
    assert "{&quot;status&quot;: &quot;active&quot;}" in page  # The before of the last halt.
    assert reverse("admin:exchange_instrument_change", args=[log[1].pk]) in page


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"actor": "olivia"}, ["instrument.active", "instrument.halted"]),
        ({"actor": "system", "action": "instrument.halted"}, ["instrument.halted"]),
        ({"action": "instrument.active"}, ["instrument.active"]),
        ({"action": "instrument.h"}, []),  # Not a prefix without its dot.
        ({"actor": "nobody-at-all"}, []),
    ],
)
def test_filters(client, risk, log, filters, expected):
    client.force_login(risk)

    response = client.get(reverse("backoffice:audit_log"), filters)

    assert [entry.action for entry in _rows(response)] == expected


def test_filter_by_target_and_action_prefix(client, operations, log):
    first, _second = log
    client.force_login(operations)

    response = client.get(
        reverse("backoffice:audit_log"),
        {"action": "instrument.", "target_type": "Instrument", "target_id": str(first.pk)},
    )

    entries = _rows(response)
    assert [entry.action for entry in entries] == [
        "instrument.active",
        "instrument.halted",
        "instrument.list",
    ]
    assert {entry.target_id for entry in entries} == {str(first.pk)}


def test_an_unknown_target_type_is_a_field_error_not_a_crash(client, operations, log):
    client.force_login(operations)

    response = client.get(reverse("backoffice:audit_log"), {"target_type": "Nonsense"})

    assert response.status_code == 200
    assert "target_type" in response.context["form"].errors


@pytest.mark.parametrize(
    "filters",
    [
        {"actor": "olivia", "target_type": "Withdrawal"},  # No withdrawal in the log.
        {"actor": "o" * 151},  # Longer than a user name.
        {"target_id": "9" * 65},
    ],
)
def test_a_refused_filter_matches_nothing_not_the_whole_log(client, operations, log, filters):
    client.force_login(operations)

    response = client.get(reverse("backoffice:audit_log"), filters)

    assert response.status_code == 200
    assert response.context["form"].errors
    assert _rows(response) == []
    assert response.context["page"].paginator.count == 0
    assert "No entries match." in response.content.decode()


@pytest.fixture
def entry(operations, future):
    return audit_record(
        actor=operations,
        action="test.action",
        target=future,
        before={"a": 1},
        after={"a": 2},
        reason="why",
    )


def test_an_entry_cannot_be_saved_again(entry):
    entry.reason = "rewritten"

    with pytest.raises(AuditLogAppendOnly):
        entry.save()
    with pytest.raises(AuditLogAppendOnly):
        AuditEntry.objects.get(pk=entry.pk).save(update_fields=["reason"])

    assert AuditEntry.objects.get(pk=entry.pk).reason == "why"


def test_an_entry_cannot_be_deleted(entry):
    with pytest.raises(AuditLogAppendOnly):
        entry.delete()
    with pytest.raises(AuditLogAppendOnly):
        AuditEntry.objects.filter(pk=entry.pk).delete()

    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_queryset_refuses_updates(entry):
    entry.reason = "rewritten"

    with pytest.raises(AuditLogAppendOnly):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    # bulk_update runs in an atomic block without a savepoint: the test gives it one.
    with pytest.raises(AuditLogAppendOnly), transaction.atomic():
        AuditEntry.objects.bulk_update([entry], ["reason"])

    assert AuditEntry.objects.get(pk=entry.pk).reason == "why"


def test_new_entries_are_still_written(entry, operations, future):
    again = audit_record(actor=operations, action="test.again", target=future)

    assert AuditEntry.objects.filter(pk__in=[entry.pk, again.pk]).count() == 2


def test_the_admin_is_read_only(client, superuser, entry):
    client.force_login(superuser)
    change = reverse("admin:exchange_auditentry_change", args=[entry.pk])

    assert client.get(reverse("admin:exchange_auditentry_changelist")).status_code == 200
    assert client.get(change).status_code == 200
    assert client.get(reverse("admin:exchange_auditentry_add")).status_code == 403
    assert client.post(change, {"reason": "rewritten"}).status_code == 403
    delete = reverse("admin:exchange_auditentry_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    changelist = client.get(reverse("admin:exchange_auditentry_changelist"))
    assert changelist.context["action_form"] is None  # No "delete selected".
    assert AuditEntry.objects.get(pk=entry.pk).reason == "why"
    request = changelist.wsgi_request
    model_admin = AuditEntryAdmin(AuditEntry, None)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE exchange_auditentry SET reason = 'rewritten' WHERE id = %s",
        "DELETE FROM exchange_auditentry WHERE id = %s",
    ],
)
def test_postgresql_refuses_raw_updates_and_deletes(entry, statement):
    if connection.vendor != "postgresql":
        pytest.skip("the audit table's trigger is PostgreSQL's")

    # The savepoint of atomic() lets the test read the row after the refusal.
    with (
        pytest.raises(DatabaseError, match="AUDIT_APPEND_ONLY"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [entry.pk])

    with connection.cursor() as cursor:
        cursor.execute("SELECT reason FROM exchange_auditentry WHERE id = %s", [entry.pk])
        assert cursor.fetchone() == ("why",)


def _audit_rows(rows: int, actions: int, target_types: int) -> None:
    AuditEntry.objects.bulk_create(
        (
            AuditEntry(
                actor_label="system",
                action=f"family.verb{index % actions:03d}",
                target_type=f"Type{index % target_types:02d}",
                target_id=str(index),
            )
            for index in range(rows)
        ),
        batch_size=1000,
    )


def test_the_filter_choices_are_the_actions_and_target_types_in_the_log(client, operations):
    # given 3,000 rows of 40 actions on 25 target types
    _audit_rows(3000, actions=40, target_types=25)
    client.force_login(operations)

    # when operations open the audit log
    response = client.get(reverse("backoffice:audit_log"))

    # then the page offers each action once, in order, and filters on each target type (with
    # the role grant of the operations user)
    assert response.context["actions"] == [f"family.verb{n:03d}" for n in range(40)] + [
        "staff.roles_grant"
    ]
    field = response.context["form"].fields["target_type"]
    assert [value for value, _ in field.choices][1:] == [f"Type{n:02d}" for n in range(25)] + [
        "User"
    ]
    assert '<option value="family.verb039">' in response.content.decode()


def test_the_filter_choices_are_bounded(db):
    _audit_rows(AUDIT_CHOICES_MAX + 5, actions=AUDIT_CHOICES_MAX + 5, target_types=1)

    actions, target_types = audit_choices()

    assert len(actions) == AUDIT_CHOICES_MAX and target_types == ["Type00"]
    assert actions == sorted(actions)


def _audit_rows_read(plan: dict) -> int:
    """The rows the nodes of a PostgreSQL JSON plan read from the audit table."""
    own = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
    read = own if plan.get("Relation Name") == AuditEntry._meta.db_table else 0
    return read + sum(_audit_rows_read(child) for child in plan.get("Plans", []))


def test_the_filter_choices_read_one_index_entry_per_value_not_the_log(postgres_only):
    # given 3,000 rows of 3 actions on 2 target types
    _audit_rows(3000, actions=3, target_types=2)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE exchange_auditentry")

    # when the audit log's choices are read
    with CaptureQueriesContext(connection) as queries:
        assert audit_choices() == (
            ["family.verb000", "family.verb001", "family.verb002"],
            ["Type00", "Type01"],
        )

    # then the queries read a handful of rows of the audit table, not its 3,000 twice
    read = 0
    for query in queries.captured_queries:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query["sql"])
            read += _audit_rows_read(cursor.fetchone()[0][0]["Plan"])
    assert read <= 2 * (3 + 2)


def _reads_of_the_whole_log(queries) -> list[str]:
    """The queries that count or list the distinct values of the whole audit table: what took
    the admin's and the back office's pages seconds at millions of rows."""
    table = AuditEntry._meta.db_table
    return [
        query["sql"]
        for query in queries.captured_queries
        if table in query["sql"]
        and ("COUNT(" in query["sql"].upper() or "DISTINCT" in query["sql"].upper())
        and " WHERE " not in query["sql"].upper()
    ]


@pytest.mark.parametrize("page", ["admin:exchange_auditentry_changelist", "backoffice:audit_log"])
def test_the_log_s_pages_do_not_count_the_whole_log(client, superuser, page):
    # given 3,000 rows of 3 actions on 2 target types
    _audit_rows(3000, actions=3, target_types=2)
    total = AuditEntry.objects.count()
    client.force_login(superuser)

    # when the whole log is paged through, first and last page
    with CaptureQueriesContext(connection) as queries:
        first = client.get(reverse(page))
        last = client.get(reverse(page), {"p" if page.startswith("admin") else "page": 30})

    # then no query counts the whole table or reads its distinct values, yet the pager still
    # says how many rows it holds (read from the ends of its key: the log is append-only) and
    # reaches the oldest row
    assert (first.status_code, last.status_code) == (200, 200)
    assert _reads_of_the_whole_log(queries) == []
    oldest = AuditEntry.objects.order_by("id").first()
    if page.startswith("admin"):
        assert first.context["cl"].result_count == total
        assert f"{total} audit entries" in first.content.decode()
        assert oldest in list(last.context["cl"].result_list)
        assert "family.verb002" in first.content.decode()  # The action filter's choices.
    else:
        assert first.context["page"].paginator.count == total
        assert oldest in [row["entry"] for row in last.context["rows"]]


def test_a_filtered_page_counts_what_matches_exactly(client, superuser):
    _audit_rows(300, actions=3, target_types=2)
    client.force_login(superuser)

    admin_page = client.get(
        reverse("admin:exchange_auditentry_changelist"), {"action": "family.verb001"}
    )
    page = client.get(reverse("backoffice:audit_log"), {"action": "family.verb001"})

    assert admin_page.context["cl"].result_count == 100
    assert page.context["page"].paginator.count == 100
