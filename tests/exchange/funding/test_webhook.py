"""The Stripe webhook: signed events through the Django test client, credited exactly once."""

from decimal import Decimal

import pytest

from exchange.errors import FundingError, FundingErrorCode
from exchange.models import AuditEntry, Deposit, MarginCall, Notice, StripeEvent, Withdrawal
from exchange.selectors.funding import cash_balance
from exchange.services.funding import (
    deposit_start_checkout,
    withdrawal_approve,
    withdrawal_request,
)
from ledger.models import Entry
from tests.exchange.funding.conftest import (
    WEBHOOK_SECRET,
    deliver,
    event,
    funding_rows,
    session_paid,
    sign,
)

pytestmark = pytest.mark.django_db

AMOUNT = Decimal("5000.00")


@pytest.fixture
def deposit(fake_stripe, buyer, customer) -> Deposit:
    deposit, _url = deposit_start_checkout(
        account=buyer,
        amount=AMOUNT,
        actor=customer,
        success_url="https://exchange.example/ok",
        cancel_url="https://exchange.example/cancel",
    )
    return deposit


@pytest.fixture
def credited(client, deposit) -> Deposit:
    response = deliver(
        client, event("evt_paid", "checkout.session.completed", session_paid(deposit))
    )
    assert response.status_code == 200
    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.CREDITED
    return deposit


def test_a_deposit_webhook_delivered_twice_credits_once(client, deposit, buyer):
    body = event("evt_1", "checkout.session.completed", session_paid(deposit))

    # when Stripe delivers the same event twice
    first = deliver(client, body)
    second = deliver(client, body)

    # then both are acknowledged, and the account is credited once
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == StripeEvent.Status.PROCESSED
    assert cash_balance(buyer).posted == AMOUNT
    assert StripeEvent.objects.filter(event_id="evt_1").count() == 1
    entry = Entry.objects.get(
        idempotency_key=f"stripe:checkout:{deposit.stripe_checkout_session_id}"
    )
    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.CREDITED
    assert deposit.ledger_entry_id == entry.pk
    assert deposit.stripe_payment_intent_id == "pi_test_1"
    assert AuditEntry.objects.filter(action="deposit.credit").count() == 1
    # and the organization is told once, with the amount
    [told] = Notice.objects.filter(account=buyer)
    assert (told.kind, told.subject) == (
        Notice.Kind.DEPOSIT_CREDITED,
        "Deposit of $5,000.00 credited",
    )


def test_two_events_for_one_session_credit_once(client, deposit, buyer):
    deliver(client, event("evt_a", "checkout.session.completed", session_paid(deposit)))
    response = deliver(
        client, event("evt_b", "checkout.session.async_payment_succeeded", session_paid(deposit))
    )

    assert response.status_code == 200
    assert cash_balance(buyer).posted == AMOUNT
    assert StripeEvent.objects.count() == 2
    assert Entry.objects.count() == 1


def test_an_unpaid_session_is_stored_but_credits_nothing(client, deposit, buyer):
    unpaid = session_paid(deposit, payment_status="unpaid")

    response = deliver(client, event("evt_u", "checkout.session.completed", unpaid))

    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id="evt_u").status == StripeEvent.Status.IGNORED
    assert cash_balance(buyer).posted == 0


@pytest.mark.parametrize(
    "signature",
    [
        "t=1700000000,v1=" + "0" * 64,  # wrong digest
        sign(b"another payload"),  # signed for other content
        "",  # missing
        "garbage",
    ],
    # Named, not shown: the second is signed now, and every worker must collect the same ids.
    ids=["wrong-digest", "other-content", "missing", "garbage"],
)
def test_a_bad_signature_is_refused_and_writes_nothing(client, deposit, buyer, signature):
    body = event("evt_forged", "checkout.session.completed", session_paid(deposit))
    before = funding_rows()

    response = deliver(client, body, signature)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "FUNDING_WEBHOOK_SIGNATURE_INVALID"
    assert funding_rows() == before
    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.PENDING


