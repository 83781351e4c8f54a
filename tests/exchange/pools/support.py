"""Organizations the pool tests (services, pages, API) are made of."""

from decimal import Decimal

from exchange.models import Organization
from exchange.services.funding import deposit_test_funds
from exchange.services.participants import account_main, organization_create
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
