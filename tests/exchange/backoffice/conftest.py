"""Staff users for the back-office tests: one per role, one with no role, a superuser, and a
member of an organization who is not staff."""

import pytest
from django.contrib.auth import get_user_model

from exchange.backoffice.roles import Role
from exchange.models import Organization
from exchange.services.participants import member_add, organization_create
from exchange.services.staff import staff_roles_grant


def _staff(username: str, *roles: Role):
    user = get_user_model().objects.create_user(username=username, password="x-2026", is_staff=True)
    if roles:
        staff_roles_grant(user=user, roles=roles, actor=None)
    return user


@pytest.fixture
def operations(db):
    return _staff("olivia", Role.OPERATIONS)


@pytest.fixture
def risk(db):
    return _staff("ravi", Role.RISK)


@pytest.fixture
def finance(db):
    return _staff("felix", Role.FINANCE)


@pytest.fixture
def roleless(db):
    """Staff (can sign in to the admin) without any back-office role."""
    return _staff("nobody")


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@exchange.example", "x-2026")


@pytest.fixture
def member(db):
    """A trader of a customer organization: signed in, not staff."""
    organization = organization_create(
        slug="outsider", name="Outsider", kind=Organization.Kind.STARTUP
    )
    return member_add(
        organization=organization, username="trader", email="t@o.example", password="x-2026"
    ).user


@pytest.fixture
def users(operations, risk, finance, roleless, superuser, member):
    return {
        "operations": operations,
        "risk": risk,
        "finance": finance,
        "roleless": roleless,
        "superuser": superuser,
        "member": member,
    }
