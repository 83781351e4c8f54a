"""Reserved capacity as the web pages show it: an organization's blocks with their GPU-hours,
and resale listings as buyers browse them, filtered by what a buyer of capacity asks for."""

from dataclasses import dataclass
from datetime import date

from django.utils import timezone

from exchange.models import Instrument, Organization, Region, ReservedCapacity
from exchange.selectors.capacity import capacity_of, gpus_held, latest_listing
from exchange.selectors.market import Quote, quotes_for
from exchange.services.capacity import issued_from
from exchange.services.listing import ResaleTerm, listing_trades, resale_next_term

SECONDS_PER_HOUR = 3600
# An organization with more blocks than this sees the soonest ones; the API pages through all.
BLOCK_ROWS_MAX = 500
LISTING_ROWS_MAX = 500


@dataclass(frozen=True)
class Block:
    reservation: ReservedCapacity
    started: bool  # The term has begun.
    # Its latest resale listing (they follow one another), None if never listed.
    listing: Instrument | None
    listing_trading: bool  # That listing still trades: the block cannot be listed again yet.
    # What a listing made now would sell (``services.listing.resale_next_term``): None when
    # nothing of the term is left to list.
    next_term: ResaleTerm | None
    # GPUs of the block the organization looking holds now: registered, less sold, plus bought
    # on its resale listings (``capacity.gpus_held``).
    held_gpus: int
    organization_id: int  # The organization looking.

    @property
    def may_list(self) -> bool:
        """Whether the organization looking may list the block (``capacity.capacity_held``):
        its registered holder, or one holding GPUs of it."""
        return self.reservation.holder_id == self.organization_id or self.held_gpus > 0

    @property
    def term_hours(self) -> int:
        """Whole hours of the term (registration puts both ends on whole hours)."""
        term = self.reservation.ends_at - self.reservation.starts_at
        return int(term.total_seconds()) // SECONDS_PER_HOUR

    @property
    def hours(self) -> int:
        """Hours of the term whose GPU-hours registration issued: all of them, or for a block
        registered during its term, those from the hour it was registered in on (the past ones
        can be neither used nor delivered)."""
        reservation = self.reservation
        issued = reservation.ends_at - issued_from(reservation.starts_at, reservation.created_at)
        return int(issued.total_seconds()) // SECONDS_PER_HOUR

    @property
    def gpu_hours(self) -> int:
        """GPU-hours of the block: what registration issued to its holder, GPUs x ``hours``."""
        return self.hours * self.reservation.gpus


def blocks_of(organization: Organization) -> list[Block]:
    """The blocks ``organization`` provides, is the registered holder of or holds GPUs of
    (``capacity_of``), soonest term first, at most ``BLOCK_ROWS_MAX``, each with what
    ``organization`` holds of it now."""
    now = timezone.now()
    blocks = list(capacity_of(organization).order_by("starts_at", "pk")[:BLOCK_ROWS_MAX])
    held = gpus_held(organization.pk, blocks)
    rows = []
    for reservation in blocks:
        listing = latest_listing(reservation)
        rows.append(
            Block(
                reservation,
                started=reservation.starts_at <= now,
                listing=listing,
                listing_trading=listing is not None and listing_trades(listing, now),
                next_term=resale_next_term(reservation, now),
                held_gpus=held[reservation.pk],
                organization_id=organization.pk,
            )
        )
    return rows


@dataclass(frozen=True)
class ListingFilter:
    sku: str | None = None
    region: str | None = None
    available_from: date | None = None  # The term starts on or after this day.
    available_until: date | None = None  # The term ends on or before this day.
    interconnect: str | None = None
    block_gpus_min: int | None = None  # Contiguous block size at least this.
    compliance: str | None = None  # A tag the region must carry (soc2, hipaa, ...).


@dataclass(frozen=True)
class Listing:
    instrument: Instrument
    quote: Quote


def resale_listings(criteria: ListingFilter) -> list[Listing]:
    """Listings still trading that meet every criterion, soonest term first, at most
    ``LISTING_ROWS_MAX``."""
    listings = (
        Instrument.objects.trading_at(timezone.now())
        .filter(kind=Instrument.Kind.RESALE, status=Instrument.Status.ACTIVE)
        .select_related("sku", "region", "reservation")
    )
    if criteria.sku:
        listings = listings.filter(sku__code=criteria.sku)
    if criteria.region:
        listings = listings.filter(region__code=criteria.region)
    if criteria.available_from:
        listings = listings.filter(delivery_start__gte=criteria.available_from)
    if criteria.available_until:
        listings = listings.filter(delivery_end__lte=criteria.available_until)
    if criteria.interconnect:
        listings = listings.filter(reservation__interconnect=criteria.interconnect)
    if criteria.block_gpus_min:
        listings = listings.filter(reservation__contiguous_block_gpus__gte=criteria.block_gpus_min)
    if criteria.compliance:
        # Tags are a JSON list, which SQLite cannot search inside; regions are few, so the
        # regions carrying the tag are picked here and the listings filtered by them.
        tagged = [
            region.pk
            for region in Region.objects.only("compliance")
            if criteria.compliance in (region.compliance or [])
        ]
        listings = listings.filter(region__in=tagged)
    found = list(listings.order_by("delivery_start", "symbol")[:LISTING_ROWS_MAX])
    quotes = quotes_for(found)
    return [Listing(instrument, quotes[instrument.pk]) for instrument in found]


def compliance_tags() -> list[str]:
    """Every compliance tag a region carries, sorted."""
    tags = Region.objects.values_list("compliance", flat=True)
    return sorted({tag for region_tags in tags for tag in region_tags or []})
