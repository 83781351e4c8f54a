"""Concurrent webhook deliveries and withdrawal requests (PostgreSQL only: real row locks)."""

from decimal import Decimal

import pytest
from django.test import Client

from exchange.errors import FundingError, FundingErrorCode
from exchange.models import Deposit, StripeEvent, Withdrawal
from exchange.selectors.funding import cash_balance
from exchange.services.funding import (
    deposit_start_checkout,
    deposit_test_funds,
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_request,
)
from ledger.models import Entry
from tests.exchange.funding.conftest import deliver, event, session_paid
from tests.exchange.matcher.test_concurrency import run_threads

THREADS = 4
AMOUNT = Decimal("700.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_credit_once(postgres_only, fake_stripe, buyer):
    # given
    deposit, _url = deposit_start_checkout(
        account=buyer, amount=AMOUNT, actor=None, success_url="x", cancel_url="y"
    )
    same = event("evt_same", "checkout.session.completed", session_paid(deposit))
    statuses: list[int] = []

    # when half the threads deliver one event and half deliver distinct events, all at once
    def post(index: int) -> None:
        body = (
            same
            if index % 2
            else event(f"evt_{index}", "checkout.session.completed", session_paid(deposit))
        )
        statuses.append(deliver(Client(), body).status_code)

    errors = run_threads(post, THREADS)

    # then
    assert errors == []
    assert statuses == [200] * THREADS
    assert StripeEvent.objects.count() == 1 + THREADS // 2
    assert Entry.objects.count() == 1
    assert cash_balance(buyer).posted == AMOUNT


@pytest.mark.django_db(transaction=True)
def test_concurrent_withdrawals_never_overdraw(postgres_only, test_funds_mode, buyer):
    # given funds for two of the four requests
    deposit_test_funds(account=buyer, amount=AMOUNT * 2, actor=None)
    refusals: list[str] = []

    def request(index: int) -> None:
        try:
            withdrawal_request(account=buyer, amount=AMOUNT, actor=None)
        except FundingError as error:
            refusals.append(error.code)

    # when
    errors = run_threads(request, THREADS)

    # then
    assert errors == []
    assert refusals == [FundingErrorCode.INSUFFICIENT_FUNDS] * (THREADS - 2)
    assert Withdrawal.objects.count() == 2
    balance = cash_balance(buyer)
    assert (balance.pending, balance.available) == (AMOUNT * 2, 0)


@pytest.mark.django_db(transaction=True)
def test_a_cancel_and_an_approval_at_once_never_both_go_through(
    postgres_only, test_funds_mode, buyer, staff
):
    # given a withdrawal waiting for review
    deposit_test_funds(account=buyer, amount=AMOUNT, actor=None)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=None)
    refusals: list[str] = []

    # when the customer cancels it while staff approve it
    def act(index: int) -> None:
        try:
            if index % 2:
                withdrawal_cancel(account=buyer, withdrawal_id=withdrawal.pk, actor=None)
            else:
                withdrawal_approve(withdrawal=withdrawal, actor=staff)
        except FundingError as error:
            refusals.append(error.code)

    errors = run_threads(act, 2)

    # then exactly one wins, and the money says which
    assert errors == []
    assert refusals == [FundingErrorCode.INVALID_STATUS_CHANGE]
    withdrawal.refresh_from_db()
    balance = cash_balance(buyer)
    if withdrawal.status == Withdrawal.Status.PAID:
        assert (balance.posted, balance.pending) == (0, 0)
    else:
        assert withdrawal.status == Withdrawal.Status.CANCELLED
        assert (balance.posted, balance.pending, balance.available) == (AMOUNT, 0, AMOUNT)


@pytest.mark.django_db(transaction=True)
def test_a_refund_racing_the_approval_of_its_withdrawal_never_pays_twice(
    postgres_only, fake_stripe, buyer, staff
):
    # given a credited deposit whose cash is held for a withdrawal waiting for review
    deposit, _url = deposit_start_checkout(
        account=buyer, amount=AMOUNT, actor=None, success_url="x", cancel_url="y"
    )
    deliver(Client(), event("evt_paid", "checkout.session.completed", session_paid(deposit)))
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=None)
    refund = event(
        "evt_refund",
        "charge.refunded",
        {"id": "ch_1", "payment_intent": "pi_test_1", "refunded": True},
    )
    statuses: list[int] = []

    # when Stripe reports the refund while staff approve the withdrawal
    def act(index: int) -> None:
        if index % 2:
            statuses.append(deliver(Client(), refund).status_code)
            return
        try:
            withdrawal_approve(withdrawal=withdrawal, actor=staff)
        except FundingError as error:
            assert error.code == FundingErrorCode.INVALID_STATUS_CHANGE

    errors = run_threads(act, 2)

    # then no deadlock, and the money went out once: paid out, or taken back by the refund
    assert errors == []
    assert statuses == [200]
    withdrawal.refresh_from_db()
    deposit.refresh_from_db()
    assert (withdrawal.status, deposit.status) in {
        (Withdrawal.Status.PAID, Deposit.Status.CREDITED),
        (Withdrawal.Status.FAILED, Deposit.Status.REFUNDED),
    }
    assert len(fake_stripe.payouts) == (withdrawal.status == Withdrawal.Status.PAID)
    balance = cash_balance(buyer)
    assert (balance.posted, balance.pending) == (0, 0)
