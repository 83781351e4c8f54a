"""Instrument status changes by staff: halt, resume, expire. Each one is audited.

Only staff with the operations role change them (``CATALOG_NOT_STAFF``,
``CATALOG_ROLE_REQUIRED``), whoever calls; the system (no actor) may too.
"""

from django.contrib.auth.models import User
from django.db import transaction

from exchange.backoffice.roles import CATALOG_STAFF
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import Instrument
from exchange.services.audit import audit_record

ALLOWED_STATUS_CHANGES = {
    Instrument.Status.ACTIVE: {Instrument.Status.HALTED, Instrument.Status.EXPIRED},
    Instrument.Status.HALTED: {Instrument.Status.ACTIVE, Instrument.Status.EXPIRED},
    Instrument.Status.EXPIRED: set(),
}


def instrument_status_refusal(*, instrument: Instrument, status: str) -> CatalogError | None:
    """Why ``instrument_set_status`` would refuse to move ``instrument``, as read, to
    ``status`` (``CATALOG_INVALID_STATUS_CHANGE``), or None: what a confirmation page says
    before it asks for a reason. The service checks again under the row's lock."""
    if status in ALLOWED_STATUS_CHANGES[Instrument.Status(instrument.status)]:
        return None
    return CatalogError(
        CatalogErrorCode.INVALID_STATUS_CHANGE,
        f"{instrument.symbol} cannot go from {instrument.status} to {status}.",
        field="status",
    )


def instrument_set_status(
    *, instrument: Instrument, status: str, actor: User | None, reason: str = ""
) -> Instrument:
    CATALOG_STAFF.check(actor, "change an instrument's trading status")
    with transaction.atomic():
        # The row lock orders this change with the matcher, which reads the status under it.
        locked = Instrument.objects.select_for_update(no_key=True).get(pk=instrument.pk)
        refusal = instrument_status_refusal(instrument=locked, status=status)
        if refusal is not None:
            raise refusal
        before = locked.status
        locked.status = status
        locked.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action=f"instrument.{status}",
            target=locked,
            before={"status": before},
            after={"status": status},
            reason=reason,
        )
    return locked


def instrument_halt(*, instrument: Instrument, actor: User | None, reason: str = "") -> Instrument:
    return instrument_set_status(
        instrument=instrument, status=Instrument.Status.HALTED, actor=actor, reason=reason
    )


def instrument_resume(
    *, instrument: Instrument, actor: User | None, reason: str = ""
) -> Instrument:
    return instrument_set_status(
        instrument=instrument, status=Instrument.Status.ACTIVE, actor=actor, reason=reason
    )
