"""The funding page: cash balance, deposits (test funds at once, or Stripe Checkout), withdrawal
requests; viewers read only; refusals next to the field with nothing written; only the
member's own organization's money."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from exchange.models import Account, Deposit, Membership, Organization, Withdrawal
from exchange.selectors.funding import cash_balance
from exchange.services.funding import (
    TEST_FUNDS_AMOUNT_MAX,
    WITHDRAWAL_AMOUNT_MAX,
    deposit_test_funds,
    withdrawal_request,
)
from exchange.services.ledger_accounts import cash_account
from exchange.services.participants import member_add
from ledger.services import hold_create
from tests.exchange.conftest import _account
from tests.exchange.funding.conftest import fake_stripe, funding_rows  # noqa: F401

pytestmark = pytest.mark.django_db

PASSWORD = "funding-pass-2026"


@pytest.fixture(autouse=True)
def _test_funds_mode(settings):
    """The embedded default, whatever the environment says; ``fake_stripe`` switches it off."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = ""


@pytest.fixture
def account():
    """Lumen's main account, empty."""
    return _account("lumen", Organization.Kind.STARTUP, funded=False)


@pytest.fixture
def other():
    """Another organization's account, with money of its own."""
    other = _account("helix", Organization.Kind.TRADING_FIRM, funded=False)
    deposit_test_funds(account=other, amount=Decimal("9876543.21"), actor=None)
    return other


def _member(account, username, role=Membership.Role.TRADER):
    return member_add(
        organization=account.organization,
        username=username,
        email=f"{username}@example.com",
        password=PASSWORD,
        role=role,
    ).user


@pytest.fixture
def trader(client, account):
    user = _member(account, "alice")
    client.force_login(user)
    return user


@pytest.fixture
def viewer(client, account):
    user = _member(account, "victor", Membership.Role.VIEWER)
    client.force_login(user)
    return user


def _deposit(client, amount):
    return client.post(reverse("web:funding"), {"action": "deposit", "deposit-amount": amount})


def _withdraw(client, amount):
    return client.post(
        reverse("web:funding"), {"action": "withdrawal", "withdrawal-amount": amount}
    )


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(reverse("web:funding"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_trader_sees_the_balance_and_the_labelled_test_funds_form(client, account, trader):
    deposit_test_funds(account=account, amount=Decimal("1250.50"), actor=None)

    response = client.get(reverse("web:funding"))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="value" id="cash-posted">1,250.50</span>' in page
    assert '<span class="value" id="cash-available">1,250.50</span>' in page
    assert "Test money." in page and "No real money moves." in page
    assert "Add test funds</button>" in page
    assert '<label for="id_deposit-amount">Test funds amount (USD)</label>' in page
    assert '<label for="id_withdrawal-amount">Withdrawal amount (USD)</label>' in page


def test_cash_is_shown_as_the_ledger_holds_it_as_on_the_portfolio(client, account, trader):
    # given cash whose held part is not whole cents (fees and margin are in micro-dollars)
    deposit_test_funds(account=account, amount=Decimal("1000.00"), actor=None)
    hold_create(
        key="test:fee-share",
        account=cash_account(account),
        side="debit",
        amount=164_000,  # 0.164 USD
        description="A fee share",
    )

    page = client.get(reverse("web:funding")).content.decode()
    portfolio = client.get(reverse("web:portfolio")).content.decode()

    # then each figure is written exactly, with thousands separators: whole cents when exact,
    # else every micro-dollar, so held + available is the balance. Rounded to cents the page
    # showed 999.84 available, which a withdrawal of 999.84 could not have (999.836 is).
    assert '<span class="value" id="cash-posted">1,000.00</span>' in page
    assert '<span class="value" id="cash-pending">0.164000</span>' in page
    assert '<span class="value" id="cash-available">999.836000</span>' in page
    # and the portfolio writes the same figures
    for label, amount in (
        ("Cash balance", "1,000.00"),
        ("Held", "0.164000"),
        ("Cash available", "999.836000"),
    ):
        assert f'{label} (USD)</span><span class="value">{amount}<' in portfolio


def test_a_viewer_sees_the_money_but_no_forms(client, account, viewer):
    deposit_test_funds(account=account, amount=Decimal("300.00"), actor=None)

    response = client.get(reverse("web:funding"))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="value" id="cash-posted">300.00</span>' in page
    assert "Add test funds</button>" not in page and "Request withdrawal" not in page
    assert "Your role is viewer" in page


@pytest.mark.parametrize("action", ["deposit", "withdrawal", "cancel_withdrawal"])
def test_a_viewer_cannot_move_money(client, account, viewer, action):
    deposit_test_funds(account=account, amount=Decimal("300.00"), actor=None)
    withdrawal = withdrawal_request(account=account, amount=Decimal("10.00"), actor=None)
    before = funding_rows()

    response = client.post(
        reverse("web:funding"),
        {"action": action, f"{action}-amount": "10", "withdrawal": withdrawal.pk},
    )

    assert response.status_code == 403
    assert funding_rows() == before


def test_a_member_of_no_organization_gets_404(client):
    client.force_login(get_user_model().objects.create_user("loner", password=PASSWORD))

    assert client.get(reverse("web:funding")).status_code == 404


def test_adding_test_funds_credits_the_balance_at_once(client, account, trader):
    # when
    response = _deposit(client, "2500.00")

    # then
    assert response.status_code == 302 and response["Location"] == reverse("web:funding")
    assert cash_balance(account).available == Decimal("2500.00")
    deposit = Deposit.objects.get()
    assert (deposit.account, deposit.amount, deposit.method, deposit.status) == (
        account,
        Decimal("2500.00"),
        Deposit.Method.TEST_FUNDS,
        Deposit.Status.CREDITED,
    )
    assert deposit.requested_by == trader
    page = client.get(reverse("web:funding")).content.decode()
    assert "2,500.00 USD of test funds credited." in page
    assert '<span class="value" id="cash-posted">2,500.00</span>' in page
    assert '<td class="status-credited">Credited</td>' in page


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "Give a positive amount, at least 0.01 USD."),
        ("-5.00", "Give a positive amount, at least 0.01 USD."),
        ("10.001", "Give whole cents: at most 2 decimals."),
        ("ten", "Give an amount in USD, such as 2500.00."),
        ("NaN", "Give an amount in USD, such as 2500.00."),
        ("", "Give an amount in USD."),
        (str(TEST_FUNDS_AMOUNT_MAX + Decimal("0.01")), "above the maximum"),
        # More digits than the decimal context holds: a server error until the maximum was
        # checked before the cents.
        ("1e400", "above the maximum"),
        ("99999999999999999999999999999", "above the maximum"),
    ],
)
def test_a_bad_deposit_amount_is_shown_next_to_the_field_and_writes_nothing(
    client, account, trader, amount, message
):
    before = funding_rows()

    response = _deposit(client, amount)

    assert response.status_code == 200
    errors = response.context["deposit_form"].errors["amount"]
    assert any(message in error for error in errors)
    assert 'id="id_deposit-amount_error"' in response.content.decode()
    assert funding_rows() == before


