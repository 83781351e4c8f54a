"""The demo accounts are funded once with test funds."""

from decimal import Decimal

import pytest

from exchange.demo import DEMO_FUNDING, load_funding, load_participants
from exchange.models import Deposit
from exchange.selectors.funding import cash_balance

pytestmark = pytest.mark.django_db


def test_every_demo_trading_account_is_funded_once(test_funds_mode):
    accounts = load_participants()

    assert load_funding(accounts) == len(DEMO_FUNDING)
    assert load_funding(accounts) == 0

    for slug, amount in DEMO_FUNDING.items():
        assert cash_balance(accounts[slug]).available == amount
    assert cash_balance(accounts["gpux"]).posted == Decimal(0)
    assert Deposit.objects.count() == len(DEMO_FUNDING)
    assert set(Deposit.objects.values_list("method", flat=True)) == {"test_funds"}


def test_the_demo_is_not_funded_with_stripe_keys_set(fake_stripe):
    accounts = load_participants()

    assert load_funding(accounts) == 0
    assert not Deposit.objects.exists()
