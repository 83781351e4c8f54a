"""Notices: what the exchange tells an organization's members of what happened to its accounts
(a margin call, its cure, a liquidation, funds credited or refused), kept, emailed once, and
never for what was rolled back."""

from datetime import timedelta
from decimal import Decimal
from smtplib import SMTPServerDisconnected

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import transaction
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.models import MarginCall, Notice, Withdrawal
from exchange.services import notices
from exchange.services.funding import (
    deposit_test_funds,
    withdrawal_approve,
    withdrawal_reject,
    withdrawal_request,
)
from exchange.services.participants import member_add
from exchange.services.risk_cycle import account_liquidate, daily_settlement_run, margin_call_review
from exchange.services.settlement_prices import settlement_price_override
from tests.exchange.conftest import _account
from tests.exchange.support import place, staff_user

pytestmark = pytest.mark.usefixtures("calendar_ahead")

PASSWORD = "gpu-hours-by-the-month"


@pytest.fixture
def staff(db):
    return staff_user("risk", Role.RISK)


def _members(account, *emails: str) -> None:
    for number, email in enumerate(emails):
        member_add(
            organization=account.organization,
            username=f"{account.organization.slug}-{number}",
            email=email,
            password=PASSWORD,
        )


def _called_long(future, staff):
    """A long of 2 contracts at 2.50 on $800 whose members are two people (one without an
    address) and a third who has left (inactive), under a call after a fall to 2.10."""
    long = _account("lumen", "startup", funded=False)
    _members(long, "ana@lumen.example", "", "gone@lumen.example")
    get_user_model().objects.filter(email="gone@lumen.example").update(is_active=False)
    short = _account("northwind", "provider")
    _members(short, "ops@northwind.example")
    deposit_test_funds(account=long, amount=Decimal("800"), actor=None)
    place(short, future, "sell", 2, "2.50")
    place(long, future, "buy", 2, "2.50")
    day = calendar.business_days_before(future.last_trading_day, 5)
    settlement_price_override(
        instrument=future, trading_date=day, price=Decimal("2.10"), reason="brokers", actor=staff
    )
    return long, day


def test_a_margin_call_is_kept_and_emailed_to_the_organization_s_active_members(
    future, staff, django_capture_on_commit_callbacks
):
    long, day = _called_long(future, staff)

    with django_capture_on_commit_callbacks(execute=True):
        daily_settlement_run(trading_date=day, actor=staff)

    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    notice = Notice.objects.get(kind=Notice.Kind.MARGIN_CALL)
    assert (notice.organization, notice.account, notice.key) == (
        long.organization,
        long,
        f"margin-call:{call.pk}:made",
    )
    due = notices.dollars(call.amount, up=True)
    assert notice.subject == f"Margin call: {due} due"
    assert f"Amount due: {due}." in notice.message
    assert "RISK_REDUCE_ONLY" in notice.message
    # emailed once, to the one active member with an address, none of the counterpart's
    assert [message.to for message in mail.outbox] == [["ana@lumen.example"]]
    assert mail.outbox[0].subject == f"[GPU Exchange] Margin call: {due} due"
    assert "Account: Lumen / main" in mail.outbox[0].body
    notice.refresh_from_db()
    assert notice.emailed_at is not None and notice.email_recipients == 1


def test_the_amount_due_is_rounded_up_to_the_cent():
    assert notices.dollars(1_000_001, up=True) == "$1.01"
    assert notices.dollars(1_000_001) == "$1.00"
    assert notices.dollars(-2_500_000) == "-$2.50"
    assert notices.dollars(1_234_567_890_000) == "$1,234,567.89"


