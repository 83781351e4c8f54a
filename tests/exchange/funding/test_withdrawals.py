"""Withdrawals: held at request, paid out on staff approval, released on rejection or failure."""

from datetime import date
from decimal import Decimal

import pytest

from exchange.backoffice.roles import Role
from exchange.errors import FundingError, FundingErrorCode
from exchange.models import AuditEntry, MarginCall, Withdrawal
from exchange.selectors.funding import cash_balance
from exchange.services import ledger_accounts
from exchange.services.funding import (
    WITHDRAWAL_AMOUNT_MAX,
    deposit_test_funds,
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_reject,
    withdrawal_request,
)
from exchange.services.staff import staff_roles_grant
from ledger.models import Entry, Hold
from tests.exchange.funding.conftest import funding_rows

pytestmark = pytest.mark.django_db

FUNDED = Decimal("10000.00")
AMOUNT = Decimal("2500.00")


def fund(account, amount=FUNDED) -> None:
    """Test funds are the only way in without a checkout; switch modes around them."""
    from django.conf import settings

    saved = settings.STRIPE_SECRET_KEY
    settings.STRIPE_SECRET_KEY = ""
    try:
        deposit_test_funds(account=account, amount=amount, actor=None)
    finally:
        settings.STRIPE_SECRET_KEY = saved


def balance(account) -> tuple[Decimal, Decimal, Decimal]:
    cash = cash_balance(account)
    return cash.posted, cash.pending, cash.available


def test_a_request_makes_the_funds_unavailable_at_once(test_funds_mode, buyer, customer):
    fund(buyer)

    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)

    assert withdrawal.status == Withdrawal.Status.REQUESTED
    assert balance(buyer) == (FUNDED, AMOUNT, FUNDED - AMOUNT)
    hold = Hold.objects.get(pk=withdrawal.ledger_hold_id)
    assert (hold.side, hold.status, hold.amount) == ("debit", "pending", 2_500_000_000)
    assert AuditEntry.objects.get(action="withdrawal.request").actor == customer


def test_more_than_is_available_is_refused_and_writes_nothing(test_funds_mode, buyer, customer):
    fund(buyer)
    withdrawal_request(account=buyer, amount=FUNDED - Decimal("1.00"), actor=customer)
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        withdrawal_request(account=buyer, amount=Decimal("1.01"), actor=customer)

    assert refused.value.code == FundingErrorCode.INSUFFICIENT_FUNDS
    assert funding_rows() == before


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (Decimal("0.00"), FundingErrorCode.AMOUNT_INVALID),
        (Decimal("-1.00"), FundingErrorCode.AMOUNT_INVALID),
        (Decimal("1.005"), FundingErrorCode.AMOUNT_INVALID),
        (WITHDRAWAL_AMOUNT_MAX + Decimal("0.01"), FundingErrorCode.AMOUNT_TOO_LARGE),
        # More digits than the decimal context holds: quantizing them to cents raised
        # InvalidOperation (a 500 on the funding page, whose form lets them through).
        (Decimal("99999999999999999999999999999"), FundingErrorCode.AMOUNT_TOO_LARGE),
        (Decimal("1e400"), FundingErrorCode.AMOUNT_TOO_LARGE),
    ],
)
def test_a_malformed_amount_is_refused_and_writes_nothing(test_funds_mode, buyer, amount, code):
    fund(buyer)
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        withdrawal_request(account=buyer, amount=amount, actor=None)

    assert refused.value.code == code
    assert funding_rows() == before


