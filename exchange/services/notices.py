"""Notices: telling an organization's members what happened to its accounts.

A service that makes a margin call, cures one, liquidates an account, credits or reverses a
deposit, pays or refuses a withdrawal, charges a delivery failure or allocates a pool's round
calls ``notice_send`` in its own transaction. The notice is a row (``Notice``) written with
what it tells: it commits with that, or not at all. At the commit it goes

- on the organization's private feed channel (``ws/v1/orders/``), as a ``notice`` message, so
  an automated trader hears of a margin call without polling;
- to the members' email, by the Celery task ``notice_email`` (eager in the embedded mode; in
  production on the broker, retried while the mail server fails). ``emailed_at`` says when it
  went; a notice already emailed is never emailed again.

Each notice has a key naming what it is of (``margin-call:<id>:made``): a service run again (a
retried task, a webhook Stripe sends twice) finds it and tells nobody twice.
"""

import logging
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.utils import timezone

from exchange.models import (
    Account,
    Deposit,
    MarginCall,
    Notice,
    Pool,
    PoolAllocation,
    Withdrawal,
)
from exchange.services.ledger_accounts import micros_to_usd

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
SUBJECT_LENGTH_MAX = 200  # Notice.subject.


def dollars(micros: int, *, up: bool = False) -> str:
    """``micros`` (micro-USD) as dollars and cents, ``$1,234.57``; ``up`` rounds up to the cent
    (an amount due: a member who pays what the notice says cures it)."""
    value = micros_to_usd(micros).quantize(CENT, ROUND_CEILING if up else ROUND_HALF_EVEN)
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def notice_send(
    *, account: Account | int, kind: Notice.Kind, key: str, subject: str, message: str
) -> Notice:
    """Record a notice to ``account``'s organization, sent on its feed and by email once the
    caller's transaction commits. The same ``key`` again returns the first notice, sending
    nothing more."""
    account_id = account if isinstance(account, int) else account.pk
    organization_id = Account.objects.values_list("organization_id", flat=True).get(pk=account_id)
    notice, created = Notice.objects.get_or_create(
        key=key,
        defaults={
            "organization_id": organization_id,
            "account_id": account_id,
            "kind": kind,
            "subject": subject[:SUBJECT_LENGTH_MAX],
            "message": message,
        },
    )
    if created:
        _send_on_commit(notice)
    return notice


def _send_on_commit(notice: Notice) -> None:
    """At the commit: the feed, then the email's task. A broker that cannot be reached is
    logged (``robust``) and leaves the notice to ``notices_email_unsent``; the event stays
    committed."""
    from exchange import tasks
    from exchange.feed import publish

    def send() -> None:  # A function, not a partial: Django logs a failure by its name.
        publish.notice_committed(notice)
        tasks.notice_email.delay(notice.pk)

    transaction.on_commit(send, robust=True)


def notice_email(notice_id: int) -> int:
    """Email the notice to its organization's active members with an address, one message
    each (no member sees another's address); returns how many were sent. A notice already
    emailed is not sent again. A mail server's failure raises, nothing marked: the task tries
    again later."""
    with transaction.atomic():
        notice = (
            Notice.objects.select_for_update()
            .select_related("organization", "account")
            .filter(pk=notice_id)
            .first()
        )
        if notice is None or notice.emailed_at is not None:
            return 0
        recipients = list(
            get_user_model()
            .objects.filter(memberships__organization_id=notice.organization_id, is_active=True)
            .exclude(email="")
            .order_by("pk")
            .values_list("email", flat=True)
        )
        body = (
            f"{notice.message}\n\n"
            f"Account: {notice.organization.name} / {notice.account.name}\n"
            f"Sent by {settings.EXCHANGE_NAME} on {timezone.now():%Y-%m-%d %H:%M} UTC. You "
            f"receive this as a member of {notice.organization.name}.\n"
        )
        subject = f"[{settings.EXCHANGE_NAME}] {notice.subject}"
        messages = [EmailMessage(subject, body, to=[address]) for address in recipients]
        if messages:
            get_connection().send_messages(messages)
        notice.emailed_at = timezone.now()
        notice.email_recipients = len(messages)
        notice.save(update_fields=["emailed_at", "email_recipients"])
    return len(messages)


# A notice's own task normally emails it within seconds; the sweep takes those left longer.
UNSENT_AFTER_SECONDS = 5 * 60
UNSENT_SWEEP_MAX = 500


def notices_email_unsent(*, now: datetime | None = None) -> int:
    """Email the notices not emailed ``UNSENT_AFTER_SECONDS`` after they were made (their task
    lost with a broker that was down at their commit, or out of retries), oldest first, at most
    ``UNSENT_SWEEP_MAX`` a run; returns how many it dealt with (emailed, or marked with no
    member to email). One whose mail server still fails is logged and left to the next run."""
    now = now or timezone.now()
    due = Notice.objects.filter(
        emailed_at__isnull=True, created_at__lte=now - timedelta(seconds=UNSENT_AFTER_SECONDS)
    ).order_by("pk")
    emailed = 0
    for notice_id in due.values_list("pk", flat=True)[:UNSENT_SWEEP_MAX]:
        try:
            notice_email(notice_id)
        except OSError:
            logger.exception("notice #%s: email failed again, left to the next run", notice_id)
            continue
        emailed += 1
    return emailed