def test_a_cure_and_a_liquidation_are_told(futures, staff, django_capture_on_commit_callbacks):
    future, _ = futures
    long, day = _called_long(future, staff)
    daily_settlement_run(trading_date=day, actor=staff)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)

    # a deposit that covers the call, reviewed: cured
    deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        margin_call_review(call)
    cured = Notice.objects.get(kind=Notice.Kind.MARGIN_CALL_CURED)
    assert cured.key == f"margin-call:{call.pk}:cured"
    assert "is cured" in cured.message

    # a second call, liquidated by staff: told with what is being closed and why
    next_day = calendar.business_days_before(future.last_trading_day, 4)
    settlement_price_override(
        instrument=future, trading_date=next_day, price=Decimal("1.00"), reason="x", actor=staff
    )
    daily_settlement_run(trading_date=next_day, actor=staff)
    assert MarginCall.objects.filter(account=long, status=MarginCall.Status.OPEN).exists()
    with django_capture_on_commit_callbacks(execute=True):
        account_liquidate(account=long, actor=staff, reason="Margin call not met")
    liquidation = Notice.objects.get(kind=Notice.Kind.LIQUIDATION)
    assert liquidation.account == long
    assert f"- sell 2 {future.symbol}" in liquidation.message
    assert "Reason given: Margin call not met" in liquidation.message
    assert [m.subject for m in mail.outbox] == [
        "[GPU Exchange] Margin call cured",
        "[GPU Exchange] Your positions are being liquidated",
    ]


def test_the_same_notice_twice_is_told_once(buyer, django_capture_on_commit_callbacks):
    _members(buyer, "ana@lumen.example")
    with django_capture_on_commit_callbacks(execute=True):
        first = notices.notice_send(
            account=buyer, kind=Notice.Kind.MARGIN_CALL, key="k", subject="s", message="m"
        )
        again = notices.notice_send(
            account=buyer, kind=Notice.Kind.MARGIN_CALL, key="k", subject="t", message="n"
        )

    assert again.pk == first.pk and again.subject == "s"
    assert len(mail.outbox) == 1
    # and a notice already emailed is not emailed again
    assert notices.notice_email(first.pk) == 0
    assert len(mail.outbox) == 1


def test_what_is_rolled_back_tells_nobody(buyer, django_capture_on_commit_callbacks):
    _members(buyer, "ana@lumen.example")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        notices.notice_send(
            account=buyer, kind=Notice.Kind.MARGIN_CALL, key="k", subject="s", message="m"
        )
        raise RuntimeError("the settlement failed")

    assert not Notice.objects.exists()
    assert mail.outbox == []


def test_a_mail_server_failure_leaves_the_notice_to_the_sweep(buyer, monkeypatch):
    _members(buyer, "ana@lumen.example")
    notice = notices.notice_send(
        account=buyer, kind=Notice.Kind.MARGIN_CALL, key="k", subject="s", message="m"
    )

    def down(self, messages):
        raise SMTPServerDisconnected("Connection unexpectedly closed")

    # the mail server is down: the task's attempt raises (Celery retries it), nothing marked
    with monkeypatch.context() as patched:
        patched.setattr(EmailBackend, "send_messages", down)
        with pytest.raises(OSError):
            notices.notice_email(notice.pk)
        notice.refresh_from_db()
        assert notice.emailed_at is None
        # and the sweep logs it and goes on while it is still down
        later = timezone.now() + timedelta(minutes=6)
        assert notices.notices_email_unsent(now=later) == 0

    # not yet due for the sweep: left to its own task
    assert notices.notices_email_unsent(now=timezone.now()) == 0
    assert mail.outbox == []
    # once the server is back, the sweep sends it
    assert notices.notices_email_unsent(now=later) == 1
    assert [message.to for message in mail.outbox] == [["ana@lumen.example"]]
    notice.refresh_from_db()
    assert notice.emailed_at is not None


def test_withdrawals_paid_and_rejected_are_told(buyer, django_capture_on_commit_callbacks):
    finance = staff_user("finance", Role.FINANCE)
    other = staff_user("finance-2", Role.FINANCE)
    paid = withdrawal_request(account=buyer, amount=Decimal("100"), actor=None)
    refused = withdrawal_request(account=buyer, amount=Decimal("50"), actor=None)

    with django_capture_on_commit_callbacks(execute=True):
        withdrawal_approve(withdrawal=paid, actor=finance)
        withdrawal_reject(withdrawal=refused, actor=other, reason="Bank details do not match")

    assert Withdrawal.objects.get(pk=paid.pk).status == Withdrawal.Status.PAID
    told = {n.kind: n for n in Notice.objects.filter(account=buyer)}
    assert told[Notice.Kind.WITHDRAWAL_PAID].subject == "Withdrawal of $100.00 paid"
    assert told[Notice.Kind.WITHDRAWAL_REFUSED].subject == "Withdrawal of $50.00 rejected"
    assert "Bank details do not match" in told[Notice.Kind.WITHDRAWAL_REFUSED].message