def test_approval_in_test_mode_posts_to_the_test_funds(test_funds_mode, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)

    paid = withdrawal_approve(withdrawal=withdrawal, actor=staff)

    assert paid.status == Withdrawal.Status.PAID
    assert paid.stripe_payout_id == ""
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)
    entry = Entry.objects.get(pk=paid.ledger_entry_id)
    postings = {posting.account_id: posting.amount for posting in entry.postings.all()}
    assert postings == {
        ledger_accounts.cash_account(buyer).pk: 2_500_000_000,
        ledger_accounts.test_funds_account().pk: -2_500_000_000,
    }
    assert Hold.objects.get(pk=paid.ledger_hold_id).status == Hold.Status.POSTED
    assert paid.reviewed_by == staff
    assert list(
        AuditEntry.objects.filter(target_type="Withdrawal")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["withdrawal.request", "withdrawal.approve", "withdrawal.pay"]


def test_approval_pays_out_through_stripe_and_posts(fake_stripe, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)

    paid = withdrawal_approve(withdrawal=withdrawal, actor=staff)

    (request,) = fake_stripe.requests
    assert request["path"] == "/v1/payouts"
    assert (request["form"]["amount"], request["form"]["currency"]) == ("250000", "usd")
    assert request["idempotency_key"] == f"withdrawal-{withdrawal.pk}-payout"
    assert paid.status == Withdrawal.Status.PAID
    assert paid.stripe_payout_id.startswith("po_test_")
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)
    stripe_ledger = ledger_accounts.stripe_account()
    assert stripe_ledger.credits_posted == 2_500_000_000


def test_a_refused_payout_releases_the_funds(fake_stripe, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    fake_stripe.fail_payouts = True

    with pytest.raises(FundingError) as refused:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)

    assert refused.value.code == FundingErrorCode.PAYOUT_FAILED
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.FAILED
    assert "insufficient funds" in withdrawal.reason
    assert balance(buyer) == (FUNDED, 0, FUNDED)
    assert Hold.objects.get(pk=withdrawal.ledger_hold_id).status == Hold.Status.VOIDED
    assert not Entry.objects.filter(idempotency_key__startswith="withdrawal:").exists()


@pytest.mark.parametrize("answer", ["server_error", "in_progress"])
def test_a_payout_stripe_does_not_confirm_stays_approved_and_is_paid_once_on_retry(
    fake_stripe, buyer, customer, staff, answer
):
    # given an approval whose payout Stripe answers without saying whether it was made (a 500,
    # or a 409 because another approval of the same withdrawal is still paying it)
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    fake_stripe.payout_unconfirmed = answer

    # when staff approve it
    with pytest.raises(FundingError) as unconfirmed:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)

    # then it is named, the withdrawal stays approved and its money stays held: releasing it
    # would let the customer spend or withdraw again what Stripe may already have paid out
    assert unconfirmed.value.code == FundingErrorCode.PAYOUT_UNCONFIRMED
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.APPROVED
    assert Hold.objects.get(pk=withdrawal.ledger_hold_id).status == Hold.Status.PENDING
    assert balance(buyer) == (FUNDED, AMOUNT, FUNDED - AMOUNT)
    assert not AuditEntry.objects.filter(action="withdrawal.fail").exists()

    # when Stripe answers again and staff approve again
    fake_stripe.payout_unconfirmed = ""
    paid = withdrawal_approve(withdrawal=withdrawal, actor=staff)

    # then it is paid once, with the one idempotency key the first attempt used
    assert paid.status == Withdrawal.Status.PAID
    keys = {request["idempotency_key"] for request in fake_stripe.requests}
    assert keys == {f"withdrawal-{withdrawal.pk}-payout"}
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)
    assert Entry.objects.filter(idempotency_key__startswith="withdrawal:").count() == 1


def test_a_payout_made_but_unconfirmed_is_not_made_again_after_stripe_forgets_its_key(
    fake_stripe, buyer, customer, staff
):
    # given an approval whose payout Stripe made but answered with a 500
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    fake_stripe.payout_unconfirmed = "made_then_server_error"
    with pytest.raises(FundingError) as unconfirmed:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)
    assert unconfirmed.value.code == FundingErrorCode.PAYOUT_UNCONFIRMED
    [made] = fake_stripe.payouts
    # and more than a day passes: Stripe no longer knows the idempotency key
    fake_stripe.payout_unconfirmed = ""
    fake_stripe.forget_keys()

    # when staff approve it again
    paid = withdrawal_approve(withdrawal=withdrawal, actor=staff)

    # then it is paid with the payout made first: Stripe is asked for it, and no second one
    # is made
    assert (paid.status, paid.stripe_payout_id) == (Withdrawal.Status.PAID, made["id"])
    assert fake_stripe.payouts == [made]
    assert made["metadata"] == {"withdrawal_id": str(withdrawal.pk)}
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)


