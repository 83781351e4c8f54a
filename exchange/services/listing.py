"""Listing services: monthly futures strips, option chains, reserved-capacity resale, and the
daily roll that keeps strips and chains listed as months pass (``listings_roll``).

Listing is idempotent: an instrument whose symbol exists is left as it is and returned.

Futures strips, option chains and the roll are staff's: a user actor must be active staff with
the operations role (``CATALOG_NOT_STAFF``, ``CATALOG_ROLE_REQUIRED``); the system (no actor)
lists too. A resale listing is its block holder's, not staff's.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice, pairwise
from typing import cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import CATALOG_STAFF, RISK_STAFF
from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import Instrument, Region, ReservedCapacity, Sku
from exchange.selectors.marks import mark_price
from exchange.services.audit import audit_record
from exchange.services.instruments import position_limit_check
from exchange.symbols import future_symbol, option_symbol, resale_symbol

FUTURE_TICK_SIZE = Decimal("0.005")
OPTION_TICK_SIZE = Decimal("0.001")
RESALE_TICK_SIZE = Decimal("0.01")
LISTING_ACTION = "list futures and options"
LISTED_MONTHS_MAX = 72  # As PJM monthly power futures: six years of consecutive months.
STRIKES_EACH_SIDE_MAX = 50
# The instrument columns' bounds (DecimalField(max_digits=12, decimal_places=6) for the tick and
# the price limit), checked before writing so that terms out of them get a named error, not a
# database one; the position limit's are instruments.position_limit_check's.
TERM_DECIMAL_PLACES_MAX = 6
TERM_DECIMAL_MAX = Decimal("999999.999999")
# A lot larger than the largest order an instrument accepts (Instrument.quantity_max's default)
# could never trade.
LOT_SIZE_MAX = 100_000


@dataclass(frozen=True)
class StripSpec:
    """The terms of a strip's futures (MARKET.md's futures specs), the same for every month."""

    tick_size: Decimal = FUTURE_TICK_SIZE
    lot_size: int = 1
    settlement: str = Instrument.Settlement.CASH
    price_max: Decimal = Decimal("1000")
    # Contracts; None: the exchange's default (EXCHANGE_POSITION_LIMIT), 0: no limit.
    position_limit: int | None = None

    @classmethod
    def of(cls, future: Instrument) -> "StripSpec":
        """The terms ``future`` was listed on (its own position limit as it is now)."""
        return cls(
            tick_size=future.tick_size,
            lot_size=future.lot_size,
            settlement=future.settlement,
            price_max=future.price_max,
            position_limit=future.position_limit,
        )

    def contract_terms(self) -> tuple[Decimal, int, str, Decimal]:
        """The terms fixed at listing. The position limit is not one: risk staff change it."""
        return (self.tick_size, self.lot_size, self.settlement, self.price_max)


def _term_decimal_refusal(value: object, name: str, field: str) -> CatalogError | None:
    if (
        not isinstance(value, Decimal)
        or not value.is_finite()
        or not Decimal(0) < value <= TERM_DECIMAL_MAX
        or value != value.quantize(Decimal(1).scaleb(-TERM_DECIMAL_PLACES_MAX))
    ):
        return CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"The {name} is a number above 0 and at most {TERM_DECIMAL_MAX}, with at most "
            f"{TERM_DECIMAL_PLACES_MAX} decimal places.",
            field=field,
        )
    return None


def strip_spec_check(spec: StripSpec) -> None:
    """Refuse terms no future can trade on, each with the field at fault."""
    for value, name, field in (
        (spec.tick_size, "tick size", "tick_size"),
        (spec.price_max, "price limit", "price_max"),
    ):
        refusal = _term_decimal_refusal(value, name, field)
        if refusal is not None:
            raise refusal
    if spec.price_max % spec.tick_size:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"The price limit {spec.price_max.normalize():f} is not a multiple of the tick size "
            f"{spec.tick_size.normalize():f}: the highest price must be one a trader can bid.",
            field="price_max",
        )
    whole = isinstance(spec.lot_size, int) and not isinstance(spec.lot_size, bool)
    if not whole or not 1 <= spec.lot_size <= LOT_SIZE_MAX:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"The lot size is a whole number of contracts from 1 to {LOT_SIZE_MAX}.",
            field="lot_size",
        )
    if spec.settlement not in Instrument.Settlement.values:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            "Settlement is cash or physical.",
            field="settlement",
        )
    position_limit_check(spec.position_limit)


def _months_check(months: int) -> None:
    if not 1 <= months <= LISTED_MONTHS_MAX:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"Months must be 1 to {LISTED_MONTHS_MAX}.",
            field="months",
        )


def _instrument_listed(instrument: Instrument, actor: User | None) -> None:
    after: dict[str, object] = {"symbol": instrument.symbol, "kind": instrument.kind}
    if instrument.kind == Instrument.Kind.FUTURE:
        after["terms"] = {
            "settlement": instrument.settlement,
            "tick_size": f"{instrument.tick_size.normalize():f}",
            "lot_size": instrument.lot_size,
            "price_max": f"{instrument.price_max.normalize():f}",
            "position_limit": instrument.position_limit,
        }
    audit_record(actor=actor, action="instrument.list", target=instrument, after=after)


@transaction.atomic
def futures_list_strip(
    *,
    sku: Sku,
    region: Region,
    first_month: date,
    months: int,
    spec: StripSpec = StripSpec(),
    actor: User | None = None,
) -> list[Instrument]:
    """List ``months`` consecutive monthly futures from ``first_month`` (one per delivery month)
    on the terms of ``spec`` (``strip_spec_check``: ``CATALOG_INVALID_LISTING`` or
    ``CATALOG_POSITION_LIMIT_INVALID`` before anything is written). Months already listed are
    left as they are, whatever their terms, and returned with the new ones.

    A contract is 1 GPU for every hour of its delivery month; prices are $/GPU-hr.
    """
    CATALOG_STAFF.check(actor, LISTING_ACTION)
    strip_spec_check(spec)
    _months_check(months)
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
                "position_limit": spec.position_limit,
            },
        )
        if created:
            _instrument_listed(instrument, actor)
        instruments.append(instrument)
    return instruments


@dataclass(frozen=True)
class StripListing:
    """What ``futures_list_new_strip`` did: the months it listed, and those it found listed
    already on the same terms and left as they are."""

    listed: list[Instrument]
    already_listed: list[Instrument]


def _new_strip_months_check(start: date, months: int, now: datetime) -> None:
    """The strip's first month still trades at ``now``, and its last is at most
    ``LISTED_MONTHS_MAX`` months after this one (as deep as any strip is listed)."""
    _months_check(months)
    if now >= calendar.trading_ends_at(calendar.future_last_trading_day(start)):
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"The {start:%Y-%m} future would have stopped trading already (its last trading "
            "day is past): start the strip at a later month.",
            field="first_month",
        )
    this_month = calendar.month_start(now.astimezone(UTC).date())
    end_latest = calendar.add_months(this_month, LISTED_MONTHS_MAX + 1)
    if calendar.add_months(start, months) > end_latest:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"A strip ends at most {LISTED_MONTHS_MAX} months after this one, by "
            f"{calendar.add_months(end_latest, -1):%Y-%m}: list fewer or earlier months.",
            field="months",
        )


@transaction.atomic
def futures_list_new_strip(
    *,
    sku: Sku,
    region: Region,
    first_month: date,
    months: int,
    spec: StripSpec,
    actor: User | None,
) -> StripListing:
    """Staff's listing of a strip on the terms they choose (the back office's "List a futures
    strip"), for a new SKU x region or more months of one; the roll then continues it on the
    same terms (``futures_list_upcoming``).

    Beyond ``futures_list_strip``'s checks: the first month still trades and the last is at
    most ``LISTED_MONTHS_MAX`` months ahead (``CATALOG_INVALID_LISTING``); a position limit is
    risk staff's to set (``RISK_NOT_STAFF``, ``RISK_ROLE_REQUIRED``), the listing role lists
    with the exchange's default. A month already listed on other terms (settlement, tick,
    lot, price limit) refuses the whole strip (``CATALOG_STRIP_TERMS_DIFFER``), so a strip
    never mixes terms; one listed on the same terms is left as it is, own position limit
    included, and reported in ``already_listed``, so listing the same strip twice lists
    nothing the second time. Every check runs before anything is written.
    """
    CATALOG_STAFF.check(actor, LISTING_ACTION)
    if spec.position_limit is not None:
        RISK_STAFF.check(actor, "set a future's position limit")
    strip_spec_check(spec)
    start = calendar.month_start(first_month)
    _new_strip_months_check(start, months, timezone.now())
    existing = list(
        Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE,
            sku=sku,
            region=region,
            delivery_start__gte=start,
            delivery_start__lt=calendar.add_months(start, months),
        ).order_by("delivery_start")
    )
    differing = [
        future
        for future in existing
        if StripSpec.of(future).contract_terms() != spec.contract_terms()
    ]
    if differing:
        raise CatalogError(
            CatalogErrorCode.STRIP_TERMS_DIFFER,
            f"{', '.join(future.symbol for future in differing)} "
            f"{'is' if len(differing) == 1 else 'are'} listed already on other terms "
            f"({_terms_text(StripSpec.of(differing[0]))}): a strip keeps one set of terms. "
            "List from the month after, or on those terms.",
            field="first_month",
        )
    existing_pks = {future.pk for future in existing}
    strip = futures_list_strip(
        sku=sku, region=region, first_month=start, months=months, spec=spec, actor=actor
    )
    return StripListing(
        listed=[future for future in strip if future.pk not in existing_pks],
        already_listed=[future for future in strip if future.pk in existing_pks],
    )


def _terms_text(spec: StripSpec) -> str:
    return (
        f"{spec.settlement}, tick {spec.tick_size.normalize():f}, lot {spec.lot_size}, "
        f"price limit {spec.price_max.normalize():f}"
    )


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
    actor: User | None = None,
) -> list[Instrument]:
    """List European calls and puts on ``future`` at strikes around ``reference_price``.

    Options expire two business days before the future stops trading, so they always expire
    before delivery starts; exercise delivers the future.
    """
    CATALOG_STAFF.check(actor, LISTING_ACTION)
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


def listable_until(starts_at: datetime) -> datetime:
    """Until when a listing delivering from ``starts_at`` can be made: a day before that hour,
    or the close of the day before it (when the listing's trading ends), whichever comes
    first."""
    last_trading_day = starts_at.astimezone(UTC).date() - timedelta(days=1)
    return min(starts_at - timedelta(days=1), calendar.trading_ends_at(last_trading_day))


def listing_trades(listing: Instrument, now: datetime) -> bool:
    """Whether a block's resale listing still trades at ``now``: not expired, and before the
    close of its last trading day. While it does, the block cannot be listed again."""
    return listing.status != Instrument.Status.EXPIRED and now < listing.trading_ends_at


@dataclass(frozen=True)
class ResaleTerm:
    """What a listing of a block made now would sell: 1 GPU of it from ``starts_at`` to the
    end of its term, listable until ``listable_until``."""

    starts_at: datetime
    listable_until: datetime
    # Listed before the term: from its start. Otherwise from a day's start (00:00 UTC).
    whole_term: bool


# A running block's listing starts on the first day that can still be listed for (more than
# a day ahead): at most a few days on. A bound on the search.
RESALE_STARTS_MAX = 7


def _resale_starts(after: date) -> Iterator[date]:
    """The days a listing of a block running on ``after`` may start on, in order: each day
    that follows it, whatever its month (the first that can still be listed for is at most a
    few days on)."""
    day = after + timedelta(days=1)
    while True:
        yield day
        day += timedelta(days=1)


def resale_next_term(reservation: ReservedCapacity, now: datetime) -> ResaleTerm | None:
    """The term a listing of ``reservation`` made at ``now`` would sell.

    Its whole term while it can still be listed before the term (``listable_until`` its start).
    After that, as a holder with a reservation running resells the hours it will not use, from
    the first day's start (00:00 UTC) it can still be listed for, more than a day ahead and
    before the close of the day before (so the listing stops trading before its hours begin),
    to the end of the term, whatever the month that day is in (until 2026-12-07 a listing
    started on a month's first day only, so the month under way was never sold, and on a
    month's last day the next one was not either). A seller holds the whole month's GPU-hours
    of the month the listing starts in; a listing from one of its days sells the hours from
    that day on (``collateral.entitlement_months``). None when the term ends before that
    start: nothing is left to list."""
    until = listable_until(reservation.starts_at)
    if now < until:
        return ResaleTerm(reservation.starts_at, until, whole_term=True)
    after = max(now, reservation.starts_at).astimezone(UTC).date()
    for day in islice(_resale_starts(after), RESALE_STARTS_MAX):
        starts_at = datetime.combine(day, time.min, tzinfo=UTC)
        if starts_at >= reservation.ends_at:
            return None
        until = listable_until(starts_at)
        if now < until:
            return ResaleTerm(starts_at, until, whole_term=False)
    raise AssertionError(f"no day within {RESALE_STARTS_MAX} days to list {reservation} from")


@transaction.atomic
def resale_list(
    *,
    reservation: ReservedCapacity,
    lot_gpus: int | None = None,
    tick_size: Decimal = RESALE_TICK_SIZE,
    actor: User | None = None,
    now: datetime | None = None,
) -> Instrument:
    """List a reserved block for resale.

    A contract is 1 GPU of the block from the listing's start to the end of the term, priced in
    $/GPU-hr; the lot is the contiguous block size unless given, so buyers get interconnected
    blocks. Before the term (until a day before it starts, and the close of the day before) a
    listing sells the whole term; during the term, and once that is past, from the next day
    (00:00 UTC) that can still be listed for, in the month under way or from a later month's
    start (``resale_next_term``). A listing trades until the close
    (``EXCHANGE_SETTLEMENT_CLOSE``) of the day before its start. A block has one listing
    trading at a time: when one ends, the next can be made.
    """
    now = now or timezone.now()
    # Two listings of one block at once would both pass the check below and the second would
    # fail on the unique symbol: the reservation's row lock puts them one after the other.
    ReservedCapacity.objects.select_for_update().filter(pk=reservation.pk).first()
    trading = (
        Instrument.objects.trading_at(now)
        .filter(reservation=reservation)
        .exclude(status=Instrument.Status.EXPIRED)
        .first()
    )
    if trading is not None:
        raise CatalogError(
            CatalogErrorCode.RESERVATION_ALREADY_LISTED,
            f"This reservation is already listed: {trading.symbol} trades until "
            f"{trading.trading_ends_at:%Y-%m-%d %H:%M} UTC.",
            field="reservation",
        )
    term = resale_next_term(reservation, now)
    if term is None:
        raise CatalogError(
            CatalogErrorCode.RESERVATION_ALREADY_STARTED,
            "Only reservations starting more than a day from now can be listed for their whole "
            "term; once it has started (or starts within a day) a listing sells the hours from "
            "a day's start (00:00 UTC) more than a day ahead on, and this block's term ends "
            f"{reservation.ends_at:%Y-%m-%d %H:%M} UTC, before any day it could still be "
            "listed from.",
            field="reservation",
        )
    starts_on = term.starts_at.astimezone(UTC).date()
    earlier = Instrument.objects.filter(reservation=reservation, delivery_start=starts_on).first()
    if earlier is not None:
        # Its trading ended early (staff expired it): the same hours are not listed twice.
        raise CatalogError(
            CatalogErrorCode.RESERVATION_ALREADY_LISTED,
            f"This reservation's hours from {term.starts_at:%Y-%m-%d %H:%M} UTC were listed as "
            f"{earlier.symbol}; it can be listed again from a later day.",
            field="reservation",
        )
    lot = lot_gpus or reservation.contiguous_block_gpus
    if lot < 1 or reservation.gpus % lot:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            "The lot must divide the block's GPUs.",
            field="lot_gpus",
        )
    hours = int((reservation.ends_at - term.starts_at).total_seconds() // 3600)
    if hours < 1:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            "The reservation is shorter than an hour.",
            field="reservation",
        )
    ends_on = reservation.ends_at.astimezone(UTC).date()
    if datetime.combine(ends_on, time.min, tzinfo=UTC) < reservation.ends_at:
        ends_on += timedelta(days=1)
    instrument = Instrument.objects.create(
        symbol=resale_symbol(
            reservation.sku.code,
            reservation.region.code,
            reservation.pk,
            from_day=None if term.whole_term else starts_on,
        ),
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


def _future_pairs() -> list[tuple[Sku, Region]]:
    """Every SKU x region with a future listed, in a fixed order (by SKU, then region id)."""
    pairs = (
        Instrument.objects.filter(kind=Instrument.Kind.FUTURE)
        .values_list("sku_id", "region_id")
        .distinct()
        .order_by("sku_id", "region_id")
    )
    return [
        (Sku.objects.get(pk=sku_id), Region.objects.get(pk=region_id))
        for sku_id, region_id in pairs
    ]


def futures_list_upcoming(
    *, months_ahead: int, today: date | None = None, actor: User | None = None
) -> list[Instrument]:
    """Keep every listed SKU x region strip ``months_ahead`` months deep (run by Celery beat).

    Each strip continues on its own terms: those of the pair's latest listed future (the
    furthest delivery month), its settlement, tick, lot, price limit and own position limit,
    so a physically settled strip listed by staff stays physical as months roll.

    Returns the whole strip from next month on, whether listed now or before.
    """
    CATALOG_STAFF.check(actor, LISTING_ACTION)
    today = today or timezone.now().date()
    first_month = calendar.add_months(calendar.month_start(today), 1)
    listed = []
    for sku, region in _future_pairs():
        listed += futures_list_strip(
            sku=sku,
            region=region,
            first_month=first_month,
            months=months_ahead,
            spec=_strip_terms(sku, region),
            actor=actor,
        )
    return listed


def _strip_terms(sku: Sku, region: Region) -> StripSpec:
    """The terms of the pair's latest listed future, which its strip continues on."""
    latest = (
        Instrument.objects.filter(kind=Instrument.Kind.FUTURE, sku=sku, region=region)
        .order_by("-delivery_start")
        .first()
    )
    assert latest is not None, "the roll continues the pairs that have a future listed"
    return StripSpec.of(latest)


def strike_step_from_price(
    reference_price: Decimal, *, fraction: Decimal, tick_size: Decimal = OPTION_TICK_SIZE
) -> Decimal:
    """``fraction`` of the reference price, rounded to two significant figures on the tick.

    At least one tick, so that a cheap future still gets distinct strikes. For example
    2.45 x 0.05 = 0.1225 gives 0.12; 0.01 x 0.05 = 0.0005 gives the tick, 0.001.
    """
    assert reference_price > 0 and fraction > 0 and tick_size > 0
    raw_step = reference_price * fraction
    # adjusted() is the exponent of the leading digit: quantizing one place below it keeps two.
    two_figures = raw_step.quantize(Decimal(1).scaleb(raw_step.adjusted() - 1), ROUND_HALF_UP)
    on_tick = (two_figures / tick_size).to_integral_value(ROUND_HALF_UP) * tick_size
    return max(on_tick, tick_size)


def _strike_step_listed(future: Instrument) -> Decimal | None:
    """The spacing of the strikes listed on ``future``: the smallest gap between two of them.

    None when fewer than two distinct strikes are listed, so there is no grid to follow yet.
    """
    # Every option has a strike (the instrument_option_has_underlying_and_strike constraint).
    strikes = cast(
        list[Decimal],
        list(future.options.order_by("strike").values_list("strike", flat=True).distinct()),
    )
    return min((high - low for low, high in pairwise(strikes)), default=None)


def _futures_for_options(sku: Sku, region: Region, moment: datetime) -> list[Instrument]:
    """The nearest ``EXCHANGE_OPTION_MONTHS`` futures of a pair whose options can still trade
    at ``moment``.

    From next month's delivery on, not expired, and with the options' trading (until the close
    of their expiry, two business days before the future's last trading day) not yet ended: at
    a month's end next month's future still trades for a day or two, but options listed on it
    would be born expired. Until 2026-12-07 the options' expiry day counted whole, so a roll
    after its close listed strikes that could never trade.
    """
    today = moment.date()
    first_month = calendar.add_months(calendar.month_start(today), 1)
    candidates = (
        Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE,
            sku=sku,
            region=region,
            delivery_start__gte=first_month,
            last_trading_day__gte=today,
        )
        .exclude(status=Instrument.Status.EXPIRED)
        .order_by("delivery_start")[:LISTED_MONTHS_MAX]
    )
    tradable = [
        future
        for future in candidates
        if moment < calendar.trading_ends_at(calendar.option_expiry(future.last_trading_day))
    ]
    return tradable[: settings.EXCHANGE_OPTION_MONTHS]