def test_a_signature_with_another_secret_is_refused(client, deposit):
    body = event("evt_x", "checkout.session.completed", session_paid(deposit))
    before = funding_rows()

    response = deliver(client, body, sign(body, secret=WEBHOOK_SECRET + "-other"))

    assert response.status_code == 400
    assert funding_rows() == before


def test_a_stale_signature_is_refused(client, deposit):
    body = event("evt_old", "checkout.session.completed", session_paid(deposit))

    response = deliver(client, body, sign(body, timestamp=1_000_000_000))

    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_signed_payload_that_is_not_json_is_refused(client, fake_stripe):
    body = b"not json"

    response = deliver(client, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "FUNDING_WEBHOOK_PAYLOAD_INVALID"
    assert not StripeEvent.objects.exists()


def test_a_signed_payload_that_is_not_an_event_is_refused(client, fake_stripe):
    body = b'{"object": "event"}'

    response = deliver(client, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "FUNDING_WEBHOOK_PAYLOAD_INVALID"
    assert not StripeEvent.objects.exists()


def test_the_webhook_accepts_only_post(client, fake_stripe):
    assert client.get("/stripe/webhook/").status_code == 405


def test_the_webhook_is_refused_without_a_secret(client, test_funds_mode):
    body = event("evt_n", "checkout.session.completed", {"id": "cs_1"})

    response = deliver(client, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "FUNDING_WEBHOOK_NOT_CONFIGURED"


def test_an_event_for_an_unknown_session_is_stored_and_acknowledged(client, fake_stripe):
    session = {
        "id": "cs_test_unknown",
        "payment_status": "paid",
        "amount_total": 100,
        "currency": "usd",
        "client_reference_id": None,
    }

    response = deliver(client, event("evt_early", "checkout.session.completed", session))

    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id="evt_early")
    assert stored.status == StripeEvent.Status.UNMATCHED
    assert stored.payload["data"]["object"]["id"] == "cs_test_unknown"
    assert not Entry.objects.exists()


def test_a_webhook_before_the_session_id_is_saved_matches_by_reference(client, deposit, buyer):
    # given the webhook overtook the save of the session id
    session_id = deposit.stripe_checkout_session_id
    Deposit.objects.filter(pk=deposit.pk).update(stripe_checkout_session_id=None)

    deliver(
        client,
        event("evt_fast", "checkout.session.completed", session_paid(deposit, id=session_id)),
    )

    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.CREDITED
    assert deposit.stripe_checkout_session_id == session_id
    assert cash_balance(buyer).posted == AMOUNT


def test_a_session_paid_for_another_amount_is_not_credited(client, deposit, buyer):
    wrong = session_paid(deposit, amount_total=1)

    response = deliver(client, event("evt_wrong", "checkout.session.completed", wrong))

    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id="evt_wrong")
    assert (stored.status, stored.error_code) == ("failed", "FUNDING_CHECKOUT_MISMATCH")
    assert cash_balance(buyer).posted == 0


def test_an_unhandled_event_type_is_stored_and_ignored(client, fake_stripe):
    response = deliver(client, event("evt_other", "customer.created", {"id": "cus_1"}))

    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id="evt_other").status == StripeEvent.Status.IGNORED


def test_a_refund_reverses_the_deposit(client, credited, buyer):
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_test_1", "refunded": True}

    response = deliver(client, event("evt_refund", "charge.refunded", charge))

    assert response.status_code == 200
    credited.refresh_from_db()
    assert credited.status == Deposit.Status.REFUNDED
    assert cash_balance(buyer).posted == 0
    reversal = Entry.objects.get(idempotency_key="stripe:reversal:pi_test_1")
    assert credited.reversal_entry_id == reversal.pk
    assert reversal.reverses_id == credited.ledger_entry_id  # The ledger's own reversal link.
    assert reversal.description == f"Reversal of deposit #{credited.pk} (refunded)"
    assert AuditEntry.objects.filter(action="deposit.reverse").count() == 1
    reversed_notice = Notice.objects.get(kind=Notice.Kind.DEPOSIT_REVERSED)
    assert (reversed_notice.account, reversed_notice.subject) == (
        buyer,
        "Deposit of $5,000.00 reversed",
    )
    assert "was refunded" in reversed_notice.message


