import pytest

from ledger.models import Account, Commodity
from tests.ledger import support


@pytest.fixture
def usd(db) -> Commodity:
    return support.commodity(Commodity.Kind.CURRENCY, 2)


@pytest.fixture
def gpuh(db) -> Commodity:
    return support.commodity(Commodity.Kind.ENTITLEMENT, 0)


@pytest.fixture
def bank(usd) -> Account:
    """An unlimited account that funds the others."""
    return support.account(usd)


@pytest.fixture
def alice(usd, bank) -> Account:
    """A cash account credited with 1000."""
    account = support.cash(usd)
    support.move(bank, account, 1000)
    account.refresh_from_db()
    return account


@pytest.fixture
def bob(usd) -> Account:
    return support.cash(usd)