def _options_roll(future: Instrument, actor: User | None) -> list[Instrument]:
    """List the option strikes around ``future``'s reference price; return the new ones."""
    reference = mark_price(future)
    if reference is None or reference <= 0:
        return []  # No price to centre strikes on yet: the future has not settled or traded.
    strike_step = _strike_step_listed(future) or strike_step_from_price(
        reference, fraction=settings.EXCHANGE_STRIKE_STEP_FRACTION
    )
    listed_before = set(future.options.values_list("pk", flat=True))
    chain = options_list_chain(
        future=future,
        reference_price=reference,
        strike_step=strike_step,
        strikes_each_side=settings.EXCHANGE_STRIKES_EACH_SIDE,
        actor=actor,
    )
    return [option for option in chain if option.pk not in listed_before]


def _roll_day_check(day: date, today: date) -> None:
    latest = calendar.add_months(calendar.month_start(today), LISTED_MONTHS_MAX)
    if day < today:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"A roll as of {day}, before today ({today}), would list months that have stopped "
            "trading: roll as of today or a day to come.",
            field="today",
        )
    if day >= latest:
        raise CatalogError(
            CatalogErrorCode.INVALID_LISTING,
            f"A roll as of {day} is {LISTED_MONTHS_MAX} months or more ahead of today "
            f"({today}), past the deepest strip: roll as of a day before {latest}.",
            field="today",
        )