def test_a_dispute_after_a_refund_reverses_nothing_more(client, credited, buyer):
    charge = {"id": "ch_1", "payment_intent": "pi_test_1", "refunded": True}
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": "pi_test_1"}
    deliver(client, event("evt_refund", "charge.refunded", charge))

    response = deliver(client, event("evt_dispute", "charge.dispute.created", dispute))

    assert response.status_code == 200
    assert cash_balance(buyer).posted == 0
    assert Entry.objects.filter(idempotency_key__startswith="stripe:reversal:").count() == 1


def test_a_dispute_reverses_the_deposit(client, credited, buyer):
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": "pi_test_1"}

    deliver(client, event("evt_dispute", "charge.dispute.created", dispute))

    credited.refresh_from_db()
    assert credited.status == Deposit.Status.REFUNDED
    assert cash_balance(buyer).posted == 0
    reversal = Entry.objects.get(pk=credited.reversal_entry_id)
    assert reversal.description == f"Reversal of deposit #{credited.pk} (disputed)"


def test_a_reversal_of_cash_held_for_a_withdrawal_fails_the_withdrawal_and_reverses(
    client, credited, buyer, customer, staff, fake_stripe
):
    # given the money is held for a withdrawal waiting for review
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    charge = {"id": "ch_1", "payment_intent": "pi_test_1", "refunded": True}

    # when the charge is refunded
    response = deliver(client, event("evt_refund", "charge.refunded", charge))

    # then the deposit is reversed: the refunded money is not the customer's to withdraw
    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id="evt_refund").status == "processed"
    credited.refresh_from_db()
    assert credited.status == Deposit.Status.REFUNDED
    balance = cash_balance(buyer)
    assert (balance.posted, balance.pending, balance.available) == (0, 0, 0)
    # and the withdrawal failed, its hold released, the customer told why
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.FAILED
    assert withdrawal.reason == (
        f"Deposit #{credited.pk} was refunded: its cash is no longer the account's to withdraw."
    )
    assert AuditEntry.objects.get(action="withdrawal.fail").target_id == str(withdrawal.pk)
    (told,) = Notice.objects.filter(kind=Notice.Kind.WITHDRAWAL_REFUSED, account=buyer)
    assert told.message == (
        f"Withdrawal #{withdrawal.pk} of $5,000.00 could not be paid out: Deposit "
        f"#{credited.pk} was refunded: its cash is no longer the account's to withdraw. The "
        "funds it held were released, and the deposit's reversal took them back."
    )
    # so staff can no longer pay the refunded money out a second time
    with pytest.raises(FundingError) as refused:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)
    assert refused.value.code == FundingErrorCode.INVALID_STATUS_CHANGE
    assert fake_stripe.payouts == []


def test_a_reversal_the_cash_no_longer_covers_is_recorded_as_failed(
    client, credited, buyer, customer, staff, fake_stripe
):
    # given the money was withdrawn and paid out
    withdrawal_approve(
        withdrawal=withdrawal_request(account=buyer, amount=AMOUNT, actor=customer), actor=staff
    )
    charge = {"id": "ch_1", "payment_intent": "pi_test_1", "refunded": True}

    # when the charge is refunded
    response = deliver(client, event("evt_refund", "charge.refunded", charge))

    # then the webhook is acknowledged, the event failed with the ledger's code, nothing moved:
    # no deficit, no margin call; staff recover the money (docs/OPERATIONS.md section 12)
    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id="evt_refund")
    assert (stored.status, stored.error_code) == ("failed", "LEDGER_INSUFFICIENT_FUNDS")
    credited.refresh_from_db()
    assert credited.status == Deposit.Status.CREDITED
    assert cash_balance(buyer).posted == 0
    assert not Entry.objects.filter(idempotency_key__startswith="stripe:reversal:").exists()
    assert AuditEntry.objects.filter(action="deposit.reversal_refused").count() == 1
    assert not MarginCall.objects.exists()


