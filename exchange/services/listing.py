"""Listing services: monthly futures strips, option chains and reserved-capacity resale.

Listing is idempotent: an instrument whose symbol exists is left as it is and returned.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from exchange import calendar
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import Instrument, Region, ReservedCapacity, Sku
from exchange.services.audit import audit_record
from exchange.symbols import future_symbol, option_symbol, resale_symbol

FUTURE_TICK_SIZE = Decimal("0.005")
OPTION_TICK_SIZE = Decimal("0.001")
RESALE_TICK_SIZE = Decimal("0.01")
LISTED_MONTHS_MAX = 72  # As PJM monthly power futures: six years of consecutive months.
STRIKES_EACH_SIDE_MAX = 50


@dataclass(frozen=True)
class StripSpec:
    tick_size: Decimal = FUTURE_TICK_SIZE
    lot_size: int = 1
    settlement: str = Instrument.Settlement.CASH
    price_max: Decimal = Decimal("1000")


def _instrument_listed(instrument: Instrument, actor: AbstractBaseUser | None) -> None:
    audit_record(
        actor=actor,
        action="instrument.list",
        target=instrument,
        after={"symbol": instrument.symbol, "kind": instrument.kind},
    )


@transaction.atomic
def futures_list_strip(
    *,
    sku: Sku,
    region: Region,
    first_month: date,
    months: int,
    spec: StripSpec = StripSpec(),
    actor: AbstractBaseUser | None = None,
) -> list[Instrument]:
    """List ``months`` consecutive monthly futures from ``first_month`` (one per delivery month).

    A contract is 1 GPU for every hour of its delivery month; prices are $/GPU-hr.
    """
    if not 1 <= months <= LISTED_MONTHS_MAX:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"Months must be 1 to {LISTED_MONTHS_MAX}.",
            field="months",
        )
    start = calendar.month_start(first_month)
    instruments = []
    for index in range(months):
        delivery_start = calendar.add_months(start, index)
        symbol = future_symbol(sku.code, region.code, delivery_start)
        instrument, created = Instrument.objects.get_or_create(
            symbol=symbol,
            defaults={
                "kind": Instrument.Kind.FUTURE,
                "sku": sku,
                "region": region,
                "tick_size": spec.tick_size,
                "lot_size": spec.lot_size,
                "price_max": spec.price_max,
                "gpu_hours_per_contract": calendar.hours_in_month(delivery_start),
                "delivery_start": delivery_start,
                "delivery_end": calendar.add_months(delivery_start, 1),
                "last_trading_day": calendar.future_last_trading_day(delivery_start),
                "settlement": spec.settlement,
            },
        )
        if created:
            _instrument_listed(instrument, actor)
        instruments.append(instrument)
    return instruments


def strike_ladder(
    reference_price: Decimal, strike_step: Decimal, strikes_each_side: int
) -> list[Decimal]:
    """Strikes on multiples of ``strike_step`` centred on the one nearest the reference price."""
    if strike_step <= 0 or reference_price <= 0:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING, "Reference price and strike step must be positive."
        )
    if not 0 <= strikes_each_side <= STRIKES_EACH_SIDE_MAX:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING, f"At most {STRIKES_EACH_SIDE_MAX} strikes each side."
        )
    centre = (reference_price / strike_step).to_integral_value()
    steps = range(int(centre) - strikes_each_side, int(centre) + strikes_each_side + 1)
    return [strike_step * step for step in steps if step > 0]


@transaction.atomic
def options_list_chain(
    *,
    future: Instrument,
    reference_price: Decimal,
    strike_step: Decimal,
    strikes_each_side: int,
    tick_size: Decimal = OPTION_TICK_SIZE,
    actor: AbstractBaseUser | None = None,
) -> list[Instrument]:
    """List European calls and puts on ``future`` at strikes around ``reference_price``.

    Options expire two business days before the future stops trading, so they always expire
    before delivery starts; exercise delivers the future.
    """
    if future.kind != Instrument.Kind.FUTURE:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING, "Options are listed on futures only.", field="future"
        )
    expiry = calendar.option_expiry(future.last_trading_day)
    instruments = []
    for strike in strike_ladder(reference_price, strike_step, strikes_each_side):
        if strike % tick_size:
            raise CatalogError(
                CatalogErrorCode.INVALID_LISTING,
                "Strikes must sit on the option tick.",
                field="strike_step",
            )
        for option_type in (Instrument.OptionType.CALL, Instrument.OptionType.PUT):
            instrument, created = Instrument.objects.get_or_create(
                symbol=option_symbol(future.symbol, option_type, strike),
                defaults={
                    "kind": Instrument.Kind.OPTION,
                    "sku_id": future.sku_id,
                    "region_id": future.region_id,
                    "tick_size": tick_size,
                    "lot_size": 1,
                    "price_max": future.price_max,
                    "gpu_hours_per_contract": future.gpu_hours_per_contract,
                    "delivery_start": future.delivery_start,
                    "delivery_end": future.delivery_end,
                    "last_trading_day": expiry,
                    "settlement": Instrument.Settlement.PHYSICAL,
                    "underlying": future,
                    "option_type": option_type,
                    "strike": strike,
                },
            )
            if created:
                _instrument_listed(instrument, actor)
            instruments.append(instrument)
    return instruments


@transaction.atomic
def resale_list(
    *,
    reservation: ReservedCapacity,
    lot_gpus: int | None = None,
    tick_size: Decimal = RESALE_TICK_SIZE,
    actor: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> Instrument:
    """List a reserved block for resale by its holder.

    A contract is 1 GPU of the block for its whole term, priced in $/GPU-hr; the lot is the
    contiguous block size unless given, so buyers get interconnected blocks. Only blocks whose
    term has not started can be listed: trading ends the day before the term starts.
    """
    now = now or timezone.now()
    if reservation.starts_at <= now + timedelta(days=1):
        raise CatalogError(
            CatalogErrorCode.RESERVATION_ALREADY_STARTED,
            "Only reservations starting more than a day from now can be listed.",
            field="reservation",
        )
    if Instrument.objects.filter(reservation=reservation).exists():
        raise CatalogError(
            CatalogErrorCode.RESERVATION_ALREADY_LISTED,
            "This reservation is already listed.",
            field="reservation",
        )
    lot = lot_gpus or reservation.contiguous_block_gpus
    if lot < 1 or reservation.gpus % lot:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            "The lot must divide the block's GPUs.",
            field="lot_gpus",
        )
    hours = int((reservation.ends_at - reservation.starts_at).total_seconds() // 3600)
    if hours < 1:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            "The reservation is shorter than an hour.",
            field="reservation",
        )
    starts_on = reservation.starts_at.astimezone(UTC).date()
    ends_on = reservation.ends_at.astimezone(UTC).date()
    if datetime.combine(ends_on, time.min, tzinfo=UTC) < reservation.ends_at:
        ends_on += timedelta(days=1)
    instrument = Instrument.objects.create(
        symbol=resale_symbol(reservation.sku.code, reservation.region.code, reservation.pk),
        kind=Instrument.Kind.RESALE,
        sku=reservation.sku,
        region=reservation.region,
        tick_size=tick_size,
        lot_size=lot,
        quantity_max=reservation.gpus,
        gpu_hours_per_contract=hours,
        delivery_start=starts_on,
        delivery_end=ends_on,
        last_trading_day=starts_on - timedelta(days=1),
        settlement=Instrument.Settlement.PHYSICAL,
        reservation=reservation,
    )
    _instrument_listed(instrument, actor)
    return instrument


def futures_list_upcoming(*, months_ahead: int, today: date | None = None) -> list[Instrument]:
    """Keep every listed SKU x region strip ``months_ahead`` months deep (run by Celery beat)."""
    today = today or timezone.now().date()
    first_month = calendar.add_months(calendar.month_start(today), 1)
    pairs = (
        Instrument.objects.filter(kind=Instrument.Kind.FUTURE)
        .values_list("sku_id", "region_id")
        .distinct()
        .order_by("sku_id", "region_id")
    )
    listed = []
    for sku_id, region_id in pairs:
        sku = Sku.objects.get(pk=sku_id)
        region = Region.objects.get(pk=region_id)
        listed += futures_list_strip(
            sku=sku, region=region, first_month=first_month, months=months_ahead
        )
    return listed