@transaction.atomic
def listings_roll(*, today: date | None = None, actor: User | None = None) -> list[Instrument]:
    """List what the months rolling forward call for; return the new instruments in order.

    The rule, for every SKU x region with a future listed:

    - futures are listed ``EXCHANGE_LISTED_MONTHS`` consecutive months deep from next month on
      (``futures_list_upcoming``);
    - the nearest ``EXCHANGE_OPTION_MONTHS`` of those futures that still trade (and whose
      options have not expired) get calls and puts at ``EXCHANGE_STRIKES_EACH_SIDE`` strikes
      each side of the strike nearest the future's reference price: its latest settlement
      price, else its last trade price; a future with neither gets no options yet;
    - strikes are multiples of a step. A future without a grid yet gets
      ``EXCHANGE_STRIKE_STEP_FRACTION`` of its reference price, rounded to two significant
      figures on the option tick (``strike_step_from_price``). A future with strikes keeps
      their spacing, so as its price moves new strikes extend the same grid.

    Instruments already listed are left as they are, so a second run the same day lists
    nothing; nothing is ever delisted here (expiry is the risk cycle's).

    ``today``: from today (UTC) to ``LISTED_MONTHS_MAX`` months on, else
    ``CATALOG_INVALID_LISTING`` before anything is written. A roll as of a past day would list
    months whose futures had stopped trading by then, and options on them, as active
    instruments that could never trade; one further ahead than the deepest strip would list
    months nobody trades yet (and from year 9999 on, months the calendar cannot hold).
    """
    CATALOG_STAFF.check(actor, LISTING_ACTION)
    now = timezone.now()
    if today is not None:
        _roll_day_check(today, now.astimezone(UTC).date())
    # The roll's moment: now, or the start of the day it is asked to roll for.
    moment = now if today is None else datetime.combine(today, time.min, tzinfo=UTC)
    today = moment.date()
    first_month = calendar.add_months(calendar.month_start(today), 1)
    # futures_list_upcoming returns the whole strip; what existed before is not new. Only
    # futures from next month on can be in it, which bounds the snapshot.
    futures_before = set(
        Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE, delivery_start__gte=first_month
        ).values_list("pk", flat=True)
    )
    strip = futures_list_upcoming(
        months_ahead=settings.EXCHANGE_LISTED_MONTHS, today=today, actor=actor
    )
    listed = [future for future in strip if future.pk not in futures_before]
    for sku, region in _future_pairs():
        for future in _futures_for_options(sku, region, moment):
            listed += _options_roll(future, actor)
    return listed
