"""Members sign in and see their own organization's money, and only theirs."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from exchange.backoffice.roles import Role
from exchange.models import CancelReason, Membership, Organization
from exchange.services.api_keys import api_key_create
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds, withdrawal_request
from exchange.services.orders import order_place, orders_cancel
from exchange.services.participants import account_main, member_add, organization_create
from exchange.services.risk_cycle import daily_settlement_run
from exchange.services.settlement_prices import now_date, settlement_price_override
from tests.exchange.support import staff_user

pytestmark = pytest.mark.django_db

PASSWORD = "portfolio-pass-2026"


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


@pytest.fixture
def held_block(startup, sku, region):
    """16 B200-class GPUs for February 2097 (a term still to come), registered by a provider for
    the startup."""
    return capacity_register(
        provider=organization_create(
            slug="northwind", name="Northwind", kind=Organization.Kind.PROVIDER
        ),
        holder=startup,
        cluster="nw-portland-b200-b",
        sku=sku,
        region=region,
        starts_at=datetime(2097, 2, 1, tzinfo=UTC),
        ends_at=datetime(2097, 3, 1, tzinfo=UTC),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )


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


def test_holder_sees_its_gpu_hour_entitlements(client, startup, trader, held_block, sku, region):
    # given a block a provider registered for the startup (held_block)

    # when alice opens her portfolio, and hank his
    client.force_login(get_user_model().objects.get(username="alice"))
    alice_page = client.get(reverse("web:portfolio")).content.decode()
    client.force_login(get_user_model().objects.get(username="hank"))
    hank_page = client.get(reverse("web:portfolio")).content.decode()

    # then only the holder sees the 16 x 672 GPU-hours of February 2097
    code = f"GPUH-{sku.code}-{region.code}-209702"
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


def test_after_the_daily_cycle_the_page_and_the_api_show_the_settlement_mark(
    client, future, buyer, seller, maker, django_user_model, clock_after_the_close
):
    # given alice's organization long 3 at 2.50, the market's last trade at 2.44, and the day
    # settled at 2.435 by staff (variation margin paid) with no trade since
    staff = staff_user("risk", Role.RISK)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3)
    order_place(account=maker, instrument=future, side="sell", price=Decimal("2.44"), quantity=1)
    order_place(account=seller, instrument=future, side="buy", price=Decimal("2.44"), quantity=1)
    close = timezone.now()
    settlement_price_override(
        instrument=future,
        trading_date=now_date(),
        price=Decimal("2.435"),
        reason="Price of the day from brokers",
        actor=staff,
    )
    daily_settlement_run(trading_date=now_date(), close=close, actor=staff)
    client.force_login(_trader_of(buyer, "alice"))
    token = api_key_create(organization=buyer.organization, name="bot", scopes=["read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")

    # when alice opens her portfolio and her program reads the positions
    response = client.get(reverse("web:portfolio"))
    body = api.get("/api/v1/account/positions/").json()

    # then both mark the position at 2.435, the settlement price, with no P&L left to accrue
    (row,) = response.context["rows"]
    (position,) = row["positions"]
    (api_position,) = body["positions"]
    assert (position.mark_price, position.mark_source, position.pnl) == (
        Decimal("2.435"),
        "settlement",
        0,
    )
    assert (api_position["mark_price"], api_position["mark_source"]) == ("2.435000", "settlement")
    assert Decimal(api_position["pnl"]) == position.pnl == row["pnl_total"]
    assert Decimal(body["totals"]["pnl"]) == row["pnl_total"]
    page = response.content.decode()
    assert "2.435" in page and "2.440" not in page


def test_an_option_marked_at_its_model_settlement_shows_that_mark_as_the_api_does(
    client, call, buyer, seller
):
    # given the buyer long one call bought at 0.100, and the option settled since at its
    # Black-76 value, 0.042476 (model settlement prices are not on the option tick)
    from datetime import timedelta

    from exchange.models import SettlementPrice

    order_place(account=seller, instrument=call, side="sell", price=Decimal("0.100"), quantity=1)
    order_place(account=buyer, instrument=call, side="buy", price=Decimal("0.100"), quantity=1)
    # (a day whose close is still to come, so the settlement is newer than the trade)
    SettlementPrice.objects.create(
        instrument=call,
        trading_date=timezone.now().date() + timedelta(days=1),
        price=Decimal("0.042476"),
        source="model",
    )
    client.force_login(_trader_of(buyer, "alice"))
    token = api_key_create(organization=buyer.organization, name="bot", scopes=["read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")

    # when alice opens her portfolio and her program reads the positions
    response = client.get(reverse("web:portfolio"))
    (api_position,) = api.get("/api/v1/account/positions/").json()["positions"]

    # then both mark the call at 0.042476, the price its P&L is computed at (the page wrote
    # 0.042, so mark x GPU-hours was not the value it showed the P&L of)
    (row,) = response.context["rows"]
    (position,) = row["positions"]
    assert position.mark_price == Decimal("0.042476") == Decimal(api_position["mark_price"])
    hours = call.gpu_hours_per_contract
    assert position.pnl == (Decimal("0.042476") - Decimal("0.100")) * hours
    page = response.content.decode()
    assert '0.042476 <span class="muted">S</span>' in page
    # and the option's page lists that settlement price as it is
    option_page = client.get(reverse("web:instrument", args=[call.symbol])).content.decode()
    assert '<td class="num">0.042476</td><td>Model (forward curve or Black-76)</td>' in option_page


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


# Margin, open orders and fills.


def test_member_sees_margin_used_cash_available_open_orders_and_fills(
    client, future, buyer, seller
):
    # given the seller resting 3 (maker), the buyer taking them (taker), then a resting bid
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3)
    resting = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=2
    )
    client.force_login(_trader_of(buyer, "alice"))

    # when
    response = client.get(reverse("web:portfolio"))

    # then the figures carry margin used and cash available
    page = response.content.decode()
    (row,) = response.context["rows"]
    margin = settings.EXCHANGE_PRICE_SCAN * Decimal("2.50") * 3 * future.gpu_hours_per_contract
    assert row["margin_total"] == margin
    assert f'Margin used (USD)</span><span class="value">{_usd(margin)}<' in page
    available = row["cash"].available
    assert f'Cash available (USD)</span><span class="value">{_usd(available)}<' in page
    # the resting order is listed with a link to its instrument; the filled one is not
    assert [order.pk for order in row["open_orders"]] == [resting.pk]
    assert f"<td>#{resting.pk}" in page
    assert page.count(f'href="{reverse("web:instrument", args=[future.symbol])}"') >= 3
    # the fill shows its fee (taker: 0.50 USD a contract) and its liquidity
    (item,) = row["fills"]
    assert (item["fill"].quantity, item["fill"].liquidity, item["fee"]) == (3, "taker", "1.50")
    assert '<td class="num">1.50</td><td>Taker</td>' in page
    # and the ledger statement is one click away
    assert f'href="{reverse("web:statement")}?account={buyer.pk}"' in page


def test_the_orders_that_ended_lately_are_ordered_by_when_they_ended(client, future, buyer):
    old = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.30"), quantity=1
    )
    newer = [
        order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=1)
        for _ in range(10)
    ]
    orders_cancel(orders=newer, reason=CancelReason.CANCEL_ALL)
    orders_cancel(orders=[old], reason=CancelReason.CANCEL_ALL)
    client.force_login(_trader_of(buyer, "alice"))

    (row,) = client.get(reverse("web:portfolio")).context["rows"]

    ended = [item["order"].pk for item in row["ended_orders"]]
    assert ended[0] == old.pk and len(ended) == 10


def test_member_sees_the_orders_that_ended_and_why_newest_first(client, future, buyer, seller):
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    filled = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3
    )
    ioc = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.45"),
        quantity=2,
        time_in_force="ioc",
    )
    resting = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.40"), quantity=1
    )
    swept = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.35"), quantity=1
    )
    orders_cancel(orders=[swept], reason=CancelReason.CANCEL_ALL_AFTER)
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.60"), quantity=1)
    crossing = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.60"),
        quantity=1,
        post_only=True,
    )
    client.force_login(_trader_of(buyer, "alice"))

    response = client.get(reverse("web:portfolio"))

    (row,) = response.context["rows"]
    assert [(item["order"].pk, item["why"]) for item in row["ended_orders"]] == [
        (crossing.pk, "Refused by the matcher (MATCHING_POST_ONLY_WOULD_CROSS)"),
        (swept.pk, "The account's cancel-all-after switch fired"),
        (ioc.pk, "Immediate or cancel: the part not filled at once"),
        (filled.pk, "All of it traded"),
    ]
    assert [order.pk for order in row["open_orders"]] == [resting.pk]
    page = response.content.decode()
    assert "<td>Cancelled</td><td>The account&#x27;s cancel-all-after switch fired</td>" in page


def test_a_gtd_order_whose_time_has_come_is_not_shown_offered_before_the_sweep(
    client, future, buyer, monkeypatch
):
    """The book already leaves it out (market.resting_orders) and nothing more of it can
    trade; the page showed its contracts open, as offered, until the matcher swept it."""
    # given a GTD bid of 2 and a GTC bid of 3
    expires_at = timezone.now() + timedelta(minutes=5)
    gtd = order_place(
        account=buyer,
        instrument=future,
        side="buy",
        price=Decimal("2.40"),
        quantity=2,
        time_in_force="gtd",
        expires_at=expires_at,
    )
    gtc = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.30"), quantity=3
    )
    client.force_login(_trader_of(buyer, "alice"))
    before = client.get(reverse("web:portfolio")).content.decode()

    # when the GTD order's time has come and the matcher has not swept it yet
    monkeypatch.setattr(timezone, "now", lambda: expires_at)
    response = client.get(reverse("web:portfolio"))
    instrument_page = client.get(reverse("web:instrument", args=[future.symbol]))

    # then it is listed, still live, but with nothing open: out of the book and said so
    (row,) = response.context["rows"]
    assert [order.pk for order in row["open_orders"]] == [gtc.pk, gtd.pk]
    gtd.refresh_from_db()
    assert (gtd.status, gtd.open_quantity) == ("open", 2)
    expired = f"0, expired {expires_at:%H:%M:%S} UTC"
    assert expired not in before
    assert expired in response.content.decode()
    assert expired in instrument_page.content.decode()
    # and its status reads expired, as the API answers it; before its time it read open
    assert f"{expired}</span></td><td>Expired</td>" in response.content.decode()
    assert "<td>Expired</td>" not in before
    # and the GTC order's 3 are still shown open
    assert '<td class="num">3</td><td class="num">0</td><td class="num">3</td>' in (
        response.content.decode()
    )


def test_the_maker_sees_its_maker_fee(client, future, buyer, seller):
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3)
    client.force_login(_trader_of(seller, "sam"))

    page = client.get(reverse("web:portfolio")).content.decode()

    assert '<td class="num">0.60</td><td>Maker</td>' in page
    assert "No open orders." in page


def test_member_never_sees_another_organizations_orders_or_fills(
    client, futures, buyer, seller, maker, fourth
):
    order_place(
        account=maker, instrument=futures[1], side="sell", price=Decimal("2.60"), quantity=7
    )
    order_place(
        account=fourth, instrument=futures[1], side="buy", price=Decimal("2.60"), quantity=7
    )
    other_resting = order_place(
        account=maker, instrument=futures[1], side="sell", price=Decimal("2.90"), quantity=1
    )
    client.force_login(_trader_of(buyer, "alice"))

    response = client.get(reverse("web:portfolio"))

    (row,) = response.context["rows"]
    assert row["open_orders"] == [] and row["fills"] == [] and row["ended_orders"] == []
    page = response.content.decode()
    assert futures[1].symbol not in page
    assert f"#{other_resting.pk}" not in page


# The ledger statement.


def _ledger_lines(account):
    """The cash account's postings, oldest first, as (amount, balance after) in USD, summed
    here from the ledger rows rather than read through the selectors under test."""
    from exchange.services.ledger_accounts import cash_account, micros_to_usd
    from ledger.models import Posting

    balance, lines = 0, []
    for amount in (
        Posting.objects.filter(account=cash_account(account))
        .order_by("id")
        .values_list("amount", flat=True)
    ):
        balance -= amount  # The customer's money is the liability account's credits.
        lines.append((micros_to_usd(-amount), micros_to_usd(balance)))
    return lines


@pytest.fixture
def traded(future, buyer, seller):
    """The buyer funded, long 3 (paying margin and a taker fee), and asking for a withdrawal."""
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.50"), quantity=3)
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.50"), quantity=3)
    deposit_test_funds(account=buyer, amount=Decimal("250.25"), actor=None)
    withdrawal_request(account=buyer, amount=Decimal("100.00"), actor=None)
    return buyer


def test_anonymous_visitor_is_sent_to_sign_in_from_the_statement(client):
    for name in ("web:statement", "web:statement_csv"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_statement_shows_the_running_balance_of_the_ledger(client, traded):
    client.force_login(_trader_of(traded, "alice"))

    response = client.get(reverse("web:statement"))

    assert response.status_code == 200
    expected = list(reversed(_ledger_lines(traded)))  # The page is newest first.
    # The funding, the trade (margin and fee in one posting), the second deposit; the
    # withdrawal is a hold, not a movement, until it is paid.
    assert len(expected) == 3
    shown = [(row["line"].amount, row["line"].balance_after) for row in response.context["lines"]]
    assert shown == expected
    assert expected[0][1] == funding_cash_posted(traded)
    page = response.content.decode()
    assert f'<td class="num">{_usd(expected[0][1])}</td>' in page
    assert '<td class="num bid">250.25</td>' in page
    assert "Balance after (USD)" in page


def funding_cash_posted(account):
    from exchange.selectors.funding import cash_balance

    return cash_balance(account).posted


def test_statement_pages_hold_fifty_lines_newest_first(client, buyer):
    # given 55 more deposits of 1.00 to 55.00 USD
    for number in range(1, 56):
        deposit_test_funds(account=buyer, amount=Decimal(number), actor=None)
    client.force_login(_trader_of(buyer, "alice"))

    first = client.get(reverse("web:statement")).context
    second = client.get(reverse("web:statement"), {"page": 2}).context

    first_lines = [row["line"] for row in first["lines"]]
    second_lines = [row["line"] for row in second["lines"]]
    assert len(first_lines) == 50 and len(second_lines) == 6  # And the initial funding.
    assert first_lines[0].amount == Decimal("55")  # Newest first.
    assert first_lines[0].balance_after == funding_cash_posted(buyer)
    # The second page's first balance continues the first page's last one.
    last = first_lines[-1]
    assert second_lines[0].balance_after == last.balance_after - last.amount
    assert second_lines[-1].balance_after == second_lines[-1].amount
    assert (
        "Page 2 of 2 · 56 lines"
        in client.get(reverse("web:statement"), {"page": 2}).content.decode()
    )


def test_statement_of_gpu_hours_when_held(client, startup, held_block, sku, region):
    code = f"GPUH-{sku.code}-{region.code}-209702"
    client.force_login(get_user_model().objects.get(username="alice"))

    usd_page = client.get(reverse("web:statement"))
    response = client.get(reverse("web:statement"), {"asset": code})

    assert usd_page.context["assets"] == ["USD", code]
    assert f'<option value="{code}">{code} (GPU-hours)</option>' in usd_page.content.decode()
    (row,) = response.context["lines"]
    assert (row["line"].amount, row["line"].balance_after) == (10_752, 10_752)
    assert "Balance after (GPU-hours)" in response.content.decode()
    assert '<td class="num">10,752</td>' in response.content.decode()


def test_a_viewer_reads_the_statement(client, traded):
    viewer = member_add(
        organization=traded.organization,
        username="victor",
        email="v@example.com",
        password=PASSWORD,
        role=Membership.Role.VIEWER,
    ).user
    client.force_login(viewer)

    assert client.get(reverse("web:statement")).status_code == 200
    assert client.get(reverse("web:statement_csv")).status_code == 200


@pytest.mark.parametrize("name", ["web:statement", "web:statement_csv"])
@pytest.mark.parametrize(
    "query",
    [
        {"asset": "EUR"},
        {"asset": "GPUH-H100SXM-USEAST-202702"},
        {"account": "x"},
        {"asset": "A" * 65},
    ],
)
def test_an_asset_never_held_or_a_bad_account_is_not_found(client, traded, name, query):
    client.force_login(_trader_of(traded, "alice"))

    assert client.get(reverse(name), query).status_code == 404


@pytest.mark.parametrize("name", ["web:statement", "web:statement_csv"])
def test_another_organizations_statement_is_not_found(client, traded, seller, name):
    client.force_login(_trader_of(traded, "alice"))

    response = client.get(reverse(name), {"account": seller.pk})

    assert response.status_code == 404


def test_the_statement_shows_only_the_members_own_lines(client, traded, seller):
    deposit_test_funds(account=seller, amount=Decimal("9876543.21"), actor=None)
    client.force_login(_trader_of(traded, "alice"))

    page = client.get(reverse("web:statement")).content.decode()
    csv_text = client.get(reverse("web:statement_csv")).content.decode()

    for text in (page, csv_text):
        assert "9,876,543.21" not in text and "9876543.21" not in text
        assert f"to account {seller.pk}" not in text
        assert "Northwind" not in text


def _csv(response):
    import csv
    import io

    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_statement_csv_parses_and_sums_to_the_balance(client, traded):
    client.force_login(_trader_of(traded, "alice"))

    response = client.get(reverse("web:statement_csv"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="statement-lumen-main-USD.csv"'
    )
    rows = _csv(response)
    assert list(rows[0]) == [
        "posted_at",
        "entry_id",
        "description",
        "asset",
        "amount",
        "balance_after",
    ]
    expected = list(reversed(_ledger_lines(traded)))
    assert [(Decimal(row["amount"]), Decimal(row["balance_after"])) for row in rows] == expected
    assert all(row["asset"] == "USD" for row in rows)
    assert rows[0]["amount"] == "250.250000"  # Decimal strings, six places.
    total = sum((Decimal(row["amount"]) for row in rows), Decimal(0))
    assert total == Decimal(rows[0]["balance_after"]) == funding_cash_posted(traded)


def test_statement_csv_in_chunks_matches_one_piece(client, buyer, monkeypatch):
    from exchange.web import portfolio as portfolio_page

    for number in range(1, 21):
        deposit_test_funds(account=buyer, amount=Decimal(number), actor=None)
    client.force_login(_trader_of(buyer, "alice"))
    whole = _csv(client.get(reverse("web:statement_csv")))

    monkeypatch.setattr(portfolio_page, "STATEMENT_CSV_CHUNK_ROWS", 7)
    chunked = _csv(client.get(reverse("web:statement_csv")))

    assert len(whole) == 21 and chunked == whole


def test_a_statement_too_long_to_download_is_refused(client, traded, monkeypatch):
    from exchange.web import portfolio as portfolio_page

    monkeypatch.setattr(portfolio_page, "STATEMENT_CSV_ROWS_MAX", 2)
    client.force_login(_trader_of(traded, "alice"))

    response = client.get(reverse("web:statement_csv"))

    assert response.status_code == 400
    assert "page by page" in response.content.decode()


def test_an_open_margin_call_is_shown_with_what_cures_it(client, buyer, seller):
    from exchange.models import MarginCall

    MarginCall.objects.create(
        account=buyer,
        trading_date=datetime(2026, 12, 4, tzinfo=UTC).date(),
        required=30_132_000_000,
        maintenance=24_105_600_000,
        held=0,
        deficit=21_067_360_000,
        amount_called=40_000_000_000,
    )
    client.force_login(_trader_of(buyer, "cora"))
    called = client.get(reverse("web:portfolio")).content.decode()
    client.force_login(_trader_of(seller, "sam"))
    other = client.get(reverse("web:portfolio")).content.decode()

    assert f'id="margin-call-{buyer.pk}"' in called
    assert "Margin call</strong> since the 2026-12-04 settlement, for 40,000.00 USD" in called
    assert "bring <strong>51,199.36 USD</strong>" in called
    assert "30,132.00 of margin required, 0.00 held, 21,067.36 of losses owed" in called
    assert "Margin call" not in other


def _usd_exact(amount: Decimal) -> str:
    """USD as a page must write it: whole cents when that is exact, else every micro-dollar."""
    places = 2 if amount == amount.quantize(Decimal("0.01")) else 6
    return f"{amount:,.{places}f}"


def test_cash_figures_are_shown_to_the_micro_dollar_not_rounded_to_cents(client, call, buyer):
    # given the buyer writing one call, resting: its margin (from the option scan, in
    # micro-dollars) is held from the cash, so held and available are not whole cents
    order_place(account=buyer, instrument=call, side="sell", price=Decimal("0.20"), quantity=1)
    code = f"trading:{buyer.pk}:cash:USD"
    from ledger.models import Account as LedgerAccount

    cash = LedgerAccount.objects.get(code=code)
    posted = Decimal(cash.credits_posted - cash.debits_posted) / 10**6
    held = Decimal(cash.debits_pending) / 10**6
    available = posted - held
    assert held != held.quantize(Decimal("0.01"))  # The case this test is about.
    client.force_login(_trader_of(buyer, "alice"))

    # when the member opens the portfolio
    page = client.get(reverse("web:portfolio")).content.decode()

    # then cash, held and available are written exactly, and held + available = cash
    for label, amount in (
        ("Cash balance", posted),
        ("Held", held),
        ("Cash available", available),
    ):
        assert f'{label} (USD)</span><span class="value">{_usd_exact(amount)}<' in page


def test_a_member_sees_the_organization_s_notices_and_no_other_s(client, startup, trader):
    from exchange.models import Notice
    from exchange.services.notices import notice_send

    notice_send(
        account=account_main(startup),
        kind=Notice.Kind.MARGIN_CALL,
        key="ours",
        subject="Margin call: $120.50 due",
        message="Amount due: $120.50.\nDeposit funds or reduce positions.",
    )
    notice_send(
        account=account_main(trader),
        kind=Notice.Kind.WITHDRAWAL_PAID,
        key="theirs",
        subject="Withdrawal of $9,999.00 paid",
        message="Theirs.",
    )
    client.force_login(get_user_model().objects.get(username="alice"))

    page = client.get(reverse("web:portfolio")).content.decode()

    assert 'id="notices"' in page
    assert "Margin call: $120.50 due" in page
    assert "Amount due: $120.50.<br>Deposit funds" in page
    assert "Withdrawal of $9,999.00 paid" not in page


def test_no_notices_section_without_notices(client, startup):
    client.force_login(get_user_model().objects.get(username="alice"))

    assert 'id="notices"' not in client.get(reverse("web:portfolio")).content.decode()
