"""Members sign in and see their own organization's money, and only theirs."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from exchange.models import Membership, Organization
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds, withdrawal_request
from exchange.services.orders import order_place
from exchange.services.participants import account_main, member_add, organization_create

pytestmark = pytest.mark.django_db

PASSWORD = "portfolio-pass-2026"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def startup():
    organization = organization_create(
        slug="lumen", name="Lumen Labs", kind=Organization.Kind.STARTUP
    )
    member_add(
        organization=organization,
        username="alice",
        email="alice@lumen.example",
        password=PASSWORD,
        role=Membership.Role.TRADER,
    )
    return organization


@pytest.fixture
def trader():
    organization = organization_create(
        slug="helix", name="Helix Trading", kind=Organization.Kind.TRADING_FIRM
    )
    member_add(
        organization=organization, username="hank", email="hank@helix.example", password=PASSWORD
    )
    return organization


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(reverse("web:portfolio"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_member_signs_in_and_sees_funded_cash(client, startup):
    # given a funded account with part of it held for a withdrawal
    account = account_main(startup)
    deposit_test_funds(account=account, amount=Decimal("250000.00"), actor=None)
    user = get_user_model().objects.get(username="alice")
    withdrawal_request(account=account, amount=Decimal("50000.00"), actor=user)

    # when alice signs in through the login form
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True
    )

    # then she lands on her portfolio with exact balances
    assert response.redirect_chain[-1][0] == reverse("web:portfolio")
    page = response.content.decode()
    assert "Lumen Labs" in page
    assert "250,000.00" in page  # cash balance
    assert "50,000.00" in page  # held for the withdrawal
    assert "200,000.00" in page  # available
    assert (
        "Test-funds mode" in page
    )  # No Stripe keys in tests: the money is labelled as test funds.


def test_wrong_password_is_refused_with_a_message(client, startup):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_member_never_sees_another_organizations_money(client, startup, trader):
    deposit_test_funds(account=account_main(trader), amount=Decimal("9876543.21"), actor=None)
    client.force_login(get_user_model().objects.get(username="alice"))

    page = client.get(reverse("web:portfolio")).content.decode()

    assert "Helix Trading" not in page
    assert "9,876,543.21" not in page


def test_sign_out_needs_post_and_ends_the_session(client, startup):
    client.force_login(get_user_model().objects.get(username="alice"))

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert client.get(reverse("web:portfolio")).status_code == 302


def test_holder_sees_its_gpu_hour_entitlements(client, startup, trader, sku, region):
    # given a block a provider registered for the startup
    capacity_register(
        provider=organization_create(
            slug="northwind", name="Northwind", kind=Organization.Kind.PROVIDER
        ),
        holder=startup,
        cluster="nw-portland-b200-b",
        sku=sku,
        region=region,
        starts_at=datetime(2027, 2, 1, tzinfo=UTC),
        ends_at=datetime(2027, 3, 1, tzinfo=UTC),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )

    # when alice opens her portfolio, and hank his
    client.force_login(get_user_model().objects.get(username="alice"))
    alice_page = client.get(reverse("web:portfolio")).content.decode()
    client.force_login(get_user_model().objects.get(username="hank"))
    hank_page = client.get(reverse("web:portfolio")).content.decode()

    # then only the holder sees the 16 x 672 GPU-hours of February 2027
    code = f"GPUH-{sku.code}-{region.code}-202702"
    assert code in alice_page and "10,752" in alice_page
    assert code not in hank_page


def _trader_of(account, username):
    member_add(
        organization=account.organization,
        username=username,
        email=f"{username}@example.com",
        password=PASSWORD,
    )
    return get_user_model().objects.get(username=username)


def _usd(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def test_member_sees_positions_with_mark_pnl_and_margin(client, future, buyer, seller, maker):
    # given the buyer long 3 bought at 2.50, and a later trade at 2.60
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3)
    order_place(account=maker, instrument=future, side="sell", price=Decimal("2.60"), quantity=1)
    order_place(account=seller, instrument=future, side="buy", price=Decimal("2.60"), quantity=1)
    client.force_login(_trader_of(buyer, "alice"))

    # when alice opens her portfolio
    response = client.get(reverse("web:portfolio"))

    # then the position is listed with a link to its instrument, marked at the last trade
    hours = future.gpu_hours_per_contract
    page = response.content.decode()
    assert "Positions" in page
    assert f'href="{reverse("web:instrument", args=[future.symbol])}"' in page
    assert f">{3 * hours:,}<" in page  # GPU-hours
    assert "2.5000" in page  # average price
    assert "2.600" in page  # mark
    assert _usd(Decimal("0.10") * 3 * hours) in page  # P&L
    assert _usd(settings.EXCHANGE_PRICE_SCAN * Decimal("2.50") * 3 * hours) in page
    (row,) = response.context["rows"]
    assert [position.contracts for position in row["positions"]] == [3]
    assert row["pnl_total"] == Decimal("0.10") * 3 * hours


def test_member_without_positions_sees_the_empty_state(client, buyer):
    client.force_login(_trader_of(buyer, "alice"))

    page = client.get(reverse("web:portfolio")).content.decode()

    assert "No positions in futures or options." in page


def test_member_never_sees_another_organizations_positions(
    client, futures, buyer, seller, maker, fourth
):
    # given alice's organization trading the front month, and two others the second month
    order_place(
        account=seller, instrument=futures[0], side="sell", price=Decimal("2.50"), quantity=3
    )
    order_place(account=buyer, instrument=futures[0], side="buy", price=Decimal("2.50"), quantity=3)
    order_place(
        account=maker, instrument=futures[1], side="sell", price=Decimal("2.60"), quantity=7
    )
    order_place(
        account=fourth, instrument=futures[1], side="buy", price=Decimal("2.60"), quantity=7
    )
    client.force_login(_trader_of(buyer, "alice"))

    # when alice opens her portfolio
    response = client.get(reverse("web:portfolio"))

    # then she sees her own position only
    page = response.content.decode()
    assert futures[0].symbol in page
    assert futures[1].symbol not in page
    assert "Northwind" not in page and "Helix" not in page and "Quanta" not in page
    (row,) = response.context["rows"]
    assert [position.instrument for position in row["positions"]] == [futures[0]]


def test_portfolio_queries_do_not_grow_with_positions(client, futures, buyer, seller):
    # given alice's account long in one future
    client.force_login(_trader_of(buyer, "alice"))
    for side, account in (("sell", seller), ("buy", buyer)):
        order_place(
            account=account, instrument=futures[0], side=side, price=Decimal("2.50"), quantity=3
        )
    with CaptureQueriesContext(connection) as one_position:
        client.get(reverse("web:portfolio"))

    # when it is long in a second future too
    for side, account in (("sell", seller), ("buy", buyer)):
        order_place(
            account=account, instrument=futures[1], side=side, price=Decimal("2.60"), quantity=2
        )
    with CaptureQueriesContext(connection) as two_positions:
        response = client.get(reverse("web:portfolio"))

    # then the page takes the same number of queries
    assert len(response.context["rows"][0]["positions"]) == 2
    assert len(two_positions) == len(one_position)
