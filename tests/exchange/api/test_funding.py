"""/api/v1/funding/: deposits (test funds at once, or Stripe Checkout on the fake Stripe server
of the funding tests) and withdrawals, each account seeing only its own."""

from decimal import ROUND_DOWN, Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from exchange.models import AuditEntry, Deposit, Organization, Withdrawal
from exchange.services.api_keys import api_key_create
from exchange.services.funding import deposit_test_funds, withdrawal_request
from exchange.services.ledger_accounts import cash_account_code
from ledger.models import Account as LedgerAccount
from tests.exchange.conftest import TEST_ACCOUNT_FUNDS, _account
from tests.exchange.funding.conftest import (  # The fake Stripe server and its switches.
    _no_network,  # noqa: F401 (autouse: no test here reaches the network)
    deliver,
    event,
    fake_stripe,  # noqa: F401 (through stripe_api)
    funding_rows,
    session_paid,
    test_funds_mode,  # noqa: F401 (used by name)
)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

DEPOSITS = "/api/v1/funding/deposits/"
WITHDRAWALS = "/api/v1/funding/withdrawals/"
ALL_SCOPES = ("read", "trade", "transfer")


@pytest.fixture
def payer(db):
    """An account with no money yet, made before any test switches Stripe on."""
    return _account("payer", Organization.Kind.STARTUP, funded=False)


@pytest.fixture
def stripe_api(request, payer):
    """Stripe mode, on the funding tests' fake Stripe server (after ``payer`` exists: test funds
    are refused once Stripe is configured)."""
    return request.getfixturevalue("fake_stripe")


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice")


