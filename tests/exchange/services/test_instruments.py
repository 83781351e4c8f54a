import pytest

from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import AuditEntry, Instrument
from exchange.services.instruments import instrument_halt, instrument_resume, instrument_set_status

pytestmark = pytest.mark.django_db


def test_halt_and_resume_are_audited(future, admin_user):
    halted = instrument_halt(instrument=future, actor=admin_user, reason="incident 42")
    resumed = instrument_resume(instrument=future, actor=None)

    assert halted.status == Instrument.Status.HALTED
    assert resumed.status == Instrument.Status.ACTIVE
    entries = list(
        AuditEntry.objects.filter(target_id=str(future.pk))
        .exclude(action="instrument.list")
        .order_by("id")
    )
    assert [(entry.action, entry.actor_label, entry.reason) for entry in entries] == [
        ("instrument.halted", admin_user.username, "incident 42"),
        ("instrument.active", "system", ""),
    ]


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        (["halted"], "halted"),
        ([], "active"),
        (["expired"], "active"),
        (["expired"], "halted"),
    ],
)
def test_disallowed_status_changes_are_refused_and_not_audited(future, path, refused):
    for status in path:
        instrument_set_status(instrument=future, status=status, actor=None)
    audits = AuditEntry.objects.count()

    with pytest.raises(CatalogError) as raised:
        instrument_set_status(instrument=future, status=refused, actor=None)

    assert raised.value.code == CatalogErrorCode.INVALID_STATUS_CHANGE
    assert AuditEntry.objects.count() == audits
    assert Instrument.objects.get(pk=future.pk).status == (path[-1] if path else "active")