# What each event tells ---------------------------------------------------------------------


def margin_call_made(call: MarginCall) -> Notice:
    """The daily settlement put the account under ``call``."""
    owed = (
        f", and owes {dollars(call.deficit)} of losses its cash and margin could not pay"
        if call.deficit
        else ""
    )
    return notice_send(
        account=call.account_id,
        kind=Notice.Kind.MARGIN_CALL,
        key=f"margin-call:{call.pk}:made",
        subject=f"Margin call: {dollars(call.amount, up=True)} due",
        message=(
            f"The daily settlement of {call.trading_date:%Y-%m-%d} put the account under a margin "
            f"call. It holds {dollars(call.held)} of margin against {dollars(call.required)} "
            f"required (maintenance {dollars(call.maintenance)}){owed}.\n\n"
            f"Amount due: {dollars(call.amount, up=True)}.\n\n"
            "Until the call is met the account may only reduce its positions (other orders are "
            "refused, RISK_REDUCE_ONLY) and no cash leaves it. Deposit funds or reduce "
            "positions: the exchange tops the margin up from the account's cash every few "
            "minutes, and the call ends once the whole requirement is held and nothing is "
            "owed. Exchange staff may liquidate the positions of an account whose call stays "
            "open. GET /api/v1/account/margin-call/ and the portfolio page show its figures."
        ),
    )


def margin_call_cured(call: MarginCall) -> Notice:
    """``call`` ended: the account holds its whole requirement and owes nothing."""
    return notice_send(
        account=call.account_id,
        kind=Notice.Kind.MARGIN_CALL_CURED,
        key=f"margin-call:{call.pk}:cured",
        subject="Margin call cured",
        message=(
            f"The margin call of {call.trading_date:%Y-%m-%d} is cured: the account holds its "
            f"whole margin requirement ({dollars(call.required)}) and owes nothing. It trades "
            "as before; its reducing orders still working were cancelled (done_reason "
            "margin_call_cured), as they held no margin."
        ),
    )


def liquidation_started(
    *, account: Account, key: str, cancelled: int, closing: list[tuple[str, str, int]], reason: str
) -> Notice:
    """Staff liquidate ``account``: ``cancelled`` live orders, then ``closing`` (symbol, side,
    contracts) market orders."""
    lines = "\n".join(f"- {side} {quantity} {symbol}" for symbol, side, quantity in closing)
    return notice_send(
        account=account,
        kind=Notice.Kind.LIQUIDATION,
        key=key,
        subject="Your positions are being liquidated",
        message=(
            "Exchange staff are liquidating the account under its open margin call. Its "
            f"{cancelled} live order(s) were cancelled, its margin released to pay for closing, "
            "and a market order (immediate or cancel, no fee) placed to close each position:\n"
            f"{lines or '- (no position)'}\n\n"
            f"Reason given: {reason}\n\n"
            "What a book could not absorb stays open, and the margin call with it. The orders "
            "and their fills are in GET /api/v1/orders/ and the portfolio page."
        ),
    )


def deposit_credited(deposit: Deposit) -> Notice:
    """Stripe confirmed ``deposit``'s payment and the exchange credited it."""
    return notice_send(
        account=deposit.account_id,
        kind=Notice.Kind.DEPOSIT_CREDITED,
        key=f"deposit:{deposit.pk}:credited",
        subject=f"Deposit of ${deposit.amount:,.2f} credited",
        message=(
            f"Deposit #{deposit.pk} of ${deposit.amount:,.2f} was paid and credited to the "
            "account's cash: it is available to trade and to margin."
        ),
    )


def deposit_failed(deposit: Deposit) -> Notice:
    """``deposit``'s payment failed after checkout (a bank debit refused): nothing credited."""
    return notice_send(
        account=deposit.account_id,
        kind=Notice.Kind.DEPOSIT_FAILED,
        key=f"deposit:{deposit.pk}:failed",
        subject=f"Deposit of ${deposit.amount:,.2f} not paid",
        message=(
            f"The payment of deposit #{deposit.pk} (${deposit.amount:,.2f}) failed after "
            "checkout, so nothing was credited to the account. Deposit again with another "
            "payment method."
        ),
    )


def deposit_reversed(deposit: Deposit, why: str) -> Notice:
    """``deposit``'s payment was refunded or disputed: its credit was taken back."""
    return notice_send(
        account=deposit.account_id,
        kind=Notice.Kind.DEPOSIT_REVERSED,
        key=f"deposit:{deposit.pk}:reversed",
        subject=f"Deposit of ${deposit.amount:,.2f} reversed",
        message=(
            f"The payment of deposit #{deposit.pk} (${deposit.amount:,.2f}) was {why}, so its "
            "credit was taken back from the account's cash."
        ),
    )


