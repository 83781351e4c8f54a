"""Reading the notices an organization was sent."""

from django.db.models import QuerySet

from exchange.models import Notice


def notices_of_organizations(organization_ids: list[int]) -> QuerySet[Notice]:
    """The notices of any of the organizations, newest first, with their accounts and
    organizations (the portfolio page's, for every organization the member belongs to)."""
    return (
        Notice.objects.filter(organization_id__in=organization_ids)
        .select_related("account", "organization")
        .order_by("-id")
    )


def notices_of(organization_id: int) -> QuerySet[Notice]:
    """The organization's notices, newest first, with their accounts."""
    return (
        Notice.objects.filter(organization_id=organization_id)
        .select_related("account")
        .order_by("-id")
    )