def test_a_retry_with_no_payout_made_makes_one(fake_stripe, buyer, customer, staff):
    # given an approval whose payout Stripe did not make (a 500 before making it)
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    fake_stripe.payout_unconfirmed = "server_error"
    with pytest.raises(FundingError):
        withdrawal_approve(withdrawal=withdrawal, actor=staff)
    fake_stripe.payout_unconfirmed = ""

    # when staff approve it again
    paid = withdrawal_approve(withdrawal=withdrawal, actor=staff)

    # then Stripe is asked for a payout made since the approval, has none, and makes one
    [made] = fake_stripe.payouts
    assert (paid.status, paid.stripe_payout_id) == (Withdrawal.Status.PAID, made["id"])
    [listed] = fake_stripe.lists
    approved_at = int(paid.reviewed_at.timestamp())
    assert approved_at - 600 < int(listed["created[gte]"][0]) <= approved_at


def test_rejection_releases_the_funds(test_funds_mode, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)

    rejected = withdrawal_reject(
        withdrawal=withdrawal, actor=staff, reason="bank details unverified"
    )

    assert rejected.status == Withdrawal.Status.REJECTED
    assert rejected.reason == "bank details unverified"
    assert balance(buyer) == (FUNDED, 0, FUNDED)
    assert Hold.objects.get(pk=withdrawal.ledger_hold_id).status == Hold.Status.VOIDED
    audit = AuditEntry.objects.get(action="withdrawal.reject")
    assert (audit.actor, audit.reason) == (staff, "bank details unverified")


def test_the_customer_cancels_a_withdrawal_before_review(test_funds_mode, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)

    cancelled = withdrawal_cancel(account=buyer, withdrawal_id=withdrawal.pk, actor=customer)

    # then its funds are available again, and staff can no longer pay it out
    assert cancelled.status == Withdrawal.Status.CANCELLED
    assert balance(buyer) == (FUNDED, 0, FUNDED)
    assert Hold.objects.get(pk=withdrawal.ledger_hold_id).status == Hold.Status.VOIDED
    audit = AuditEntry.objects.get(action="withdrawal.cancel")
    assert (audit.actor, audit.before, audit.after) == (
        customer,
        {"status": "requested"},
        {"status": "cancelled"},
    )
    with pytest.raises(FundingError) as refused:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)
    assert refused.value.code == FundingErrorCode.INVALID_STATUS_CHANGE
    assert balance(buyer) == (FUNDED, 0, FUNDED)
    assert not Entry.objects.filter(idempotency_key__startswith="withdrawal:").exists()


def test_an_approved_withdrawal_cannot_be_cancelled(test_funds_mode, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    withdrawal_approve(withdrawal=withdrawal, actor=staff)
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        withdrawal_cancel(account=buyer, withdrawal_id=withdrawal.pk, actor=customer)

    assert refused.value.code == FundingErrorCode.INVALID_STATUS_CHANGE
    assert funding_rows() == before
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)


def test_another_accounts_withdrawal_is_not_found_to_cancel(test_funds_mode, buyer, seller):
    fund(seller)
    withdrawal = withdrawal_request(account=seller, amount=AMOUNT, actor=None)

    with pytest.raises(Withdrawal.DoesNotExist):
        withdrawal_cancel(account=buyer, withdrawal_id=withdrawal.pk, actor=None)

    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.REQUESTED


def test_only_staff_review_withdrawals(test_funds_mode, buyer, customer):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    before = funding_rows()

    for review in (
        lambda: withdrawal_approve(withdrawal=withdrawal, actor=customer),
        lambda: withdrawal_reject(withdrawal=withdrawal, actor=customer, reason="x"),
        lambda: withdrawal_approve(withdrawal=withdrawal, actor=None),
    ):
        with pytest.raises(FundingError) as refused:
            review()
        assert refused.value.code == FundingErrorCode.NOT_STAFF

    assert funding_rows() == before
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.REQUESTED


