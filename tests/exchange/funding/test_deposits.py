"""Deposits: test funds credited at once; Stripe Checkout sessions opened on the fake Stripe."""

from decimal import Decimal

import pytest

from exchange.errors import FundingError, FundingErrorCode
from exchange.models import AuditEntry, Deposit
from exchange.selectors.funding import cash_balance
from exchange.services import ledger_accounts
from exchange.services.funding import (
    CHECKOUT_AMOUNT_MAX,
    TEST_FUNDS_AMOUNT_MAX,
    deposit_start_checkout,
    deposit_test_funds,
)
from ledger.models import Entry
from tests.exchange.funding.conftest import funding_rows

pytestmark = pytest.mark.django_db

MALFORMED_AMOUNTS = [
    (Decimal("0"), FundingErrorCode.AMOUNT_INVALID),
    (Decimal("-10.00"), FundingErrorCode.AMOUNT_INVALID),
    (Decimal("10.001"), FundingErrorCode.AMOUNT_INVALID),
    (Decimal("NaN"), FundingErrorCode.AMOUNT_INVALID),
    (Decimal("Infinity"), FundingErrorCode.AMOUNT_INVALID),
    (10, FundingErrorCode.AMOUNT_INVALID),
    # More digits than the decimal context holds (quantizing it raised InvalidOperation).
    (Decimal("99999999999999999999999999999"), FundingErrorCode.AMOUNT_TOO_LARGE),
]


def test_a_test_funds_deposit_credits_the_ledger(test_funds_mode, buyer, customer):
    # when
    deposit = deposit_test_funds(account=buyer, amount=Decimal("250000.00"), actor=customer)

    # then
    assert deposit.status == Deposit.Status.CREDITED
    assert deposit.method == Deposit.Method.TEST_FUNDS
    balance = cash_balance(buyer)
    assert (balance.posted, balance.pending, balance.available) == (
        Decimal("250000"),
        Decimal("0"),
        Decimal("250000"),
    )
    entry = Entry.objects.get(pk=deposit.ledger_entry_id)
    postings = {posting.account_id: posting.amount for posting in entry.postings.all()}
    assert postings == {
        ledger_accounts.test_funds_account().pk: 250_000_000_000,
        ledger_accounts.cash_account(buyer).pk: -250_000_000_000,
    }
    audit = AuditEntry.objects.get(action="deposit.test_funds")
    assert audit.actor == customer and audit.target_id == str(deposit.pk)


def test_the_balance_of_an_account_never_funded_is_zero(buyer):
    assert cash_balance(buyer).available == Decimal(0)


@pytest.mark.parametrize(("amount", "code"), MALFORMED_AMOUNTS)
def test_a_malformed_test_funds_amount_is_refused_and_writes_nothing(
    test_funds_mode, buyer, amount, code
):
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        deposit_test_funds(account=buyer, amount=amount, actor=None)

    assert refused.value.code == code
    assert funding_rows() == before


def test_a_test_funds_amount_over_the_maximum_is_refused(test_funds_mode, buyer):
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        deposit_test_funds(
            account=buyer, amount=TEST_FUNDS_AMOUNT_MAX + Decimal("0.01"), actor=None
        )

    assert refused.value.code == FundingErrorCode.AMOUNT_TOO_LARGE
    assert funding_rows() == before


def test_test_funds_are_refused_when_stripe_is_configured(fake_stripe, buyer):
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        deposit_test_funds(account=buyer, amount=Decimal("100.00"), actor=None)

    assert refused.value.code == FundingErrorCode.TEST_FUNDS_DISABLED
    assert funding_rows() == before


def test_checkout_opens_a_stripe_session_and_credits_nothing_yet(fake_stripe, buyer, customer):
    # when
    deposit, url = deposit_start_checkout(
        account=buyer,
        amount=Decimal("1234.56"),
        actor=customer,
        success_url="https://exchange.example/funding/done",
        cancel_url="https://exchange.example/funding",
    )

    # then Stripe was asked for a session of the amount in cents
    (request,) = fake_stripe.requests
    assert request["path"] == "/v1/checkout/sessions"
    assert request["form"]["line_items[0][price_data][unit_amount]"] == "123456"
    assert request["form"]["line_items[0][price_data][currency]"] == "usd"
    assert request["form"]["client_reference_id"] == str(deposit.pk)
    assert request["idempotency_key"] == f"deposit-{deposit.pk}-checkout"
    assert request["authorization"] == "Bearer sk_test_fake_key"
    # and the deposit waits for the webhook
    assert deposit.status == Deposit.Status.PENDING
    assert deposit.stripe_checkout_session_id.startswith("cs_test_")
    assert url == f"https://checkout.stripe.test/c/pay/{deposit.stripe_checkout_session_id}"
    assert cash_balance(buyer).posted == Decimal(0)
    assert not Entry.objects.exists()


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        *MALFORMED_AMOUNTS,
        (CHECKOUT_AMOUNT_MAX + Decimal("0.01"), FundingErrorCode.AMOUNT_TOO_LARGE),
        # Below Stripe's minimum charge: Stripe would refuse the session after our row.
        (Decimal("0.49"), FundingErrorCode.AMOUNT_TOO_SMALL),
        (Decimal("0.01"), FundingErrorCode.AMOUNT_TOO_SMALL),
    ],
)
def test_a_bad_checkout_amount_is_refused_before_stripe_and_writes_nothing(
    fake_stripe, buyer, amount, code
):
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        deposit_start_checkout(
            account=buyer, amount=amount, actor=None, success_url="x", cancel_url="y"
        )

    assert refused.value.code == code
    assert funding_rows() == before
    assert fake_stripe.requests == []


def test_checkout_needs_stripe_keys(test_funds_mode, buyer):
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        deposit_start_checkout(
            account=buyer, amount=Decimal("10.00"), actor=None, success_url="x", cancel_url="y"
        )

    assert refused.value.code == FundingErrorCode.STRIPE_NOT_CONFIGURED
    assert funding_rows() == before


def test_a_checkout_of_stripes_minimum_charge_opens_a_session(fake_stripe, buyer):
    deposit, url = deposit_start_checkout(
        account=buyer, amount=Decimal("0.50"), actor=None, success_url="x", cancel_url="y"
    )

    assert deposit.status == Deposit.Status.PENDING
    assert url.startswith("https://checkout.stripe.test/")
    assert fake_stripe.requests[0]["form"]["line_items[0][price_data][unit_amount]"] == "50"
