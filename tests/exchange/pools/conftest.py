"""A sponsor with a funded pool and three member startups, on a two-month futures strip."""

from decimal import Decimal

import pytest

from exchange.models import Organization
from exchange.services.participants import member_add
from exchange.services.pools import pool_create, pool_fund, pool_member_add
from tests.exchange.pools.support import sponsor_organization, startup

POOL_FUNDS = Decimal("500000")


@pytest.fixture
def sponsor(db) -> Organization:
    return sponsor_organization()


@pytest.fixture
def sponsor_user(sponsor):
    return member_add(
        organization=sponsor, username="sam", email="sam@foundry.example", password="x-2026"
    ).user


@pytest.fixture
def pool(sponsor, sponsor_user):
    pool = pool_create(
        sponsor=sponsor,
        name="Seed GPUs",
        subsidy_percent=Decimal("10"),
        credit_line=Decimal("20000"),
        actor=sponsor_user,
    )
    pool_fund(pool=pool, amount=POOL_FUNDS, actor=sponsor_user)
    return pool


@pytest.fixture
def members(pool, sponsor_user):
    """Three startups: two funded, one with no cash at all (it relies on the credit line)."""
    return [
        pool_member_add(
            pool=pool, organization=startup(slug, funds), priority=p, actor=sponsor_user
        )
        for slug, funds, p in (("ada", "200000", 10), ("bolt", "200000", 20), ("cirrus", "0", 30))
    ]
