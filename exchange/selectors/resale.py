"""Resale listings as buyers browse them: reserved blocks listed by their holders, filtered
by what a buyer of capacity asks for."""

from dataclasses import dataclass
from datetime import date

from django.utils import timezone

from exchange.models import Instrument, Region
from exchange.selectors.market import Quote, quotes_for


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
    """Listings still trading that meet every criterion, soonest term first."""
    listings = Instrument.objects.filter(
        kind=Instrument.Kind.RESALE,
        status=Instrument.Status.ACTIVE,
        last_trading_day__gte=timezone.now().date(),
    ).select_related("sku", "region", "reservation")
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
    found = list(listings.order_by("delivery_start", "symbol"))
    if criteria.compliance:
        # Tags are a JSON list, which SQLite cannot search inside: filtered here, on the few
        # listings left.
        found = [i for i in found if criteria.compliance in (i.region.compliance or [])]
    quotes = quotes_for(found)
    return [Listing(instrument, quotes[instrument.pk]) for instrument in found]


def compliance_tags() -> list[str]:
    """Every compliance tag a region carries, sorted."""
    tags = Region.objects.values_list("compliance", flat=True)
    return sorted({tag for region_tags in tags for tag in region_tags or []})
