"""Deposits and withdrawals: money entering and leaving trading accounts, in the ledger.

Two modes, chosen by configuration (``settings.STRIPE_SECRET_KEY``):
- test-funds mode (no Stripe key, the embedded default): ``deposit_test_funds`` credits a
  trading account from ``exchange:test-funds:USD`` and approved withdrawals pay back into it;
  nothing leaves the machine;
- Stripe mode: deposits go through Stripe Checkout and are credited only when Stripe's signed
  webhook says the session is paid; approved withdrawals create a Stripe payout.

Ledger entries (USD micro-dollars, see ``ledger_accounts``):
- deposit: debit ``exchange:stripe:USD`` (or test funds), credit the customer's cash;
- withdrawal request: a debit hold on the customer's cash, so the money is unavailable at once;
- withdrawal payout: debit the customer's cash consuming the hold, credit Stripe (or test funds);
- refund or dispute of a deposit: the deposit entry reversed;
- a payout the bank returns (``payout.failed``): the payout entry reversed (or, for one whose
  answer was lost, the hold voided) and the withdrawal failed, the customer told.

A session that will not be paid (``checkout.session.async_payment_failed``, a bank debit that
failed after checkout, or ``checkout.session.expired``) fails its pending deposit; the payer of
a failed debit is told.

Exactly once: each webhook event id is stored once (``StripeEvent``), and the ledger entry of a
checkout session has the key ``stripe:checkout:<session id>``, so two different events about the
same session (``checkout.session.completed`` then ``...async_payment_succeeded``) credit once.

Reversal rule: a refund or dispute reverses the whole deposit with the key
``stripe:reversal:<payment intent>``. The customer's cash account may not go negative. Cash
held for withdrawals waiting for review is not the customer's to withdraw once its deposit is
taken back: if the reversal needs it, those withdrawals fail (their holds released, the
customer told) and the reversal is posted. If the money was already spent, withdrawn or is
held by orders, the ledger refuses with ``LEDGER_INSUFFICIENT_FUNDS`` (no deficit is booked and
no margin call made). The
webhook is then still acknowledged (Stripe would otherwise retry for days to no effect), the
event is stored as ``failed`` with that code, an audit row is written, and staff recover the
money outside this flow. Partial refunds are stored as ``failed`` (``FUNDING_PARTIAL_REFUND``)
for staff for the same reason: one reversal per payment intent.

No network call is made inside a database transaction: a checkout session or payout is created
between two short transactions, with a Stripe idempotency key derived from our row id so a
retry never pays twice.
"""

import json
from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.utils import timezone

from exchange.backoffice.roles import FUNDING_STAFF
from exchange.errors import FundingError, FundingErrorCode
from exchange.models import Account, ApiKey, Deposit, Membership, StripeEvent, Withdrawal
from exchange.selectors.risk import cash_out_refusal
from exchange.services import notices
from exchange.services.audit import audit_record
from exchange.services.ledger_accounts import (
    cash_account,
    stripe_account,
    test_funds_account,
    usd_text,
    usd_to_micros,
)
from exchange.units import usd_figure
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account as LedgerAccount
from ledger.models import Entry as LedgerEntry
from ledger.models import Hold
from ledger.services import entry_post, entry_reverse, hold_create, hold_void

Actor = User | AnonymousUser | None

CENTS = Decimal("0.01")
CENTS_PER_USD = 100
# Stripe Checkout refuses a single USD charge above $999,999.99, and one below $0.50 (its
# minimum charge amount for USD): such a session would only fail at Stripe, after our row.
CHECKOUT_AMOUNT_MAX = Decimal("999999.99")
CHECKOUT_AMOUNT_MIN = Decimal("0.50")
# Test funds are pretend money, but a bound still catches a mistyped amount.
TEST_FUNDS_AMOUNT_MAX = Decimal("50000000.00")
WITHDRAWAL_AMOUNT_MAX = Decimal("10000000.00")
CURRENCY = "usd"
# Stripe's answers that say the payout was not made (a request it refused as it stands), so
# the withdrawal fails and its funds are released. Every other error (no connection, a server
# error, rate limits, an idempotent request still in progress) leaves the payout unknown.
PAYOUT_REFUSALS = (
    stripe.InvalidRequestError,
    stripe.CardError,
    stripe.AuthenticationError,
    stripe.PermissionError,
)
# A retried payout looks for one already made among the payouts created since this long
# before the withdrawal's approval (clocks differ; a payout is never made before approval).
PAYOUT_LOOKUP_SLACK_SECONDS = 300
PAYOUT_LOOKUP_PAGE = 100
WEBHOOK_SYSTEM_LABEL = "stripe-webhook"
CHECKOUT_COMPLETED_TYPES = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
}
# A session that will never be paid: its bank debit failed after checkout, or the payer left
# it until it expired. Its deposit fails instead of waiting as pending for ever.
CHECKOUT_UNPAID_TYPES = {
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
}
REVERSAL_TYPES = {"charge.refunded", "charge.dispute.created"}
# A payout Stripe accepted (the withdrawal is paid) and the bank later returned.
PAYOUT_FAILED_TYPE = "payout.failed"
# What a customer's statement calls each reversal (Stripe's event names are not for customers).
REVERSAL_REASONS = {"charge.refunded": "refunded", "charge.dispute.created": "disputed"}