def test_a_partial_refund_is_left_for_staff(client, credited, buyer):
    charge = {"id": "ch_1", "payment_intent": "pi_test_1", "refunded": False}

    deliver(client, event("evt_partial", "charge.refunded", charge))

    stored = StripeEvent.objects.get(event_id="evt_partial")
    assert (stored.status, stored.error_code) == ("failed", "FUNDING_PARTIAL_REFUND")
    assert cash_balance(buyer).posted == AMOUNT


def test_a_refund_of_an_unknown_payment_is_stored_and_acknowledged(client, fake_stripe):
    charge = {"id": "ch_9", "payment_intent": "pi_unknown", "refunded": True}

    response = deliver(client, event("evt_r9", "charge.refunded", charge))

    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id="evt_r9").status == StripeEvent.Status.UNMATCHED


def test_an_async_payment_that_succeeds_later_is_credited_then(client, deposit, buyer):
    # given a bank debit: the session completes unpaid
    unpaid = session_paid(deposit, payment_status="unpaid")
    deliver(client, event("evt_done", "checkout.session.completed", unpaid))
    assert cash_balance(buyer).posted == 0

    # when the debit clears
    response = deliver(
        client, event("evt_ok", "checkout.session.async_payment_succeeded", session_paid(deposit))
    )

    # then the deposit is credited, and the organization told
    assert response.json()["status"] == StripeEvent.Status.PROCESSED
    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.CREDITED
    assert cash_balance(buyer).posted == AMOUNT
    assert Notice.objects.get(account=buyer).kind == Notice.Kind.DEPOSIT_CREDITED


def test_an_async_payment_that_fails_later_fails_the_deposit_and_says_so(client, deposit, buyer):
    # given a bank debit: the session completes unpaid
    unpaid = session_paid(deposit, payment_status="unpaid")
    deliver(client, event("evt_done", "checkout.session.completed", unpaid))

    # when the debit fails, and Stripe sends that twice
    body = event("evt_fail", "checkout.session.async_payment_failed", unpaid)
    first, second = deliver(client, body), deliver(client, body)

    # then the deposit is failed, not pending for ever, and nothing is credited
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == StripeEvent.Status.PROCESSED
    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.FAILED
    assert cash_balance(buyer).posted == 0
    assert Entry.objects.count() == 0
    (audit,) = AuditEntry.objects.filter(action="deposit.fail")
    assert audit.reason == "the payment failed"
    # and the organization is told once that the money did not arrive
    (told,) = Notice.objects.filter(account=buyer)
    assert (told.kind, told.subject) == (
        Notice.Kind.DEPOSIT_FAILED,
        "Deposit of $5,000.00 not paid",
    )


def test_an_expired_session_fails_its_deposit_without_a_notice(client, deposit, buyer):
    expired = session_paid(deposit, payment_status="unpaid", status="expired")

    response = deliver(client, event("evt_exp", "checkout.session.expired", expired))

    assert response.json()["status"] == StripeEvent.Status.PROCESSED
    deposit.refresh_from_db()
    assert deposit.status == Deposit.Status.FAILED
    assert AuditEntry.objects.get(action="deposit.fail").reason == "the checkout session expired"
    assert not Notice.objects.exists()


def test_a_failure_event_for_a_credited_deposit_changes_nothing(client, credited, buyer):
    unpaid = session_paid(credited, payment_status="unpaid")

    response = deliver(client, event("evt_late", "checkout.session.async_payment_failed", unpaid))

    assert response.status_code == 200
    credited.refresh_from_db()
    assert credited.status == Deposit.Status.CREDITED
    assert cash_balance(buyer).posted == AMOUNT
    assert not AuditEntry.objects.filter(action="deposit.fail").exists()