def api(account, scopes=ALL_SCOPES, actor=None) -> APIClient:
    token = api_key_create(
        organization=account.organization, name="bot", scopes=list(scopes), actor=actor
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


def cash(account) -> tuple[int, int]:
    """(Posted credit balance, pending debits) of ``account``'s cash, micro-USD, from the ledger."""
    row = LedgerAccount.objects.filter(code=cash_account_code(account)).first()
    if row is None:
        return 0, 0
    return row.credits_posted - row.debits_posted, row.debits_pending


def error_of(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


# Deposits ---------------------------------------------------------------------------------


def test_a_body_nested_too_deeply_is_400_not_a_server_error(buyer):
    response = api(buyer).post(
        DEPOSITS, "[" * 100_000 + "]" * 100_000, content_type="application/json"
    )

    assert error_of(response)[:2] == (400, "INVALID_JSON")


def test_a_checkout_below_stripes_minimum_charge_is_422_and_writes_nothing(payer, stripe_api):
    client = api(payer)
    before = funding_rows()

    response = client.post(DEPOSITS, {"amount": "0.49"}, format="json")

    assert error_of(response) == (422, "FUNDING_AMOUNT_TOO_SMALL", "amount")
    assert funding_rows() == before
    assert stripe_api.requests == []


@pytest.mark.usefixtures("test_funds_mode")
def test_a_deposit_in_test_funds_mode_is_credited_at_once(payer, alice):
    # when a key made by alice deposits 2,500.00
    response = api(payer, actor=alice).post(DEPOSITS, {"amount": "2500.00"}, format="json")

    # then the deposit is credited, there is nothing to pay, and the ledger holds the money
    assert response.status_code == 201
    deposit = Deposit.objects.get()
    assert response.json() == {
        "id": deposit.pk,
        "amount": "2500.00",
        "method": "test_funds",
        "status": "credited",
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
        "checkout_url": None,
    }
    assert cash(payer) == (2_500_000_000, 0)
    # and alice, who made the key, is recorded as having asked for it
    assert deposit.requested_by == alice


def test_a_deposit_with_stripe_opens_a_checkout_and_the_webhook_credits_it(
    client, payer, stripe_api
):
    # when the account deposits 1,234.56 with Stripe configured
    response = api(payer).post(DEPOSITS, {"amount": "1234.56"}, format="json")

    # then a pending deposit comes back with the Checkout page to pay at, and no money moved
    assert response.status_code == 201
    deposit = Deposit.objects.get()
    assert (response.json()["status"], response.json()["method"]) == ("pending", "stripe_checkout")
    assert response.json()["checkout_url"] == (
        f"https://checkout.stripe.test/c/pay/{deposit.stripe_checkout_session_id}"
    )
    (request,) = stripe_api.requests
    assert request["path"] == "/v1/checkout/sessions"
    assert request["form"]["line_items[0][price_data][unit_amount]"] == "123456"
    assert request["form"]["success_url"].endswith("/portfolio/")
    assert cash(payer) == (0, 0)

    # when Stripe says the session is paid
    paid = deliver(client, event("evt_api_1", "checkout.session.completed", session_paid(deposit)))

    # then the deposit is credited, as the API's list shows
    assert paid.status_code == 200
    assert cash(payer) == (1_234_560_000, 0)
    (row,) = api(payer).get(DEPOSITS).json()["results"]
    assert (row["id"], row["status"]) == (deposit.pk, "credited")


def test_a_checkout_above_stripes_maximum_is_422_and_writes_nothing(payer, stripe_api):
    client = api(payer)
    before = funding_rows()

    response = client.post(DEPOSITS, {"amount": "1000000.00"}, format="json")

    assert error_of(response) == (422, "FUNDING_AMOUNT_TOO_LARGE", "amount")
    assert funding_rows() == before
    assert stripe_api.requests == []


@pytest.mark.usefixtures("test_funds_mode")
def test_test_funds_above_their_maximum_are_422_and_write_nothing(payer):
    client = api(payer)
    before = funding_rows()

    response = client.post(DEPOSITS, {"amount": "50000000.01"}, format="json")

    assert error_of(response) == (422, "FUNDING_AMOUNT_TOO_LARGE", "amount")
    assert response.json()["error"]["message"] == (
        "50,000,000.01 USD is above the maximum of 50,000,000.00 USD."
    )
    assert funding_rows() == before


MALFORMED = [
    {"amount": "0"},
    {"amount": "0.00"},
    {"amount": "-5.00"},
    {"amount": "10.001"},
    {"amount": "ten"},
    {"amount": "NaN"},
    {"amount": "Infinity"},
    {"amount": "1e20"},
    {"amount": "1e3"},  # 1000.00 to DRF; not dollars and cents as the schema's pattern says.
    {"amount": "1E3"},
    {"amount": " 10.00"},
    {"amount": "+10.00"},
    {"amount": "10."},
    {"amount": None},
    {"amount": [1]},
    {"amount": 10},
    {"amount": 10.5},
    {},
]


@pytest.mark.parametrize("payload", MALFORMED)
@pytest.mark.parametrize("url", [DEPOSITS, WITHDRAWALS])
@pytest.mark.usefixtures("test_funds_mode")
def test_malformed_amounts_are_400_and_write_nothing(buyer, url, payload):
    client = api(buyer)
    before = funding_rows()

    response = client.post(url, payload, format="json")

    assert error_of(response) == (400, "INVALID_INPUT", "amount")
    assert funding_rows() == before


def test_a_body_that_is_not_json_is_400(buyer):
    response = api(buyer).post(DEPOSITS, "amount=5", content_type="application/json")

    assert error_of(response)[:2] == (400, "INVALID_JSON")


@pytest.mark.usefixtures("test_funds_mode")
def test_deposits_list_only_the_callers_own_newest_first_a_page_at_a_time(buyer, seller):
    # given three more deposits to the buyer and one to the seller
    for amount in ("1.00", "2.00", "3.00"):
        deposit_test_funds(account=buyer, amount=Decimal(amount), actor=None)
    deposit_test_funds(account=seller, amount=Decimal("9.00"), actor=None)
    client = api(buyer, scopes=("read",))

    # when the buyer reads its deposits two a page
    amounts, url = [], f"{DEPOSITS}?limit=2"
    while url:
        page = client.get(url).json()
        amounts += [row["amount"] for row in page["results"]]
        url = page["next"]

    # then it sees its four (the initial funding first made), newest first, none of the seller's
    assert amounts == ["3.00", "2.00", "1.00", f"{TEST_ACCOUNT_FUNDS:.2f}"]


# Withdrawals ------------------------------------------------------------------------------


@pytest.mark.usefixtures("test_funds_mode")
def test_a_withdrawal_holds_the_amount_at_once(buyer, alice):
    posted_before, _ = cash(buyer)

    response = api(buyer, actor=alice).post(WITHDRAWALS, {"amount": "1500.25"}, format="json")

    assert response.status_code == 201
    withdrawal = Withdrawal.objects.get()
    assert response.json() == {
        "id": withdrawal.pk,
        "amount": "1500.25",
        "status": "requested",
        "reason": "",
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
        "reviewed_at": None,
    }
    # and the money is still posted but held: available drops by the amount
    assert cash(buyer) == (posted_before, 1_500_250_000)
    assert withdrawal.requested_by == alice
    assert withdrawal.requested_with.name == "bot"  # The key it came with.
    # and its audit row is labelled with that key, as every row of a key's request is
    audit = AuditEntry.objects.get(action="withdrawal.request")
    assert audit.actor == alice
    assert audit.actor_label == f"API key {withdrawal.requested_with.prefix}"
    assert audit.after["api_key"] == withdrawal.requested_with.prefix


@pytest.mark.usefixtures("test_funds_mode")
def test_a_withdrawal_through_a_key_made_on_the_command_line_names_the_key(buyer):
    # given a key with no user behind it (manage.py create_api_key makes these)
    client = api(buyer, actor=None)

    # when it asks for a withdrawal
    response = client.post(WITHDRAWALS, {"amount": "100.00"}, format="json")

    # then the withdrawal and its audit row say which key asked, for staff who review it
    assert response.status_code == 201
    withdrawal = Withdrawal.objects.get()
    key = withdrawal.requested_with
    assert withdrawal.requested_by is None and key is not None
    assert withdrawal.requester == f"API key {key.prefix}"
    audit = AuditEntry.objects.get(action="withdrawal.request")
    assert audit.actor_label == f"API key {key.prefix}"
    assert audit.after["api_key"] == key.prefix


@pytest.mark.usefixtures("test_funds_mode")
def test_withdrawing_more_than_is_available_is_422_and_writes_nothing(buyer):
    # given part of the funds already held for a first withdrawal
    withdrawal_request(account=buyer, amount=Decimal("9000000.00"), actor=None)
    client = api(buyer)
    before = funding_rows()

    # when the rest plus a cent is asked for
    response = client.post(WITHDRAWALS, {"amount": "1000000.01"}, format="json")

    # then it is refused by name, saying in dollars what is available, and nothing is written
    assert error_of(response) == (422, "FUNDING_INSUFFICIENT_FUNDS", "amount")
    assert response.json()["error"]["message"] == (
        "Account lumen/main has 1,000,000.00 USD available: less than the 1,000,000.01 USD "
        "asked for."
    )
    assert funding_rows() == before


def cancel_url(withdrawal) -> str:
    return f"{WITHDRAWALS}{withdrawal.pk}/cancel/"


@pytest.mark.usefixtures("test_funds_mode")
def test_a_withdrawal_cancelled_before_review_releases_the_amount(buyer):
    client = api(buyer)
    posted_before, _ = cash(buyer)
    client.post(WITHDRAWALS, {"amount": "1500.25"}, format="json")
    withdrawal = Withdrawal.objects.get()

    response = client.post(cancel_url(withdrawal))

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (withdrawal.pk, "cancelled")
    assert cash(buyer) == (posted_before, 0)
    audit = AuditEntry.objects.get(action="withdrawal.cancel")
    assert audit.actor_label == f"API key {withdrawal.requested_with.prefix}"
    # and once cancelled it is a conflict, not a second release
    again = client.post(cancel_url(withdrawal))
    assert error_of(again) == (409, "FUNDING_INVALID_STATUS_CHANGE", None)
    assert cash(buyer) == (posted_before, 0)


@pytest.mark.usefixtures("test_funds_mode")
def test_another_organizations_withdrawal_is_404_to_cancel(buyer, seller):
    withdrawal = withdrawal_request(account=seller, amount=Decimal("30.00"), actor=None)
    client = api(buyer)
    before = funding_rows()

    response = client.post(cancel_url(withdrawal))

    assert response.status_code == 404
    assert funding_rows() == before
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.REQUESTED


@pytest.mark.usefixtures("test_funds_mode")
def test_cancelling_a_withdrawal_needs_the_transfer_scope(buyer):
    withdrawal = withdrawal_request(account=buyer, amount=Decimal("30.00"), actor=None)

    response = api(buyer, scopes=("read", "trade")).post(cancel_url(withdrawal))

    assert response.status_code == 403
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.Status.REQUESTED


@pytest.mark.usefixtures("test_funds_mode")
def test_withdrawals_list_only_the_callers_own(buyer, seller):
    withdrawal_request(account=buyer, amount=Decimal("10.00"), actor=None)
    withdrawal_request(account=buyer, amount=Decimal("20.00"), actor=None)
    withdrawal_request(account=seller, amount=Decimal("30.00"), actor=None)

    response = api(buyer, scopes=("read",)).get(WITHDRAWALS)

    assert response.status_code == 200
    assert [row["amount"] for row in response.json()["results"]] == ["20.00", "10.00"]
    assert response.json()["next"] is None


def test_an_account_without_funding_has_empty_lists(payer):
    client = api(payer, scopes=("read",))

    assert client.get(DEPOSITS).json()["results"] == []
    assert client.get(WITHDRAWALS).json()["results"] == []


# Scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scopes", [("read",), ("read", "trade"), ("trade",)])
@pytest.mark.parametrize("url", [DEPOSITS, WITHDRAWALS])
@pytest.mark.usefixtures("test_funds_mode")
def test_moving_money_needs_the_transfer_scope(buyer, scopes, url):
    client = api(buyer, scopes=scopes)
    before = funding_rows()

    response = client.post(url, {"amount": "10.00"}, format="json")

    assert error_of(response)[:2] == (403, "AUTH_SCOPE_MISSING")
    assert funding_rows() == before


@pytest.mark.parametrize("url", [DEPOSITS, WITHDRAWALS])
def test_reading_funding_history_needs_the_read_scope(buyer, url):
    response = api(buyer, scopes=("trade", "transfer")).get(url)

    assert error_of(response)[:2] == (403, "AUTH_SCOPE_MISSING")


@pytest.mark.parametrize("url", [DEPOSITS, WITHDRAWALS])
def test_funding_needs_a_key(buyer, url):
    assert APIClient().post(url, {"amount": "10.00"}, format="json").status_code == 401
    assert APIClient().get(url).status_code == 401


@pytest.mark.usefixtures("test_funds_mode")
def test_a_transfer_only_key_moves_money(buyer):
    client = api(buyer, scopes=("transfer",))

    deposited = client.post(DEPOSITS, {"amount": "10.00"}, format="json")
    withdrawn = client.post(WITHDRAWALS, {"amount": "10.00"}, format="json")

    assert (deposited.status_code, withdrawn.status_code) == (201, 201)


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "2.5"}, {"limit": ""}])
@pytest.mark.parametrize("url", [DEPOSITS, WITHDRAWALS])
def test_a_malformed_page_query_is_400(buyer, url, query):
    response = api(buyer, scopes=("read",)).get(url, query)

    assert error_of(response) == (400, "INVALID_INPUT", "limit")


