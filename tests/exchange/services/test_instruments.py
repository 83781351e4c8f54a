from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import AuditEntry, Instrument
from exchange.services.instruments import instrument_halt, instrument_resume, instrument_set_status
from exchange.services.listing import options_list_chain

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


def test_a_day_settles_the_futures_and_options_listed_by_its_close(futures, listing):
    """The rule "an instrument listed by a day's close is the day's" holds in one place, as a
    query (settlement prices, the prices a day needs) and on an instrument (the ledger's
    instruments of the day): both agree for each kind, listed at the close or after it."""
    [call, put] = options_list_chain(
        future=futures[0],
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
    )
    close = timezone.now().replace(microsecond=0) + timedelta(days=1)
    Instrument.objects.update(created_at=close)
    Instrument.objects.filter(pk__in=[futures[1].pk, call.pk]).update(
        created_at=close + timedelta(microseconds=1)
    )

    listed = set(Instrument.objects.settled_by(close))
    each = {i for i in Instrument.objects.all() if i.settled_by(close)}

    assert listed == each
    assert futures[0] in listed and put in listed
    assert futures[1] not in listed and call not in listed
    assert listing not in listed  # a resale listing has no settlement price