def returned_payout(payout_id: str, withdrawal_id: int) -> dict:
    return {
        "id": payout_id,
        "object": "payout",
        "status": "failed",
        "failure_code": "account_closed",
        "failure_message": "The bank account has been closed.",
        "metadata": {"withdrawal_id": str(withdrawal_id)},
    }


def test_a_payout_the_bank_returns_gives_the_money_back_to_the_account(
    client, credited, buyer, customer, staff
):
    # given a withdrawal paid out through Stripe
    paid = withdrawal_approve(
        withdrawal=withdrawal_request(account=buyer, amount=Decimal("2000.00"), actor=customer),
        actor=staff,
    )
    assert cash_balance(buyer).posted == AMOUNT - Decimal("2000.00")

    # when Stripe reports, twice, that the bank returned the payout
    body = event("evt_po", "payout.failed", returned_payout(paid.stripe_payout_id, paid.pk))
    first, second = deliver(client, body), deliver(client, body)

    # then the withdrawal failed and the money is the account's again, once
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == StripeEvent.Status.PROCESSED
    paid.refresh_from_db()
    assert (paid.status, paid.reason) == (
        Withdrawal.Status.FAILED,
        "The bank account has been closed.",
    )
    balance = cash_balance(buyer)
    assert (balance.posted, balance.pending, balance.available) == (AMOUNT, 0, AMOUNT)
    returned = Entry.objects.get(idempotency_key=f"withdrawal:{paid.pk}:payout-failed")
    assert returned.reverses_id == paid.ledger_entry_id
    audit = AuditEntry.objects.get(action="withdrawal.fail")
    assert (audit.before, audit.after["status"]) == ({"status": "paid"}, "failed")
    # and the customer is told it was not paid, after being told it was
    kinds = list(Notice.objects.filter(account=buyer).order_by("pk").values_list("kind", "subject"))
    assert kinds[-2:] == [
        (Notice.Kind.WITHDRAWAL_PAID, "Withdrawal of $2,000.00 paid"),
        (Notice.Kind.WITHDRAWAL_REFUSED, "Withdrawal of $2,000.00 not paid"),
    ]
    assert Notice.objects.get(kind=Notice.Kind.WITHDRAWAL_REFUSED).message == (
        f"Withdrawal #{paid.pk} of $2,000.00 could not be paid out: The bank account has been "
        "closed. The funds it held are available in the account again."
    )


def test_a_returned_payout_of_no_withdrawal_is_stored_as_unmatched(client, fake_stripe):
    body = event("evt_po", "payout.failed", returned_payout("po_unknown", 999))

    response = deliver(client, body)

    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id="evt_po").status == StripeEvent.Status.UNMATCHED
    assert not Entry.objects.exists()


def test_a_returned_payout_whose_answer_was_lost_releases_the_held_funds(
    client, credited, buyer, customer, staff, fake_stripe
):
    # given a payout made whose answer was lost: the withdrawal is approved, its funds held
    withdrawal = withdrawal_request(account=buyer, amount=Decimal("2000.00"), actor=customer)
    fake_stripe.payout_unconfirmed = "made_then_server_error"
    with pytest.raises(FundingError):
        withdrawal_approve(withdrawal=withdrawal, actor=staff)
    (payout,) = fake_stripe.payouts

    # when the bank returns it
    deliver(client, event("evt_po", "payout.failed", returned_payout(payout["id"], withdrawal.pk)))

    # then the withdrawal failed and its funds are available again; no retry can pay it
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.stripe_payout_id) == (
        Withdrawal.Status.FAILED,
        payout["id"],
    )
    balance = cash_balance(buyer)
    assert (balance.posted, balance.pending, balance.available) == (AMOUNT, 0, AMOUNT)
    assert Notice.objects.filter(kind=Notice.Kind.WITHDRAWAL_REFUSED).count() == 1