def test_staff_without_the_finance_role_do_not_review_withdrawals(
    test_funds_mode, buyer, customer, django_user_model
):
    # given staff with every role but finance, and a requested withdrawal
    risk = django_user_model.objects.create_user("risk", is_staff=True)
    staff_roles_grant(user=risk, roles=[Role.OPERATIONS, Role.RISK], actor=None)
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    before = funding_rows()

    # when they approve or reject it
    for review in (
        lambda: withdrawal_approve(withdrawal=withdrawal, actor=risk),
        lambda: withdrawal_reject(withdrawal=withdrawal, actor=risk, reason="x"),
    ):
        with pytest.raises(FundingError) as refused:
            review()
        # then it is refused, naming the role, and nothing is written
        assert refused.value.code == FundingErrorCode.NOT_FINANCE
        assert "finance" in refused.value.message

    assert funding_rows() == before
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.reviewed_by) == (Withdrawal.Status.REQUESTED, None)
    assert Hold.objects.get(pk=withdrawal.ledger_hold_id).status == Hold.Status.PENDING
    assert balance(buyer) == (FUNDED, AMOUNT, FUNDED - AMOUNT)


@pytest.mark.parametrize("review", ["approve", "reject"])
def test_a_superuser_reviews_withdrawals(
    test_funds_mode, buyer, customer, django_user_model, review
):
    root = django_user_model.objects.create_superuser("root", "root@exchange.example", "x-2026")
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)

    if review == "approve":
        reviewed = withdrawal_approve(withdrawal=withdrawal, actor=root)
    else:
        reviewed = withdrawal_reject(withdrawal=withdrawal, actor=root, reason="no")

    expected = {"approve": Withdrawal.Status.PAID, "reject": Withdrawal.Status.REJECTED}[review]
    assert (reviewed.status, reviewed.reviewed_by) == (expected, root)


def test_a_reviewed_withdrawal_cannot_be_reviewed_again(test_funds_mode, buyer, customer, staff):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    withdrawal_reject(withdrawal=withdrawal, actor=staff, reason="no")
    before = funding_rows()

    with pytest.raises(FundingError) as refused:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)

    assert refused.value.code == FundingErrorCode.INVALID_STATUS_CHANGE
    assert funding_rows() == before
    assert balance(buyer) == (FUNDED, 0, FUNDED)


def test_the_back_office_approves_and_rejects(test_funds_mode, admin_client, buyer, customer):
    fund(buyer)
    first = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    second = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    url = "/admin/exchange/withdrawal/"

    admin_client.post(url, {"action": "approve", "_selected_action": [first.pk], "confirm": "1"})
    admin_client.post(
        url,
        {
            "action": "reject",
            "_selected_action": [second.pk],
            "confirm": "1",
            "reason": "bank details do not match",
        },
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Withdrawal.Status.PAID, Withdrawal.Status.REJECTED)
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)
    assert admin_client.get(url).status_code == 200
    assert admin_client.get("/admin/exchange/deposit/").status_code == 200
    assert admin_client.get("/admin/exchange/stripeevent/").status_code == 200


def _margin_call(account, *, deficit=0) -> MarginCall:
    return MarginCall.objects.create(
        account=account,
        trading_date=date(2026, 12, 4),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=deficit,
    )


def test_no_withdrawal_is_requested_while_a_margin_call_is_open(test_funds_mode, buyer, customer):
    # given cash, and a call with 7,683.18 USD of losses the account owes
    fund(buyer)
    _margin_call(buyer, deficit=7_683_180_000)
    before = funding_rows()

    # when the customer asks for part of the cash
    with pytest.raises(FundingError) as refused:
        withdrawal_request(account=buyer, amount=Decimal("500.00"), actor=customer)

    # then it is refused, naming the call and the deficit, and nothing is written or held
    assert refused.value.code == FundingErrorCode.MARGIN_CALL_OPEN
    assert "17,683.18 USD due, and owes 7,683.18 USD of losses" in refused.value.message
    assert funding_rows() == before
    assert balance(buyer) == (FUNDED, 0, FUNDED)


