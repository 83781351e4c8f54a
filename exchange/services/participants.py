"""Organizations, their members and their trading accounts."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from exchange.models import Account, Membership, Organization
from exchange.services.audit import audit_record


@transaction.atomic
def organization_create(
    *, slug: str, name: str, kind: str, actor: AbstractBaseUser | None = None
) -> Organization:
    """Create an organization with its main trading account."""
    organization = Organization.objects.create(slug=slug, name=name, kind=kind)
    Account.objects.create(organization=organization, name="main")
    audit_record(
        actor=actor,
        action="organization.create",
        target=organization,
        after={"slug": slug, "kind": kind},
    )
    return organization


@transaction.atomic
def member_add(
    *,
    organization: Organization,
    username: str,
    email: str,
    password: str,
    role: str = Membership.Role.TRADER,
    actor: AbstractBaseUser | None = None,
) -> Membership:
    """Create a user and make it a member of ``organization``."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    membership = Membership.objects.create(user=user, organization=organization, role=role)
    audit_record(
        actor=actor,
        action="membership.add",
        target=membership,
        after={"user": username, "role": role},
    )
    return membership


def account_main(organization: Organization) -> Account:
    return Account.objects.get(organization=organization, name="main")
