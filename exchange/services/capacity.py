"""Reserved capacity: registering a block issues its GPU-hours as ledger entitlements.

A provider registers a reserved block (its own idle capacity, or capacity a customer reserved
from it) and the block's GPU-hours are issued to the block's holder, split by calendar month
(UTC) into one entitlement commodity per SKU x region x month. The holder can then list the
block for resale; settlement of a resale trade moves the entitlements to the buyer. Once a
month has ended, what is left of its GPU-hours is retired (``entitlements_retire``).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from exchange import calendar
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import Organization, Region, ReservedCapacity, Sku
from exchange.services.audit import audit_record
from exchange.services.ledger_accounts import (
    entitlement,
    entitlement_account,
    entitlement_issuance_account,
    entitlement_parts,
)
from exchange.services.participants import account_main
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity
from ledger.services import entry_post

# Reservations run 1-3 years, sometimes 5 (MARKET.md); a longer one is a typo.
TERM_YEARS_MAX = 6
TERM_MONTHS_MAX = TERM_YEARS_MAX * 12
# Calendar months a term accepted by ``_check`` (at most 366 days a year) can touch: a few
# days more than its years, from late in one month, reach into a 74th.
TERM_CALENDAR_MONTHS_MAX = TERM_MONTHS_MAX + 2
GPUS_MAX = 100_000
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class MonthHours:
    month: date
    hours: int


def hours_by_month(starts_at: datetime, ends_at: datetime) -> list[MonthHours]:
    """The whole hours of [starts_at, ends_at) in each UTC calendar month, in order."""
    start, end = starts_at.astimezone(UTC), ends_at.astimezone(UTC)
    months: list[MonthHours] = []
    month = calendar.month_start(start.date())
    for _ in range(TERM_CALENDAR_MONTHS_MAX):
        month_begins = datetime(month.year, month.month, 1, tzinfo=UTC)
        next_month = calendar.add_months(month, 1)
        month_ends = datetime(next_month.year, next_month.month, 1, tzinfo=UTC)
        overlap = min(end, month_ends) - max(start, month_begins)
        if overlap > timedelta(0):
            months.append(MonthHours(month, int(overlap.total_seconds()) // SECONDS_PER_HOUR))
        if month_ends >= end:
            break
        month = next_month
    else:
        raise AssertionError(f"a term of more than {TERM_CALENDAR_MONTHS_MAX} months: {start}")
    return months


def issued_from(starts_at: datetime, registered_at: datetime) -> datetime:
    """Where a block's issued GPU-hours begin: its start, or the start of the hour it was
    registered in if its term was already running then."""
    registered_hour = registered_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return max(starts_at, registered_hour)


def _invalid(message: str, field: str) -> CatalogError:
    return CatalogError(CatalogErrorCode.INVALID_CAPACITY, message, field=field)


def _check(starts_at: datetime, ends_at: datetime, gpus: int, contiguous_block_gpus: int) -> None:
    for name, moment in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise _invalid("Start and end are dates and times with a time zone.", name)
        if moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0) != moment:
            raise _invalid("Reserved capacity starts and ends on whole hours.", name)
    if ends_at <= starts_at:
        raise _invalid("The reservation must end after it starts.", "ends_at")
    if ends_at <= timezone.now():
        # Its GPU-hours would all be past: entitlements nobody can use or deliver.
        raise _invalid("The reservation's term is over: it must end in the future.", "ends_at")
    if ends_at - starts_at > timedelta(days=366 * TERM_YEARS_MAX):
        raise _invalid(f"A reservation lasts at most {TERM_YEARS_MAX} years.", "ends_at")
    if not isinstance(gpus, int) or not 1 <= gpus <= GPUS_MAX:
        raise _invalid(f"GPUs must be a whole number from 1 to {GPUS_MAX}.", "gpus")
    if not isinstance(contiguous_block_gpus, int) or not 1 <= contiguous_block_gpus <= gpus:
        raise _invalid(
            "The contiguous block is 1 GPU up to the whole reservation.", "contiguous_block_gpus"
        )
    if gpus % contiguous_block_gpus:
        # The reservation is made of whole interconnected blocks (resale lots divide a block).
        raise _invalid(
            f"The contiguous block ({contiguous_block_gpus} GPUs) must divide the reservation's "
            f"{gpus} GPUs.",
            "contiguous_block_gpus",
        )


def capacity_register(
    *,
    provider: Organization,
    holder: Organization,
    cluster: str,
    sku: Sku,
    region: Region,
    starts_at: datetime,
    ends_at: datetime,
    gpus: int,
    interconnect: str,
    contiguous_block_gpus: int,
    actor: User | None = None,
) -> ReservedCapacity:
    """Record a reserved block and issue its GPU-hours to the holder, in one transaction.

    Only a provider organization registers capacity: it vouches that the GPUs exist, and the
    GPU-hours it issues are as good as that promise. It issues them to a participant, never to
    the exchange operator's own organization (``CATALOG_HOLDER_IS_OPERATOR``): the operator
    runs the market and trades in none of it, and a block it held would be GPU-hours on its
    books that no customer reserved. A block registered during its term (one
    already running, as a cloud's idle reservation is) keeps its whole term on record, but
    only its hours from the current one on are issued: those already past can be neither used
    nor delivered.
    """
    if provider.kind != Organization.Kind.PROVIDER:
        raise CatalogError(
            CatalogErrorCode.PROVIDER_REQUIRED,
            f"Only providers register capacity; {provider.slug} is registered as "
            f"“{provider.get_kind_display()}”.",
            field="provider",
        )
    if holder.kind == Organization.Kind.EXCHANGE:
        raise CatalogError(
            CatalogErrorCode.HOLDER_IS_OPERATOR,
            f"{holder.slug} is the exchange operator, which holds no capacity: issue the "
            "GPU-hours to your organization or to the customer that reserved the block.",
            field="holder",
        )
    _check(starts_at, ends_at, gpus, contiguous_block_gpus)
    if not cluster.strip():
        raise _invalid("Name the cluster.", "cluster")
    with transaction.atomic(durable=True):
        reservation = ReservedCapacity.objects.create(
            provider=provider,
            holder=holder,
            cluster=cluster.strip(),
            sku=sku,
            region=region,
            starts_at=starts_at,
            ends_at=ends_at,
            gpus=gpus,
            interconnect=interconnect,
            contiguous_block_gpus=contiguous_block_gpus,
        )
        holder_account = account_main(holder)
        postings = []
        issued = {}
        for part in hours_by_month(issued_from(starts_at, reservation.created_at), ends_at):
            commodity = entitlement(sku.code, region.code, part.month)
            gpu_hours = part.hours * gpus
            postings += [
                (entitlement_account(holder_account, commodity), gpu_hours),
                (entitlement_issuance_account(commodity), -gpu_hours),
            ]
            issued[commodity.code] = gpu_hours
        entry_post(
            key=f"capacity:{reservation.pk}:issue",
            description=f"GPU-hours of reserved block #{reservation.pk} ({reservation.cluster})",
            postings=postings,
            metadata={"reservation": reservation.pk},
        )
        audit_record(
            actor=actor,
            action="capacity.register",
            target=reservation,
            after={"holder": holder.slug, "gpus": gpus, "issued_gpu_hours": issued},
        )
    return reservation


@dataclass(frozen=True)
class Retired:
    """GPU-hours of one ended month taken off its holders' accounts."""

    commodity: str
    gpu_hours: int
    accounts: int


def entitlements_retire(*, today: date | None = None) -> list[Retired]:
    """Retire the GPU-hours of every month that ended before ``today``'s: one entry per
    commodity takes what each holder still has of it back to its issuance account
    (``exchange:gpuh-issued:<commodity>``), as the exchange's record that the month is over.

    Those hours were used at the provider or went unused; either way nothing can deliver,
    resell or hold them any more, and the balances, the portfolio and the API stopped listing
    a holder's past months only once they are retired. A holding under a pending hold (none
    should be: a listing stops trading before its first hour, and the daily cycle cancels its
    orders) keeps what is held until it is released, and is retired by a later run. A second
    run finds nothing left and posts nothing.
    """
    now = timezone.now().date()
    if today is not None and today > now:
        raise ValueError(f"{today} is after today, {now}: its month has not begun.")
    today = today or now
    this_month = calendar.month_start(today)
    holdings = (
        LedgerAccount.objects.filter(commodity__kind=Commodity.Kind.ENTITLEMENT)
        .exclude(owner="exchange")  # The issuance accounts.
        .exclude(debits_posted=F("credits_posted"))
        .select_related("commodity")
        .order_by("commodity__code", "pk")
    )
    by_commodity: dict[Commodity, list[LedgerAccount]] = {}
    for holding in holdings:
        parts = entitlement_parts(holding.commodity.code)
        if parts is not None and parts.month < this_month:
            by_commodity.setdefault(holding.commodity, []).append(holding)
    retired = []
    for commodity, accounts in by_commodity.items():
        postings = [(account, -account.available) for account in accounts if account.available]
        if not postings:
            continue
        gpu_hours = -sum(amount for _, amount in postings)
        issuance = entitlement_issuance_account(commodity)
        # Named by what the commodity will have retired in all: a run repeated on the same
        # holdings posts the same entry (returned, not posted twice); a later one, a new key.
        retired_total = issuance.debits_posted + gpu_hours
        entry_post(
            key=f"gpuh-retire:{commodity.code}:{retired_total}",
            description=f"{commodity.name}: the month has ended, its GPU-hours are retired",
            postings=[*postings, (issuance, gpu_hours)],
            metadata={"retired": commodity.code},
        )
        retired.append(Retired(commodity.code, gpu_hours, len(postings)))
    return retired