def test_mode_active() -> bool:
    """True when no Stripe key is configured (read at call time so tests can switch modes)."""
    return not settings.STRIPE_SECRET_KEY


def _stripe_client() -> stripe.StripeClient:
    if test_mode_active():
        raise FundingError(
            FundingErrorCode.STRIPE_NOT_CONFIGURED, "Stripe keys are not configured."
        )
    base_addresses: Any = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {}
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses=base_addresses, max_network_retries=2
    )


def amount_check(amount: Decimal, *, amount_max: Decimal, amount_min: Decimal = CENTS) -> int:
    """Whole cents between ``amount_min`` (one cent unless given) and ``amount_max``; returns
    micro-dollars. Never rounds."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise FundingError(
            FundingErrorCode.AMOUNT_INVALID, f"{amount!r} is not an amount.", field="amount"
        )
    if amount <= 0:
        raise _not_cents(amount)
    # The maximum first: quantizing an amount of more digits than the decimal context holds
    # (a form's 1e400) raises InvalidOperation, which was a server error.
    if amount > amount_max:
        raise FundingError(
            FundingErrorCode.AMOUNT_TOO_LARGE,
            f"{usd_figure(amount)} USD is above the maximum of {usd_figure(amount_max)} USD.",
            field="amount",
        )
    if amount != amount.quantize(CENTS):
        raise _not_cents(amount)
    if amount < amount_min:
        raise FundingError(
            FundingErrorCode.AMOUNT_TOO_SMALL,
            f"{usd_figure(amount)} USD is below the minimum of {usd_figure(amount_min)} USD.",
            field="amount",
        )
    return usd_to_micros(amount)


def _not_cents(amount: Decimal) -> FundingError:
    return FundingError(
        FundingErrorCode.AMOUNT_INVALID,
        f"{amount} USD is not a positive whole number of cents.",
        field="amount",
    )


def _account_check(account: Account) -> None:
    if account.status == Account.Status.CLOSED:
        raise FundingError(
            FundingErrorCode.ACCOUNT_INACTIVE, f"Account {account} is closed.", field="account"
        )


def _margin_call_check(account: Account, doing: str) -> None:
    """No cash leaves an account under a margin call (``selectors.risk.cash_out_refusal``)."""
    refusal = cash_out_refusal(account, doing)
    if refusal is not None:
        raise FundingError(FundingErrorCode.MARGIN_CALL_OPEN, refusal)


def _house_account() -> LedgerAccount:
    """Where money comes from and goes to: Stripe, or the test funds in test mode."""
    return test_funds_account() if test_mode_active() else stripe_account()


# Deposits.


def deposit_test_funds(*, account: Account, amount: Decimal, actor: Actor) -> Deposit:
    """Credit ``amount`` USD of test funds at once. Refused when Stripe keys are configured."""
    if not test_mode_active():
        raise FundingError(
            FundingErrorCode.TEST_FUNDS_DISABLED,
            "Test funds are disabled: Stripe keys are configured.",
        )
    micros = amount_check(amount, amount_max=TEST_FUNDS_AMOUNT_MAX)
    _account_check(account)
    with transaction.atomic(durable=True):
        deposit = Deposit.objects.create(
            account=account,
            amount=amount,
            method=Deposit.Method.TEST_FUNDS,
            requested_by=_user(actor),
        )
        entry = entry_post(
            key=f"deposit:{deposit.pk}:test-funds",
            description=f"Test funds deposit #{deposit.pk} to account {account.pk}",
            postings=((test_funds_account(), micros), (cash_account(account), -micros)),
            metadata={"deposit": deposit.pk},
        )
        deposit.status, deposit.ledger_entry_id = Deposit.Status.CREDITED, entry.pk
        deposit.save(update_fields=["status", "ledger_entry_id", "updated_at"])
        audit_record(
            actor=actor,
            action="deposit.test_funds",
            target=deposit,
            after={"account": account.pk, "amount": str(amount), "entry": entry.pk},
        )
    return deposit


def deposit_start_checkout(
    *, account: Account, amount: Decimal, actor: Actor, success_url: str, cancel_url: str
) -> tuple[Deposit, str]:
    """Open a Stripe Checkout session for ``amount`` USD; the webhook credits it when paid."""
    client = _stripe_client()
    amount_check(amount, amount_max=CHECKOUT_AMOUNT_MAX, amount_min=CHECKOUT_AMOUNT_MIN)
    _account_check(account)
    with transaction.atomic(durable=True):
        deposit = Deposit.objects.create(
            account=account,
            amount=amount,
            method=Deposit.Method.STRIPE_CHECKOUT,
            requested_by=_user(actor),
        )
        audit_record(
            actor=actor,
            action="deposit.checkout_start",
            target=deposit,
            after={"account": account.pk, "amount": str(amount)},
        )
    try:
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "success_url": success_url,
                "cancel_url": cancel_url,
                "client_reference_id": str(deposit.pk),
                "metadata": {"deposit_id": str(deposit.pk), "account_id": str(account.pk)},
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": CURRENCY,
                            "unit_amount": int(amount * CENTS_PER_USD),
                            "product_data": {"name": f"Deposit to GPU Exchange account {account}"},
                        },
                    }
                ],
            },
            options={"idempotency_key": f"deposit-{deposit.pk}-checkout"},
        )
    except stripe.StripeError as error:
        _deposit_fail(deposit=deposit, reason=str(error.user_message or error))
        raise FundingError(FundingErrorCode.STRIPE_ERROR, "Stripe refused the checkout.") from error
    with transaction.atomic(durable=True):
        Deposit.objects.filter(pk=deposit.pk).update(
            stripe_checkout_session_id=session.id, updated_at=timezone.now()
        )
    deposit.refresh_from_db()
    return deposit, str(session.url)


def deposit_request(
    *, account: Account, amount: Decimal, actor: Actor, success_url: str, cancel_url: str
) -> tuple[Deposit, str | None]:
    """A deposit in the configured mode: (deposit, Checkout address to pay at).

    In test-funds mode the deposit is credited at once and there is nothing to pay (None); in
    Stripe mode a Checkout session is opened and the webhook credits the deposit when paid.
    """
    if test_mode_active():
        return deposit_test_funds(account=account, amount=amount, actor=actor), None
    return deposit_start_checkout(
        account=account,
        amount=amount,
        actor=actor,
        success_url=success_url,
        cancel_url=cancel_url,
    )


def _deposit_fail(*, deposit: Deposit, reason: str) -> None:
    with transaction.atomic(durable=True):
        Deposit.objects.filter(pk=deposit.pk).update(
            status=Deposit.Status.FAILED, updated_at=timezone.now()
        )
        audit_record(
            actor=None,
            action="deposit.fail",
            target=deposit,
            reason=reason,
            system_label=WEBHOOK_SYSTEM_LABEL,
        )


# The Stripe webhook.


def stripe_webhook_handle(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify, store once and apply one Stripe event. A refused event writes nothing."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise FundingError(
            FundingErrorCode.WEBHOOK_NOT_CONFIGURED, "No Stripe webhook secret is configured."
        )
    try:
        # stripe leaves construct_event unannotated.
        event = stripe.Webhook.construct_event(  # type: ignore[no-untyped-call]
            payload, signature, settings.STRIPE_WEBHOOK_SECRET
        )
    except stripe.SignatureVerificationError as error:
        raise FundingError(
            FundingErrorCode.WEBHOOK_SIGNATURE_INVALID, "The Stripe signature does not verify."
        ) from error
    except ValueError as error:
        raise FundingError(
            FundingErrorCode.WEBHOOK_PAYLOAD_INVALID, "The webhook payload is not JSON."
        ) from error
    body = json.loads(payload)
    if not isinstance(body, dict) or not body.get("id") or not body.get("type"):
        raise FundingError(
            FundingErrorCode.WEBHOOK_PAYLOAD_INVALID, "The webhook payload is not an event."
        )
    with transaction.atomic(durable=True):
        # get_or_create catches the unique-key race: of two concurrent deliveries of one event,
        # the second waits on the first's insert and then finds its row, so it does nothing.
        stored, created = StripeEvent.objects.get_or_create(
            event_id=event.id, defaults={"type": event.type, "payload": body}
        )
        if not created:
            return stored
        obj = body.get("data", {}).get("object", {})
        if event.type in CHECKOUT_COMPLETED_TYPES:
            _checkout_completed(stored, obj)
        elif event.type in CHECKOUT_UNPAID_TYPES:
            _checkout_unpaid(stored, obj)
        elif event.type in REVERSAL_TYPES:
            _charge_reversed(stored, obj)
        elif event.type == PAYOUT_FAILED_TYPE:
            _payout_failed(stored, obj)
        else:
            stored.status = StripeEvent.Status.IGNORED
        stored.processed_at = timezone.now()
        stored.save(update_fields=["status", "error_code", "error_message", "processed_at"])
    return stored


def _event_failed(stored: StripeEvent, code: str, message: str) -> None:
    stored.status, stored.error_code, stored.error_message = (
        StripeEvent.Status.FAILED,
        code,
        message[:300],
    )


def _deposit_for_session(session: dict[str, Any]) -> Deposit | None:
    """The deposit of a checkout session, locked; by the reference we sent if the session id
    was not saved yet (the webhook can arrive before ``deposit_start_checkout`` records it)."""
    deposits = Deposit.objects.select_for_update()
    deposit = deposits.filter(stripe_checkout_session_id=session["id"]).first()
    reference = str(session.get("client_reference_id") or "")
    if deposit is None and reference.isdigit():
        deposit = deposits.filter(pk=int(reference), method=Deposit.Method.STRIPE_CHECKOUT).first()
        if deposit is not None and deposit.stripe_checkout_session_id not in (None, session["id"]):
            return None
    return deposit


def _checkout_completed(stored: StripeEvent, session: dict[str, Any]) -> None:
    if session.get("payment_status") != "paid":
        stored.status = StripeEvent.Status.IGNORED  # Paid later: async_payment_succeeded.
        return
    deposit = _deposit_for_session(session)
    if deposit is None:
        stored.status = StripeEvent.Status.UNMATCHED
        return
    cents = int(deposit.amount * CENTS_PER_USD)
    if session.get("amount_total") != cents or session.get("currency") != CURRENCY:
        _event_failed(
            stored,
            FundingErrorCode.CHECKOUT_MISMATCH,
            f"Session paid {session.get('amount_total')} {session.get('currency')}, "
            f"deposit #{deposit.pk} expects {cents} {CURRENCY}.",
        )
        return
    stored.status = StripeEvent.Status.PROCESSED
    if deposit.status != Deposit.Status.PENDING:
        return  # Already credited by another event about the same session.
    micros = usd_to_micros(deposit.amount)
    entry = entry_post(
        key=f"stripe:checkout:{session['id']}",
        description=f"Stripe Checkout deposit #{deposit.pk} to account {deposit.account_id}",
        postings=((stripe_account(), micros), (cash_account(deposit.account), -micros)),
        metadata={"deposit": deposit.pk, "stripe_event": stored.event_id},
    )
    deposit.status, deposit.ledger_entry_id = Deposit.Status.CREDITED, entry.pk
    deposit.stripe_checkout_session_id = session["id"]
    deposit.stripe_payment_intent_id = str(session.get("payment_intent") or "")
    deposit.save(
        update_fields=[
            "status",
            "ledger_entry_id",
            "stripe_checkout_session_id",
            "stripe_payment_intent_id",
            "updated_at",
        ]
    )
    audit_record(
        actor=None,
        action="deposit.credit",
        target=deposit,
        after={"entry": entry.pk, "event": stored.event_id},
        system_label=WEBHOOK_SYSTEM_LABEL,
    )
    notices.deposit_credited(deposit)


def _checkout_unpaid(stored: StripeEvent, session: dict[str, Any]) -> None:
    """The deposit of a session that will not be paid fails; the payer of a bank debit that
    failed after checkout is told (one who left the session knows)."""
    deposit = _deposit_for_session(session)
    if deposit is None:
        stored.status = StripeEvent.Status.UNMATCHED
        return
    stored.status = StripeEvent.Status.PROCESSED
    if deposit.status != Deposit.Status.PENDING:
        return  # Credited by an earlier event (a session is paid or unpaid, not both), or failed.
    payment_failed = stored.type == "checkout.session.async_payment_failed"
    deposit.status = Deposit.Status.FAILED
    deposit.stripe_checkout_session_id = session["id"]
    deposit.save(update_fields=["status", "stripe_checkout_session_id", "updated_at"])
    audit_record(
        actor=None,
        action="deposit.fail",
        target=deposit,
        before={"status": Deposit.Status.PENDING},
        after={"status": deposit.status, "event": stored.event_id},
        reason="the payment failed" if payment_failed else "the checkout session expired",
        system_label=WEBHOOK_SYSTEM_LABEL,
    )
    if payment_failed:
        notices.deposit_failed(deposit)


def _charge_reversed(stored: StripeEvent, obj: dict[str, Any]) -> None:
    payment_intent = str(obj.get("payment_intent") or "")
    deposit = (
        Deposit.objects.select_for_update()
        .filter(stripe_payment_intent_id=payment_intent, method=Deposit.Method.STRIPE_CHECKOUT)
        .first()
        if payment_intent
        else None
    )
    if deposit is None:
        stored.status = StripeEvent.Status.UNMATCHED
        return
    if stored.type == "charge.refunded" and not obj.get("refunded"):
        _event_failed(
            stored,
            FundingErrorCode.PARTIAL_REFUND,
            f"Partial refund of deposit #{deposit.pk}: reverse by hand.",
        )
        return
    stored.status = StripeEvent.Status.PROCESSED
    if deposit.status != Deposit.Status.CREDITED:
        return  # Already reversed (a refund and a dispute of one charge), or never credited.
    why = REVERSAL_REASONS[stored.type]
    # Locked before the ledger's rows, the order every withdrawal service takes them in (a
    # withdrawal's row, then its cash): that is what keeps this from deadlocking with them.
    waiting = list(
        Withdrawal.objects.select_for_update()
        .filter(account_id=deposit.account_id, status=Withdrawal.Status.REQUESTED)
        .order_by("pk")
    )
    entry = _deposit_reversal_post(deposit, stored, payment_intent)
    if isinstance(entry, LedgerError) and waiting:
        # The cash is held for withdrawals waiting for review. It is no longer the customer's
        # to withdraw: paying them out would pay the refunded money a second time. They fail,
        # releasing their holds, whether or not the reversal then goes through.
        _withdrawals_fail_for_reversal(waiting, deposit, why)
        entry = _deposit_reversal_post(deposit, stored, payment_intent)
        for withdrawal in waiting:
            notices.withdrawal_refused(withdrawal, funds_available=isinstance(entry, LedgerError))
    if isinstance(entry, LedgerError):
        error = entry
        _event_failed(stored, error.code, error.message)
        audit_record(
            actor=None,
            action="deposit.reversal_refused",
            target=deposit,
            reason=f"{error.code}: {error.message}",
            system_label=WEBHOOK_SYSTEM_LABEL,
        )
        return
    deposit.status, deposit.reversal_entry_id = Deposit.Status.REFUNDED, entry.pk
    deposit.save(update_fields=["status", "reversal_entry_id", "updated_at"])
    audit_record(
        actor=None,
        action="deposit.reverse",
        target=deposit,
        before={"status": Deposit.Status.CREDITED},
        after={"status": deposit.status, "entry": entry.pk, "event": stored.event_id},
        system_label=WEBHOOK_SYSTEM_LABEL,
    )
    notices.deposit_reversed(deposit, why)


def _payout_failed(stored: StripeEvent, payout: dict[str, Any]) -> None:
    """A payout the bank returned: its withdrawal fails and the money is the account's again
    (the payout entry reversed), as for a payout Stripe refused at once."""
    reference = str((payout.get("metadata") or {}).get("withdrawal_id") or "")
    withdrawal = (
        Withdrawal.objects.select_for_update().filter(pk=int(reference)).first()
        if reference.isdigit()
        else None
    )
    if withdrawal is None or withdrawal.stripe_payout_id not in ("", payout.get("id")):
        stored.status = StripeEvent.Status.UNMATCHED
        return
    stored.status = StripeEvent.Status.PROCESSED
    reason = str(payout.get("failure_message") or payout.get("failure_code") or "payout failed")
    if withdrawal.status == Withdrawal.Status.APPROVED:
        # Made, but its answer was lost (``FUNDING_PAYOUT_UNCONFIRMED``): the funds are held.
        _withdrawal_hold_void(withdrawal)
        entry_id = None
    elif withdrawal.status == Withdrawal.Status.PAID:
        assert withdrawal.ledger_entry_id is not None  # Set when it was paid.
        entry_id = entry_reverse(
            entry=LedgerEntry.objects.get(pk=withdrawal.ledger_entry_id),
            key=f"withdrawal:{withdrawal.pk}:payout-failed",
            description=f"Withdrawal #{withdrawal.pk} returned: the payout failed",
            metadata={"withdrawal": withdrawal.pk, "stripe_event": stored.event_id},
        ).pk
    else:
        return  # Failed already (an earlier delivery), or never paid out.
    before = withdrawal.status
    withdrawal.status, withdrawal.reason = Withdrawal.Status.FAILED, reason[:300]
    withdrawal.stripe_payout_id = str(payout.get("id") or "")
    withdrawal.save(update_fields=["status", "reason", "stripe_payout_id", "updated_at"])
    audit_record(
        actor=None,
        action="withdrawal.fail",
        target=withdrawal,
        before={"status": before},
        after={"status": withdrawal.status, "entry": entry_id, "event": stored.event_id},
        reason=reason,
        system_label=WEBHOOK_SYSTEM_LABEL,
    )
    notices.withdrawal_refused(withdrawal)


def _deposit_reversal_post(
    deposit: Deposit, stored: StripeEvent, payment_intent: str
) -> LedgerEntry | LedgerError:
    """The reversal entry of ``deposit``, or the ledger's ``LEDGER_INSUFFICIENT_FUNDS`` refusal
    (made in a savepoint: the accounts read as before it, so the caller may try again)."""
    assert deposit.ledger_entry_id is not None  # Set when it was credited.
    try:
        return entry_reverse(
            entry=LedgerEntry.objects.get(pk=deposit.ledger_entry_id),
            key=f"stripe:reversal:{payment_intent}",
            description=f"Reversal of deposit #{deposit.pk} ({REVERSAL_REASONS[stored.type]})",
            metadata={"deposit": deposit.pk, "stripe_event": stored.event_id},
        )
    except LedgerError as error:
        if error.code != LedgerErrorCode.INSUFFICIENT_FUNDS:
            raise
        return error


def _withdrawals_fail_for_reversal(waiting: list[Withdrawal], deposit: Deposit, why: str) -> None:
    """Fail the locked withdrawals waiting for review, releasing the cash they hold."""
    reason = f"Deposit #{deposit.pk} was {why}: its cash is no longer the account's to withdraw."
    for withdrawal in waiting:
        _withdrawal_end(withdrawal, Withdrawal.Status.FAILED, reason=reason)
        audit_record(
            actor=None,
            action="withdrawal.fail",
            target=withdrawal,
            before={"status": Withdrawal.Status.REQUESTED},
            after={"status": withdrawal.status, "deposit": deposit.pk},
            reason=reason,
            system_label=WEBHOOK_SYSTEM_LABEL,
        )


# Withdrawals.


def withdrawal_request(
    *, account: Account, amount: Decimal, actor: Actor, api_key: ApiKey | None = None
) -> Withdrawal:
    """Ask to withdraw ``amount`` USD: held at once on the account's cash, paid when approved.
    Refused while the account is under a margin call (``FUNDING_MARGIN_CALL_OPEN``), and so is
    the approval of a withdrawal requested before a call opened.

    ``api_key``: the key of a request made through the API, kept on the withdrawal and named
    in its audit row (a key made on the command line has no user to name)."""
    micros = amount_check(amount, amount_max=WITHDRAWAL_AMOUNT_MAX)
    _account_check(account)
    with transaction.atomic(durable=True):
        _margin_call_check(account, "cash can be withdrawn")
        withdrawal = Withdrawal.objects.create(
            account=account, amount=amount, requested_by=_user(actor), requested_with=api_key
        )
        try:
            hold = hold_create(
                key=f"withdrawal:{withdrawal.pk}:hold",
                account=cash_account(account),
                side=Hold.Side.DEBIT,
                amount=micros,
                description=f"Withdrawal #{withdrawal.pk} from account {account.pk}",
            )
        except LedgerError as error:
            if error.code != LedgerErrorCode.INSUFFICIENT_FUNDS:
                raise
            # Raising inside the block rolls the withdrawal row back: nothing is written. The
            # ledger refused in a savepoint: its account reads as before the refusal.
            available = max(cash_account(account).available, 0)
            raise FundingError(
                FundingErrorCode.INSUFFICIENT_FUNDS,
                f"Account {account} has {usd_text(available)} available: less than the "
                f"{usd_figure(amount)} USD asked for.",
                field="amount",
            ) from error
        withdrawal.ledger_hold_id = hold.pk
        withdrawal.save(update_fields=["ledger_hold_id", "updated_at"])
        audit_record(
            actor=actor,
            action="withdrawal.request",
            target=withdrawal,
            after={
                "account": account.pk,
                "amount": str(amount),
                "hold": hold.pk,
            },
            system_label=withdrawal.requester,
            api_key=api_key,
        )
    return withdrawal


def _finance_check(actor: Actor) -> None:
    """Withdrawals are reviewed by staff with the finance role (superusers have every role),
    whoever calls the service: the admin's gate alone would leave other callers unchecked.
    Unlike the other staff services, the system (no actor) reviews none."""
    FUNDING_STAFF.check(actor, "review withdrawals")


def _withdrawal_lock(withdrawal: Withdrawal, allowed: set[str]) -> Withdrawal:
    locked = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
    if locked.status not in allowed:
        raise FundingError(
            FundingErrorCode.INVALID_STATUS_CHANGE,
            f"Withdrawal #{locked.pk} is {locked.status}.",
        )
    return locked


def _reviewer_check(withdrawal: Withdrawal, actor: Actor) -> None:
    """Refuse (``FUNDING_REVIEWER_IS_MEMBER``) an approval by a member of the organization
    whose cash would leave: staff who are also one of its users (the one who asked, or a
    colleague) would pay it out on their own word. Another of the finance staff approves it.
    A rejection moves no money out, so anyone of finance may reject."""
    user = _user(actor)  # ``_finance_check`` let through active staff only, never None.
    assert user is not None
    organization_id = (
        Account.objects.filter(pk=withdrawal.account_id)
        .values_list("organization_id", flat=True)
        .get()
    )
    if Membership.objects.filter(user=user, organization_id=organization_id).exists():
        raise FundingError(
            FundingErrorCode.REVIEWER_IS_MEMBER,
            f"You are a member of the organization of withdrawal #{withdrawal.pk}: another of "
            "the finance staff approves it.",
        )


def withdrawal_approve(*, withdrawal: Withdrawal, actor: Actor) -> Withdrawal:
    """Staff approval: pay out through Stripe (none in test mode), then post the withdrawal.

    Approving an ``approved`` withdrawal again retries a payout that was interrupted. The
    retry first asks Stripe for a payout already made for it (``_payout_made``) and creates
    one only if there is none, with the first attempt's idempotency key: the key alone would
    not do, as Stripe forgets keys after 24 hours, and a retry of a payout made but never
    confirmed would then pay twice. A payout Stripe refuses fails the withdrawal and releases
    its funds (``FUNDING_PAYOUT_FAILED``); one it does not confirm either way leaves it
    approved and held (``FUNDING_PAYOUT_UNCONFIRMED``), for a retry.
    """
    _finance_check(actor)
    with transaction.atomic(durable=True):
        locked = _withdrawal_lock(
            withdrawal, {Withdrawal.Status.REQUESTED, Withdrawal.Status.APPROVED}
        )
        _reviewer_check(locked, actor)
        retry = locked.status == Withdrawal.Status.APPROVED
        if not retry:
            # A call opened since the request: the withdrawal waits (or staff reject it, which
            # frees its cash for the call). A payout already approved is only retried.
            _margin_call_check(locked.account, "the withdrawal can be approved")
            locked.status, locked.reviewed_by = Withdrawal.Status.APPROVED, _user(actor)
            locked.reviewed_at = timezone.now()
            locked.save(update_fields=["status", "reviewed_by", "reviewed_at", "updated_at"])
            audit_record(
                actor=actor,
                action="withdrawal.approve",
                target=locked,
                before={"status": Withdrawal.Status.REQUESTED},
                after={"status": locked.status},
            )
    payout_id = ""
    if not test_mode_active():
        try:
            payout_id = _payout(locked, retry=retry)
        except PAYOUT_REFUSALS as error:
            _withdrawal_payout_failed(locked, actor, str(error.user_message or error))
            raise FundingError(
                FundingErrorCode.PAYOUT_FAILED, f"Stripe refused the payout: {error}"
            ) from error
        except stripe.StripeError as error:
            # No answer, a server error, or another approval still paying it: the payout may
            # have been made. Releasing the hold would let the customer withdraw it again.
            raise FundingError(
                FundingErrorCode.PAYOUT_UNCONFIRMED,
                f"Stripe did not confirm the payout of withdrawal #{locked.pk} ({error}): it "
                "stays approved with its funds held; approve it again to retry, which pays "
                "at most once (it looks for the payout made first).",
            ) from error
    return _withdrawal_post(locked, actor, payout_id)


def _payout(withdrawal: Withdrawal, *, retry: bool) -> str:
    """The id of the withdrawal's payout: on a retry the one made before if there is one,
    else a new one."""
    made = _payout_made(withdrawal) if retry else None
    if made is not None:
        return made
    payout = _stripe_client().v1.payouts.create(
        params={
            "amount": int(withdrawal.amount * CENTS_PER_USD),
            "currency": CURRENCY,
            "metadata": {"withdrawal_id": str(withdrawal.pk)},
        },
        options={"idempotency_key": f"withdrawal-{withdrawal.pk}-payout"},
    )
    return str(payout.id)


def _payout_made(withdrawal: Withdrawal) -> str | None:
    """The id of the payout Stripe made for ``withdrawal`` (its metadata names it) among those
    created since its approval, or None."""
    assert withdrawal.reviewed_at is not None  # Approved.
    since = int(withdrawal.reviewed_at.timestamp()) - PAYOUT_LOOKUP_SLACK_SECONDS
    payouts = _stripe_client().v1.payouts.list(
        params={"created": {"gte": since}, "limit": PAYOUT_LOOKUP_PAGE}
    )
    for payout in payouts.auto_paging_iter():
        if (payout.metadata or {}).get("withdrawal_id") == str(withdrawal.pk):
            return str(payout.id)
    return None


def _withdrawal_post(withdrawal: Withdrawal, actor: Actor, payout_id: str) -> Withdrawal:
    with transaction.atomic(durable=True):
        locked = _withdrawal_lock(withdrawal, {Withdrawal.Status.APPROVED})
        micros = usd_to_micros(locked.amount)
        assert locked.ledger_hold_id is not None  # Held since it was requested.
        hold = Hold.objects.get(pk=locked.ledger_hold_id)
        entry = entry_post(
            key=f"withdrawal:{locked.pk}:payout",
            description=f"Withdrawal #{locked.pk} from account {locked.account_id}",
            postings=((cash_account(locked.account), micros), (_house_account(), -micros)),
            holds=((hold, micros),),
            release_holds=True,
            metadata={"withdrawal": locked.pk, "stripe_payout": payout_id},
        )
        locked.status, locked.ledger_entry_id = Withdrawal.Status.PAID, entry.pk
        locked.stripe_payout_id = payout_id
        locked.save(update_fields=["status", "ledger_entry_id", "stripe_payout_id", "updated_at"])
        audit_record(
            actor=actor,
            action="withdrawal.pay",
            target=locked,
            before={"status": Withdrawal.Status.APPROVED},
            after={"status": locked.status, "entry": entry.pk, "stripe_payout": payout_id},
        )
        notices.withdrawal_paid(locked)
    return locked


def _withdrawal_payout_failed(withdrawal: Withdrawal, actor: Actor, reason: str) -> None:
    with transaction.atomic(durable=True):
        locked = _withdrawal_lock(withdrawal, {Withdrawal.Status.APPROVED})
        _withdrawal_end(locked, Withdrawal.Status.FAILED, reason=reason[:300])
        audit_record(
            actor=actor,
            action="withdrawal.fail",
            target=locked,
            before={"status": Withdrawal.Status.APPROVED},
            after={"status": locked.status},
            reason=reason,
        )
        notices.withdrawal_refused(locked)


def withdrawal_cancel(
    *, account: Account, withdrawal_id: int, actor: Actor, api_key: ApiKey | None = None
) -> Withdrawal:
    """The customer takes back a withdrawal staff have not reviewed yet: its held funds become
    available again. Only ``account``'s own (another's is ``Withdrawal.DoesNotExist``, as if
    it did not exist); once approved, paid or refused it is ``FUNDING_INVALID_STATUS_CHANGE``.
    The row lock orders it with a concurrent approval: whichever takes it first wins."""
    with transaction.atomic(durable=True):
        locked = _withdrawal_lock(
            Withdrawal.objects.get(pk=withdrawal_id, account=account),
            {Withdrawal.Status.REQUESTED},
        )
        _withdrawal_end(locked, Withdrawal.Status.CANCELLED)
        audit_record(
            actor=actor,
            action="withdrawal.cancel",
            target=locked,
            before={"status": Withdrawal.Status.REQUESTED},
            after={"status": locked.status},
            system_label=locked.requester,
            api_key=api_key,
        )
    return locked


def withdrawal_reject(*, withdrawal: Withdrawal, actor: Actor, reason: str) -> Withdrawal:
    """Staff refusal: the held funds become available again."""
    _finance_check(actor)
    with transaction.atomic(durable=True):
        locked = _withdrawal_lock(withdrawal, {Withdrawal.Status.REQUESTED})
        _withdrawal_end(
            locked,
            Withdrawal.Status.REJECTED,
            reviewed_by=_user(actor),
            reason=reason[:300],
            reviewed_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action="withdrawal.reject",
            target=locked,
            before={"status": Withdrawal.Status.REQUESTED},
            after={"status": locked.status},
            reason=reason,
        )
        notices.withdrawal_refused(locked)
    return locked


def _withdrawal_hold_void(withdrawal: Withdrawal) -> None:
    """Release what a withdrawal holds of its account's cash (held since it was requested)."""
    assert withdrawal.ledger_hold_id is not None
    hold_void(hold=Hold.objects.get(pk=withdrawal.ledger_hold_id))


def _withdrawal_end(withdrawal: Withdrawal, status: str, **fields: Any) -> None:
    """End a locked withdrawal that pays nothing out (rejected, cancelled, failed): its hold
    released, its ``status`` and ``fields`` saved. The caller writes the audit row."""
    _withdrawal_hold_void(withdrawal)
    withdrawal.status = status
    for name, value in fields.items():
        setattr(withdrawal, name, value)
    withdrawal.save(update_fields=["status", *fields, "updated_at"])


def _user(actor: Actor) -> Any:
    return actor if actor is not None and actor.is_authenticated else None
