"""The ledger accounts of a trading account: the cash account named on the trading account."""

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from django.db import transaction

from exchange.models import Account, Organization
from exchange.services.collateral import needs_for
from exchange.services.ledger_accounts import cash_account, cash_account_code
from exchange.services.participants import account_main, organization_create
from ledger.models import Account as LedgerAccount

pytestmark = pytest.mark.django_db


def test_opening_the_cash_account_names_it_on_the_trading_account(
    django_capture_on_commit_callbacks,
):
    account = account_main(organization_create(slug="nova", name="Nova", kind="startup"))
    assert account.cash_ledger_account_id is None

    with django_capture_on_commit_callbacks(execute=True):  # Named on the instance at commit.
        opened = cash_account(account)

    assert opened.code == cash_account_code(account)
    assert account.cash_ledger_account_id == opened.pk
    assert Account.objects.get(pk=account.pk).cash_ledger_account_id == opened.pk
    assert cash_account(account).pk == opened.pk  # Found, not opened again.
    assert LedgerAccount.objects.filter(code=opened.code).count() == 1


def test_a_cash_account_opened_in_a_transaction_that_rolls_back_is_not_named():
    """The instance may outlive the transaction (the API keeps callers' accounts): it must
    not name a ledger account that the rollback took away."""
    account = account_main(organization_create(slug="nova", name="Nova", kind="startup"))

    with pytest.raises(RuntimeError), transaction.atomic():
        cash_account(account)
        raise RuntimeError("refused")

    assert account.cash_ledger_account_id is None
    assert Account.objects.get(pk=account.pk).cash_ledger_account_id is None
    assert not LedgerAccount.objects.filter(code=cash_account_code(account)).exists()


def test_an_order_names_its_cash_account_without_looking_it_up(
    buyer, future, django_assert_num_queries
):
    account = Account.objects.get(pk=buyer.pk)  # As the API reads the caller's account.
    assert account.cash_ledger_account_id is not None

    with django_assert_num_queries(0):
        needs = needs_for(
            account, future, "buy", Decimal("2.45"), 2, 1_000_000, Decimal("0"), Decimal("0")
        )

    assert [need.account.pk for need in needs] == [account.cash_ledger_account_id]
    assert needs[0].amount == 2 * 1_000_000


def test_the_migration_names_the_cash_accounts_that_exist(buyer):
    migration = importlib.import_module("exchange.migrations.0010_account_cash_ledger_account")
    unfunded = account_main(
        organization_create(slug="cirrus", name="Cirrus", kind=Organization.Kind.PROVIDER)
    )
    cash = LedgerAccount.objects.get(code=cash_account_code(buyer))
    Account.objects.update(cash_ledger_account=None)

    migration.link_cash_accounts(apps, None)

    assert Account.objects.get(pk=buyer.pk).cash_ledger_account_id == cash.pk
    assert Account.objects.get(pk=unfunded.pk).cash_ledger_account_id is None
