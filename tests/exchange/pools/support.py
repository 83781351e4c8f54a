"""Organizations the pool tests (services, pages, API) are made of."""

from decimal import Decimal

from django.contrib.auth.models import User

from exchange.models import Organization, Pool
from exchange.services.funding import deposit_test_funds
from exchange.services.participants import account_main, member_add, organization_create
from exchange.services.pools import pool_create, pool_fund
from tests.exchange.conftest import _account

SPONSOR_FUNDS = Decimal("1000000")


def sponsor_organization(slug: str = "foundry", name: str = "Foundry Ventures") -> Organization:
    """A portfolio program sponsor with $1M in its main account."""
    organization = organization_create(slug=slug, name=name, kind=Organization.Kind.SPONSOR)
    deposit_test_funds(account=account_main(organization), amount=SPONSOR_FUNDS, actor=None)
    return organization


def startup(slug: str, funds: str) -> Organization:
    """A startup whose main account holds ``funds`` USD of test funds ("0": none)."""
    account = _account(slug, Organization.Kind.STARTUP, funded=False)
    if Decimal(funds):
        deposit_test_funds(account=account, amount=Decimal(funds), actor=None)
    return account.organization


def sponsor_pool() -> tuple[Organization, User, Pool]:
    """A sponsor, its member sam, and its pool "Seed GPUs" (10% subsidy, a 20,000 USD credit
    line) funded with 500,000 USD: the pool the pool fixtures build, for tests elsewhere."""
    sponsor = sponsor_organization()
    sam = member_add(
        organization=sponsor, username="sam", email="sam@foundry.example", password="x-2026"
    ).user
    pool = pool_create(
        sponsor=sponsor,
        name="Seed GPUs",
        subsidy_percent=Decimal("10"),
        credit_line=Decimal("20000"),
        actor=sam,
    )
    pool_fund(pool=pool, amount=Decimal("500000"), actor=sam)
    return sponsor, sam, pool
