"""Reads of who belongs where."""

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from exchange.models import Account, Membership


def memberships_of(user: User | AnonymousUser) -> QuerySet[Membership]:
    """The organizations ``user`` belongs to, with the role in each."""
    if isinstance(user, AnonymousUser):
        return Membership.objects.none()
    return (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name")
    )


def accounts_of_organizations(organization_ids: list[int]) -> QuerySet[Account]:
    return (
        Account.objects.filter(organization_id__in=organization_ids)
        .select_related("organization")
        .order_by("id")
    )