def withdrawal_paid(withdrawal: Withdrawal) -> Notice:
    """``withdrawal`` was paid out."""
    return notice_send(
        account=withdrawal.account_id,
        kind=Notice.Kind.WITHDRAWAL_PAID,
        key=f"withdrawal:{withdrawal.pk}:paid",
        subject=f"Withdrawal of ${withdrawal.amount:,.2f} paid",
        message=(
            f"Withdrawal #{withdrawal.pk} of ${withdrawal.amount:,.2f} was approved and paid "
            "out to the organization's bank account."
        ),
    )


def withdrawal_refused(withdrawal: Withdrawal, *, funds_available: bool = True) -> Notice:
    """``withdrawal`` was rejected by staff or its payout failed: its funds are available again
    (``funds_available`` False: released, but a deposit's reversal took them back)."""
    rejected = withdrawal.status == Withdrawal.Status.REJECTED
    # Reasons are often sentences of their own (Stripe's, the bank's): one full stop, not two.
    reason = withdrawal.reason.rstrip(".") or "no reason given"
    funds = (
        "The funds it held are available in the account again."
        if funds_available
        else "The funds it held were released, and the deposit's reversal took them back."
    )
    return notice_send(
        account=withdrawal.account_id,
        kind=Notice.Kind.WITHDRAWAL_REFUSED,
        key=f"withdrawal:{withdrawal.pk}:{withdrawal.status}",
        subject=f"Withdrawal of ${withdrawal.amount:,.2f} "
        + ("rejected" if rejected else "not paid"),
        message=(
            f"Withdrawal #{withdrawal.pk} of ${withdrawal.amount:,.2f} "
            + ("was rejected by exchange staff" if rejected else "could not be paid out")
            + f": {reason}. {funds}"
        ),
    )


def delivery_failed(
    *,
    account_id: int,
    symbol: str,
    key: str,
    contracts: int,
    short: bool,
    amount: int,
    rate: Decimal,
    price: Decimal,
) -> Notice:
    """The account could not deliver (a short) or pay for (a long) ``contracts`` of the
    physically settled future ``symbol``: they were cash-settled and it paid ``amount``."""
    failed, lacked = (
        ("not delivered", "the GPU-hours it owed")
        if short
        else ("not paid for", "the cash to pay for the GPU-hours")
    )
    return notice_send(
        account=account_id,
        kind=Notice.Kind.DELIVERY_FAILED,
        key=key,
        subject=f"Delivery failure on {symbol}: {dollars(amount)} penalty",
        message=(
            f"At the expiry of {symbol} the account lacked {lacked}: {contracts} contract(s) "
            f"{failed} were cash-settled at the final settlement price ({price.normalize():f}) "
            f"and it paid a delivery failure penalty of {dollars(amount)} "
            f"({rate.normalize():f} of their final value) to its counterparts. The statement "
            "shows the entry."
        ),
    )


def pool_allocated(allocation: PoolAllocation, *, pool: Pool, round_number: int) -> Notice:
    """A pool's round allocated ``allocation`` to a member: what it received and paid, what
    the pool kept for it, or that nothing was filled."""
    symbol = allocation.instrument.symbol
    asked = f"the {allocation.requested} contract(s) of {symbol} you asked for"
    head = f"Pool {pool.name}, round {round_number}"
    if allocation.status == PoolAllocation.Status.SETTLED:
        hours = allocation.quantity * allocation.instrument.gpu_hours_per_contract
        average = micros_to_usd(allocation.cost) / hours
        paid = allocation.margin + allocation.fee - allocation.subsidy
        subject = f"{head}: {allocation.quantity} {symbol} allocated"
        message = (
            f"{head} allocated you {allocation.quantity} of {asked}, at an average "
            f"{average:.4f} $/GPU-hr ({dollars(allocation.cost)} in all). Your account now holds "
            f"them: margin {dollars(allocation.margin)} and fee {dollars(allocation.fee)}, less "
            f"the sponsor's subsidy of {dollars(allocation.subsidy)}, came to "
            f"{dollars(paid)}"
            + (
                f", of which the pool lent {dollars(allocation.credit)} on your credit line."
                if allocation.credit
                else "."
            )
        )
    elif allocation.status == PoolAllocation.Status.UNFUNDED:
        subject = f"{head}: {allocation.quantity} {symbol} kept by the pool"
        message = (
            f"{head} filled {allocation.quantity} of {asked}, but your account could not pay "
            "for them (under a margin call, or its cash and the pool's credit line short of "
            "what they need): the pool keeps them, and the sponsor may reallocate them once "
            "your account can pay."
        )
    else:
        subject = f"{head}: nothing filled for your {symbol} demand"
        message = f"{head} filled none of {asked}: nothing was allocated or paid."
    return notice_send(
        account=allocation.member.account_id,
        kind=Notice.Kind.POOL_ALLOCATION,
        key=f"pool-allocation:{allocation.pk}",
        subject=subject,
        message=message,
    )
