"""Reads of reserved capacity blocks, as their provider or holder sees them."""

from django.db.models import Q, QuerySet

from exchange.models import Organization, ReservedCapacity


def capacity_of(organization: Organization) -> QuerySet[ReservedCapacity]:
    """The blocks ``organization`` provides or holds, with their resale listing if any."""
    return ReservedCapacity.objects.filter(
        Q(provider=organization) | Q(holder=organization)
    ).select_related("provider", "holder", "sku", "region", "instrument")


def capacity_held(organization: Organization, capacity_id: int) -> ReservedCapacity | None:
    """Block ``capacity_id`` if ``organization`` holds it; None otherwise, whoever holds it."""
    return (
        ReservedCapacity.objects.filter(holder=organization, pk=capacity_id)
        .select_related("sku", "region")
        .first()
    )