def test_a_withdrawal_request_is_pending_and_holds_the_cash(client, account, trader):
    deposit_test_funds(account=account, amount=Decimal("1000.00"), actor=None)

    response = _withdraw(client, "400.00")

    assert response.status_code == 302
    withdrawal = Withdrawal.objects.get()
    assert (withdrawal.account, withdrawal.amount, withdrawal.status) == (
        account,
        Decimal("400.00"),
        Withdrawal.Status.REQUESTED,
    )
    balance = cash_balance(account)
    assert (balance.posted, balance.pending, balance.available) == (
        Decimal("1000"),
        Decimal("400"),
        Decimal("600"),
    )
    page = client.get(reverse("web:funding")).content.decode()
    assert "Requested (funds held)" in page
    assert '<span class="value" id="cash-pending">400.00</span>' in page
    assert '<span class="value" id="cash-available">600.00</span>' in page


def _cancel(client, withdrawal_id):
    return client.post(
        reverse("web:funding"), {"action": "cancel_withdrawal", "withdrawal": withdrawal_id}
    )


def test_a_trader_cancels_a_withdrawal_before_review_and_gets_the_cash_back(
    client, account, trader
):
    deposit_test_funds(account=account, amount=Decimal("1000.00"), actor=None)
    _withdraw(client, "400.00")
    withdrawal = Withdrawal.objects.get()
    page = client.get(reverse("web:funding")).content.decode()
    assert 'name="action" value="cancel_withdrawal"' in page

    response = _cancel(client, withdrawal.pk)

    assert response.status_code == 302
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.CANCELLED
    assert cash_balance(account).available == Decimal("1000")
    page = client.get(reverse("web:funding")).content.decode()
    assert "Withdrawal of 400.00 USD cancelled" in page
    assert "Cancelled by the customer (funds released)" in page
    assert 'name="action" value="cancel_withdrawal"' not in page
    # and a second cancel is refused by name, changing nothing
    assert _cancel(client, withdrawal.pk).status_code == 302
    assert "FUNDING_INVALID_STATUS_CHANGE" in client.get(reverse("web:funding")).content.decode()


