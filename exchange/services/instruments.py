"""Instrument status changes by staff: halt, resume, expire; and position limits. Each one is
audited.

Only staff with the operations role change the status (``CATALOG_NOT_STAFF``,
``CATALOG_ROLE_REQUIRED``), whoever calls; the system (no actor) may too. A future's position
limit is the risk role's (``RISK_NOT_STAFF``, ``RISK_ROLE_REQUIRED``), as is an organization's
exemption from the limits (set in its admin page).
"""

from django.contrib.auth.models import User
from django.db import transaction

from exchange.backoffice.roles import CATALOG_STAFF, RISK_STAFF
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import Instrument, Organization
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


# The column's bound (PositiveIntegerField): above it, a named error rather than the database's.
POSITION_LIMIT_MAX = 2_147_483_647


def position_limit_check(position_limit: object) -> None:
    """``CATALOG_POSITION_LIMIT_INVALID`` unless ``position_limit`` is a future's own limit:
    a whole number of contracts from 0 (no limit) to the column's bound, or None (the
    exchange's default). Setting one and listing a strip with one check it the same way."""
    whole = isinstance(position_limit, int) and not isinstance(position_limit, bool)
    if position_limit is not None and (
        not whole or not 0 <= position_limit <= POSITION_LIMIT_MAX  # type: ignore[operator]
    ):
        raise CatalogError(
            CatalogErrorCode.POSITION_LIMIT_INVALID,
            f"A position limit is a whole number of contracts from 0 to {POSITION_LIMIT_MAX} "
            "(0: no limit), or empty for the exchange's default.",
            field="position_limit",
        )


def instrument_position_limit_set(
    *, instrument: Instrument, position_limit: int | None, actor: User | None, reason: str = ""
) -> Instrument:
    """Set a future's own position limit (contracts; None: the exchange's default,
    ``EXCHANGE_POSITION_LIMIT``; 0: none). It applies to orders accepted from then on (this
    process at once, others within ``EXCHANGE_REFERENCE_CACHE_SECONDS``); positions already
    above it stay, and only orders that reduce them are accepted."""
    RISK_STAFF.check(actor, "set a future's position limit")
    if instrument.kind != Instrument.Kind.FUTURE:
        raise CatalogError(
            CatalogErrorCode.POSITION_LIMIT_INVALID,
            f"{instrument.symbol} is no future: an option counts against its future's "
            "position limit, and a resale listing has none.",
            field="position_limit",
        )
    position_limit_check(position_limit)
    with transaction.atomic():
        # Only this column is written: the sequence and risk version are the matcher's and
        # the risk cycle's, under the same row lock.
        locked = Instrument.objects.select_for_update(no_key=True).get(pk=instrument.pk)
        before = locked.position_limit
        locked.position_limit = position_limit
        locked.save(update_fields=["position_limit"])  # Its signal forgets the kept rows.
        audit_record(
            actor=actor,
            action="instrument.position_limit",
            target=locked,
            before={"position_limit": before},
            after={"position_limit": position_limit},
            reason=reason,
        )
    return locked


def organization_position_limit_exempt_set(
    *, organization: Organization, exempt: bool, actor: User | None, reason: str = ""
) -> Organization:
    """Exempt ``organization`` from the position limits, or end its exemption (the risk role's:
    ``RISK_NOT_STAFF``, ``RISK_ROLE_REQUIRED``, checked before anything is written). It applies
    to orders accepted from then on (this process at once, others within
    ``EXCHANGE_REFERENCE_CACHE_SECONDS``); setting what it already is writes nothing."""
    RISK_STAFF.check(actor, "exempt an organization from the position limits")
    with transaction.atomic():
        locked = Organization.objects.select_for_update().get(pk=organization.pk)
        before = locked.position_limit_exempt
        if before == exempt:
            return locked
        locked.position_limit_exempt = exempt
        locked.save(update_fields=["position_limit_exempt"])  # Its signal forgets the kept rows.
        audit_record(
            actor=actor,
            action="organization.position_limit_exempt",
            target=locked,
            before={"position_limit_exempt": before},
            after={"position_limit_exempt": exempt},
            reason=reason,
        )
    return locked