def test_a_withdrawal_asked_before_a_call_waits_for_it_to_be_met(
    test_funds_mode, buyer, customer, staff
):
    # given a withdrawal requested, then a margin call opened on the account
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    call = _margin_call(buyer)

    # when staff approve it: refused, and the withdrawal stays as it was
    with pytest.raises(FundingError) as refused:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)
    assert refused.value.code == FundingErrorCode.MARGIN_CALL_OPEN
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.REQUESTED
    assert balance(buyer) == (FUNDED, AMOUNT, FUNDED - AMOUNT)

    # then once the call is cured the approval pays it
    call.status = MarginCall.Status.CURED
    call.save()
    paid = withdrawal_approve(withdrawal=withdrawal, actor=staff)
    assert paid.status == Withdrawal.Status.PAID
    assert balance(buyer) == (FUNDED - AMOUNT, 0, FUNDED - AMOUNT)


def test_rejecting_a_withdrawal_under_a_call_frees_its_cash_for_the_call(
    test_funds_mode, buyer, customer, staff
):
    fund(buyer)
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    _margin_call(buyer)

    withdrawal_reject(withdrawal=withdrawal, actor=staff, reason="margin call")

    assert balance(buyer) == (FUNDED, 0, FUNDED)


def test_a_payout_left_unconfirmed_is_on_the_finance_dashboard_to_retry(
    fake_stripe, client, buyer, customer, staff
):
    from django.urls import reverse

    # given two withdrawals to review, one of which staff approved while Stripe did not answer
    fund(buyer)
    withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    stuck = withdrawal_request(account=buyer, amount=AMOUNT, actor=customer)
    fake_stripe.payout_unconfirmed = "server_error"
    with pytest.raises(FundingError):
        withdrawal_approve(withdrawal=stuck, actor=staff)
    fake_stripe.payout_unconfirmed = ""

    # when finance open the dashboard
    client.force_login(staff)
    response = client.get(reverse("backoffice:dashboard"))

    # then the approved withdrawal, its funds still held, is counted apart from those to review
    today = response.context["today"]
    assert (today.pending_withdrawals, today.payouts_to_retry) == (1, 1)
    page = response.content.decode()
    assert "Payouts to retry" in page
    # and a link lists it, with the approval that retries it
    link = reverse("admin:exchange_withdrawal_changelist") + "?status__exact=approved"
    assert f'href="{link}"' in page
    listed = client.get(link)
    assert [row.pk for row in listed.context["cl"].result_list] == [stuck.pk]
    assert "approve" in dict(listed.context["action_form"].fields["action"].choices)


@pytest.mark.parametrize("requester", ["reviewer", "colleague"])
def test_staff_do_not_approve_their_own_organization_s_withdrawals(
    test_funds_mode, buyer, staff, django_user_model, requester
):
    # given finance staff who are also a trader of the buyer's organization, and a withdrawal
    # asked by them or by a colleague of that organization
    from exchange.models import Membership

    Membership.objects.create(user=staff, organization=buyer.organization)
    colleague = django_user_model.objects.create_user("colleague")
    Membership.objects.create(user=colleague, organization=buyer.organization)
    fund(buyer)
    asker = staff if requester == "reviewer" else colleague
    withdrawal = withdrawal_request(account=buyer, amount=AMOUNT, actor=asker)
    before = funding_rows()

    # when they approve it
    with pytest.raises(FundingError) as refused:
        withdrawal_approve(withdrawal=withdrawal, actor=staff)

    # then it is refused by name, and nothing is written: the money would leave on the word
    # of one of its own holders; other finance staff review it
    assert refused.value.code == FundingErrorCode.REVIEWER_IS_MEMBER
    assert refused.value.code == "FUNDING_REVIEWER_IS_MEMBER"
    assert funding_rows() == before
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.reviewed_by) == (Withdrawal.Status.REQUESTED, None)
    assert balance(buyer) == (FUNDED, AMOUNT, FUNDED - AMOUNT)
    other = django_user_model.objects.create_user("finance-2", is_staff=True)
    staff_roles_grant(user=other, roles=[Role.FINANCE], actor=None)
    assert withdrawal_approve(withdrawal=withdrawal, actor=other).status == Withdrawal.Status.PAID