def test_a_trader_cannot_cancel_another_organizations_withdrawal(client, account, other, trader):
    deposit_test_funds(account=other, amount=Decimal("1000.00"), actor=None)
    withdrawal = withdrawal_request(account=other, amount=Decimal("400.00"), actor=None)

    response = _cancel(client, withdrawal.pk)

    assert response.status_code == 404
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.REQUESTED
    assert cash_balance(other).pending == Decimal("400")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (
            "600.01",
            "has 600.00 USD available: less than the 600.01 USD asked for. "
            "(FUNDING_INSUFFICIENT_FUNDS)",
        ),
        ("0", "Give a positive amount"),
        (str(WITHDRAWAL_AMOUNT_MAX + Decimal("0.01")), "above the maximum"),
        ("1e400", "above the maximum"),
    ],
)
def test_a_bad_withdrawal_is_shown_next_to_the_field_and_writes_nothing(
    client, account, trader, amount, message
):
    deposit_test_funds(account=account, amount=Decimal("600.00"), actor=None)
    before = funding_rows()

    response = _withdraw(client, amount)

    assert response.status_code == 200
    errors = response.context["withdrawal_form"].errors["amount"]
    assert any(message in error for error in errors)
    assert 'id="id_withdrawal-amount_error"' in response.content.decode()
    assert funding_rows() == before
    assert cash_balance(account).available == Decimal("600.00")


def test_a_closed_account_refuses_deposits_above_the_form(client, account, trader):
    Account.objects.filter(pk=account.pk).update(status=Account.Status.CLOSED)
    before = funding_rows()

    response = _deposit(client, "10.00")

    assert response.status_code == 200
    assert response.context["deposit_form"].non_field_errors() == [
        f"Account {account} is closed. (FUNDING_ACCOUNT_INACTIVE)"
    ]
    assert funding_rows() == before


def test_an_unknown_action_is_a_bad_request(client, account, trader):
    before = funding_rows()

    response = client.post(reverse("web:funding"), {"action": "transfer", "deposit-amount": "1"})

    assert response.status_code == 400
    assert funding_rows() == before


def test_with_stripe_a_deposit_goes_to_checkout(client, account, trader, fake_stripe):  # noqa: F811
    # given Stripe keys: no test money on the page
    page = client.get(reverse("web:funding")).content.decode()
    assert "Pay with Stripe Checkout</button>" in page
    assert "Test money." not in page and "Add test funds" not in page

    # when
    response = _deposit(client, "125.00")

    # then the payer is sent to Stripe, and the deposit waits for the webhook
    deposit = Deposit.objects.get()
    assert response.status_code == 302
    assert response["Location"] == (
        f"https://checkout.stripe.test/c/pay/{deposit.stripe_checkout_session_id}"
    )
    assert (deposit.method, deposit.status) == (
        Deposit.Method.STRIPE_CHECKOUT,
        Deposit.Status.PENDING,
    )
    assert cash_balance(account).posted == Decimal(0)
    (request,) = fake_stripe.requests
    assert request["form"]["line_items[0][price_data][unit_amount]"] == "12500"
    assert request["form"]["success_url"] == "http://testserver/funding/?checkout=success"
    assert request["form"]["cancel_url"] == "http://testserver/funding/?checkout=cancel"


def test_a_deposit_below_stripes_minimum_is_shown_next_to_the_field(
    client,
    account,
    trader,
    fake_stripe,  # noqa: F811
):
    page = client.get(reverse("web:funding")).content.decode()
    assert "At least 0.50 and at most" in page
    before = funding_rows()

    response = _deposit(client, "0.25")

    assert response.status_code == 200
    assert "FUNDING_AMOUNT_TOO_SMALL" in response.content.decode()
    assert funding_rows() == before
    assert fake_stripe.requests == []


def test_the_checkout_return_is_explained(client, account, trader):
    page = client.get(reverse("web:funding"), {"checkout": "success"}).content.decode()
    assert "credited as soon as Stripe confirms it" in page

    page = client.get(reverse("web:funding"), {"checkout": "cancel"}).content.decode()
    assert "Checkout cancelled: nothing was charged." in page


def test_a_member_never_sees_another_organizations_funding(client, account, other, trader):
    withdrawal_request(account=other, amount=Decimal("1234.56"), actor=None)
    deposit_test_funds(account=account, amount=Decimal("10.00"), actor=None)

    response = client.get(reverse("web:funding"))

    page = response.content.decode()
    assert "9,876,543.21" not in page and "1,234.56" not in page and "Helix" not in page
    assert [deposit.account for deposit in response.context["deposits"]] == [account]
    assert list(response.context["withdrawals"]) == []


def test_deposits_and_withdrawals_go_to_the_members_own_account(client, account, other, trader):
    _deposit(client, "50.00")
    _withdraw(client, "20.00")

    assert cash_balance(other).available == Decimal("9876543.21")
    assert list(Deposit.objects.filter(account=other).values_list("amount", flat=True)) == [
        Decimal("9876543.21")
    ]
    assert not Withdrawal.objects.filter(account=other).exists()
    assert cash_balance(account).available == Decimal("30.00")