def test_a_withdrawal_under_a_margin_call_is_422_and_holds_nothing(buyer):
    from datetime import date

    from exchange.models import MarginCall

    MarginCall.objects.create(
        account=buyer,
        trading_date=date(2026, 12, 4),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=7_683_180_000,
    )
    before = cash(buyer)

    response = api(buyer).post(WITHDRAWALS, {"amount": "500.00"}, format="json")

    assert error_of(response) == (422, "FUNDING_MARGIN_CALL_OPEN", None)
    assert "margin call" in response.json()["error"]["message"]
    assert cash(buyer) == before
    assert not Withdrawal.objects.exists()


@pytest.mark.usefixtures("test_funds_mode")
def test_cash_an_order_holds_cannot_be_withdrawn(buyer, future):
    # given a working order holding part of the cash as collateral
    place(buyer, future, "buy", 100, "2.50")
    posted, held = cash(buyer)
    assert held > 0
    client = api(buyer)
    before = funding_rows()

    # when the whole balance is asked for
    response = client.post(WITHDRAWALS, {"amount": f"{TEST_ACCOUNT_FUNDS:.2f}"}, format="json")

    # then it is refused, and what is not held can still be withdrawn
    assert error_of(response) == (422, "FUNDING_INSUFFICIENT_FUNDS", "amount")
    assert funding_rows() == before
    available = (Decimal(posted - held) / 1_000_000).quantize(Decimal("0.01"), ROUND_DOWN)
    response = client.post(WITHDRAWALS, {"amount": str(available)}, format="json")
    assert response.status_code == 201
