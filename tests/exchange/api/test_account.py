"""/api/v1/account/: balances, positions, statements and entitlements of the caller's account,
checked against the ledger and against figures computed by hand."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from django.conf import settings
from django.db.models import Sum
from rest_framework.test import APIClient

from exchange.services.api_keys import api_key_create
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds, withdrawal_request
from exchange.services.ledger_accounts import (
    cash_account_code,
    entitlement_code,
    margin_account_code,
    position_account_code,
)
from exchange.services.listing import resale_list
from exchange.services.participants import account_main, organization_create
from ledger.models import Account as LedgerAccount
from ledger.models import Hold, Posting
from tests.exchange.conftest import TEST_ACCOUNT_FUNDS
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db

BALANCES = "/api/v1/account/balances/"
POSITIONS = "/api/v1/account/positions/"
STATEMENT = "/api/v1/account/statement/"
ENTITLEMENTS = "/api/v1/account/entitlements/"
MICROS = Decimal("0.000001")


def api(account, scopes=("read",)) -> APIClient:
    token = api_key_create(organization=account.organization, name="bot", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    return client


def usd(amount) -> str:
    return f"{Decimal(amount).quantize(MICROS)}"


def cash_from_ledger(account) -> tuple[Decimal, Decimal]:
    """(Posted, pending) USD of ``account``'s cash, summed from postings and holds."""
    code = cash_account_code(account)
    postings = Posting.objects.filter(account__code=code).aggregate(total=Sum("amount"))
    holds = Hold.objects.filter(
        account__code=code, status=Hold.Status.PENDING, side=Hold.Side.DEBIT
    ).aggregate(total=Sum("remaining"))
    # A liability: the customer's money is the credit side, negative postings.
    return -Decimal(postings["total"] or 0) * MICROS, Decimal(holds["total"] or 0) * MICROS


def month_start(yyyymm: str) -> date:
    return date(int(yyyymm[:4]), int(yyyymm[4:]), 1)


def ledger_balance(code: str) -> int:
    return LedgerAccount.objects.get(code=code).balance


def block(provider, holder, sku, region, *, days=40, gpus=16, offset_days=10):
    """A block starting ``offset_days`` into the listing month, held by ``holder``."""
    starts = datetime.combine(listing_month(), time.min, tzinfo=UTC) + timedelta(days=offset_days)
    return capacity_register(
        provider=provider.organization,
        holder=holder.organization,
        cluster=f"cluster-{holder.organization.slug}-{days}",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=starts + timedelta(days=days),
        gpus=gpus,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )


def month_hours(starts: datetime, ends: datetime) -> dict[str, int]:
    """Hours of [starts, ends) per YYYYMM, counted hour by hour (slow and obviously right)."""
    hours: dict[str, int] = {}
    moment = starts
    while moment < ends:
        hours[f"{moment:%Y%m}"] = hours.get(f"{moment:%Y%m}", 0) + 1
        moment += timedelta(hours=1)
    return hours


# Balances ---------------------------------------------------------------------------------


def test_a_funded_account_has_its_dollars_and_nothing_else(buyer):
    response = api(buyer).get(BALANCES)

    assert response.status_code == 200
    assert response.json() == [
        {
            "asset": "USD",
            "kind": "currency",
            "posted": usd(TEST_ACCOUNT_FUNDS),
            "pending": usd(0),
            "available": usd(TEST_ACCOUNT_FUNDS),
            "owed": usd(0),
        }
    ]


def test_an_account_never_funded_shows_zero_dollars(db):
    account = account_main(organization_create(slug="new", name="New", kind="startup"))

    response = api(account).get(BALANCES)

    assert response.json() == [
        {"asset": "USD", "kind": "currency", "posted": "0.000000", "pending": "0.000000",
         "available": "0.000000", "owed": "0.000000"}
    ]  # fmt: skip


def test_balances_show_a_deficit_owed_in_dollars(future, buyer):
    from exchange.services.ledger_accounts import cash_account, deficit_account
    from ledger.services import entry_post

    # given the buyer owes 1,234.56 USD of losses its cash and margin could not pay (as the
    # daily cycle posts it: the cash it did not have comes from the deficit)
    owed = 1_234_560_000
    entry_post(
        key="test:deficit",
        description="Variation margin beyond cash",
        postings=[(deficit_account(buyer), owed), (cash_account(buyer), -owed)],
    )

    # when it reads its balances
    (cash,) = api(buyer).get(BALANCES).json()

    # then the dollars show what it owes
    assert cash["owed"] == "1234.560000"


def test_balances_after_a_trade_and_a_resting_order_match_the_ledger(future, buyer, seller):
    # given the buyer lifting 2 contracts at 2.50 from the seller, then bidding 1 at 2.40
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "buy", 2, "2.50")
    place(buyer, future, "buy", 1, "2.40")

    # when the buyer reads its balances
    (cash,) = api(buyer).get(BALANCES).json()

    # then posted cash is the funds less the taker fee and the margin now held, by hand
    hours = future.gpu_hours_per_contract
    fee = settings.EXCHANGE_FEES["future"]["taker"] * 2
    margin = settings.EXCHANGE_PRICE_SCAN * Decimal("2.50") * 2 * hours
    assert cash["posted"] == usd(TEST_ACCOUNT_FUNDS - fee - margin)
    # and posted, pending and available agree with the ledger's postings and holds
    posted, pending = cash_from_ledger(buyer)
    assert pending > 0  # The resting bid holds its collateral.
    assert (cash["posted"], cash["pending"], cash["available"]) == (
        usd(posted),
        usd(pending),
        usd(posted - pending),
    )


def test_balances_list_gpu_hours_as_integers_with_what_is_on_hold(sku, region, seller, buyer):
    # given a block held by the buyer, listed, and 8 GPUs of it offered for resale
    reservation = block(seller, buyer, sku, region)
    listing = resale_list(reservation=reservation)
    place(buyer, listing, "sell", 8, "2.30")

    # when the buyer reads its balances
    balances = api(buyer).get(BALANCES).json()

    # then each month's GPU-hours are there, 8 GPUs' worth of each on hold
    per_month = month_hours(reservation.starts_at, reservation.ends_at)
    expected = [
        {
            "asset": entitlement_code(sku.code, region.code, month_start(month)),
            "kind": "entitlement",
            "posted": 16 * hours,
            "pending": 8 * hours,
            "available": 8 * hours,
            "owed": 0,
        }
        for month, hours in sorted(per_month.items())
    ]
    assert balances[0]["asset"] == "USD"
    assert balances[1:] == expected
    # and the seller, the provider, holds none of them
    assert [row["asset"] for row in api(seller).get(BALANCES).json()] == ["USD"]


# Positions --------------------------------------------------------------------------------


def test_positions_after_trades_match_the_ledger_and_hand_figures(future, buyer, seller, maker):
    # given the buyer long 2 at 2.50, then the market trading 1 at 2.60 between two others
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "buy", 2, "2.50")
    place(seller, future, "sell", 1, "2.60")
    place(maker, future, "buy", 1, "2.60")

    # when the buyer reads its positions
    response = api(buyer).get(POSITIONS)

    # then its one position is marked at 2.60 with the profit of 0.10 on 2 contracts
    assert response.status_code == 200
    hours = future.gpu_hours_per_contract
    cost = Decimal("2.50") * 2 * hours
    margin = settings.EXCHANGE_PRICE_SCAN * cost
    pnl = Decimal("0.10") * 2 * hours
    assert response.json() == {
        "positions": [
            {
                "symbol": future.symbol,
                "kind": "future",
                "contracts": 2,
                "gpu_hours": 2 * hours,
                "cost": usd(cost),
                "average_price": "2.500000",
                "mark_price": "2.600000",
                "mark_source": "trade",
                "market_value": usd(Decimal("2.60") * 2 * hours),
                "pnl": usd(pnl),
                "margin": usd(margin),
            }
        ],
        "totals": {"margin": usd(margin), "pnl": usd(pnl)},
    }
    # and contracts and margin are what the ledger holds
    assert ledger_balance(position_account_code(buyer, future.symbol)) == 2
    assert -ledger_balance(margin_account_code(buyer, future.symbol)) * MICROS == margin


def test_a_positions_cost_keeps_what_closed_contracts_realized_as_the_schema_says(
    future, buyer, seller, maker, client
):
    """The schema described cost as what the open position was traded at; after a partial
    close it is the cost memo, which keeps what the closed contract realized."""
    # given the buyer long 2 at 2.50, then selling 1 of them at 2.60
    place(seller, future, "sell", 2, "2.50")
    place(buyer, future, "buy", 2, "2.50")
    place(maker, future, "buy", 1, "2.60")
    place(buyer, future, "sell", 1, "2.60")

    (row,) = api(buyer).get(POSITIONS).json()["positions"]
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    # then cost is 2.50 x 2 - 2.60 (not 2.50, the open contract's price), and pnl its complement
    hours = future.gpu_hours_per_contract
    assert row["contracts"] == 1
    assert row["cost"] == usd((Decimal("2.50") * 2 - Decimal("2.60")) * hours)
    assert row["pnl"] == usd(Decimal("0.20") * hours)  # 0.10 realized, 0.10 open at 2.60
    description = schema["components"]["schemas"]["Position"]["properties"]["cost"]["description"]
    assert "traded at" not in description.split(":", 1)[0]
    assert "contracts closed since leave what they realized in it" in description
    assert "pnl = market_value - cost" in description


def test_a_short_position_reads_negative(future, buyer, seller):
    place(seller, future, "sell", 3, "2.50")
    place(buyer, future, "buy", 3, "2.50")

    (row,) = api(seller).get(POSITIONS).json()["positions"]

    hours = future.gpu_hours_per_contract
    assert (row["contracts"], row["gpu_hours"]) == (-3, -3 * hours)
    assert row["cost"] == usd(-Decimal("2.50") * 3 * hours)
    assert ledger_balance(position_account_code(seller, future.symbol)) == -3


def test_no_positions_and_other_accounts_positions_are_not_shown(future, buyer, seller, fourth):
    # given a trade between the buyer and the seller
    place(seller, future, "sell", 1, "2.50")
    place(buyer, future, "buy", 1, "2.50")

    # when a fourth account reads its positions
    response = api(fourth).get(POSITIONS)

    # then it has none, and its totals are zero
    assert response.json() == {
        "positions": [],
        "totals": {"margin": "0.000000", "pnl": "0.000000"},
    }


# Statement --------------------------------------------------------------------------------


def test_the_cash_statement_is_newest_first_with_the_running_balance(future, buyer, seller):
    # given two more deposits, a withdrawal held (no posting yet) and a trade
    first = deposit_test_funds(account=buyer, amount=Decimal("1000.00"), actor=None)
    second = deposit_test_funds(account=buyer, amount=Decimal("250.50"), actor=None)
    withdrawal_request(account=buyer, amount=Decimal("100.00"), actor=None)
    place(seller, future, "sell", 1, "2.50")
    place(buyer, future, "buy", 1, "2.50")

    # when the buyer reads its statement
    response = api(buyer).get(STATEMENT)

    # then the newest line's balance is the posted cash, and each older line's balance is the
    # newer one's less the newer amount, down to the first deposit from zero
    assert response.status_code == 200
    lines = response.json()["results"]
    posted, _ = cash_from_ledger(buyer)
    assert lines[0]["balance_after"] == usd(posted)
    for newer, older in pairwise(lines):
        assert Decimal(older["balance_after"]) == Decimal(newer["balance_after"]) - Decimal(
            newer["amount"]
        )
    assert lines[-1]["amount"] == lines[-1]["balance_after"] == usd(TEST_ACCOUNT_FUNDS)
    # and each deposit is one credit to the customer, on its ledger entry
    by_entry = {line["entry_id"]: line for line in lines}
    assert by_entry[first.ledger_entry_id]["amount"] == usd("1000.00")
    assert by_entry[second.ledger_entry_id]["amount"] == usd("250.50")
    assert set(lines[0]) == {"entry_id", "posted_at", "description", "amount", "balance_after"}
    # and the trade took the fee and the margin out: the movements sum to the balance
    assert sum(Decimal(line["amount"]) for line in lines) == posted


def test_statement_pages_carry_the_running_balance_across_the_cursor(buyer):
    # given five deposits after the initial funding
    amounts = [TEST_ACCOUNT_FUNDS] + [Decimal(cents) / 100 for cents in (101, 202, 303, 404, 505)]
    for amount in amounts[1:]:
        deposit_test_funds(account=buyer, amount=amount, actor=None)
    client = api(buyer)

    # when the statement is read two lines a page, following the cursor
    pages = []
    url = f"{STATEMENT}?asset=USD&limit=2"
    while url:
        body = client.get(url).json()
        pages.append(body["results"])
        url = body["next"]

    # then the pages hold the 6 lines newest first, balances continuing over page breaks
    assert [len(page) for page in pages] == [2, 2, 2]
    running = [sum(amounts[: index + 1], Decimal(0)) for index in range(len(amounts))]
    expected = [
        {"amount": usd(amount), "balance_after": usd(balance)}
        for amount, balance in zip(amounts, running, strict=True)
    ][::-1]
    lines = [line for page in pages for line in page]
    assert [
        {"amount": line["amount"], "balance_after": line["balance_after"]} for line in lines
    ] == (expected)


def test_the_statement_of_gpu_hours_counts_whole_hours(sku, region, seller, buyer):
    # given a block of 16 GPUs held by the buyer
    reservation = block(seller, buyer, sku, region)
    month, hours = sorted(month_hours(reservation.starts_at, reservation.ends_at).items())[0]
    code = entitlement_code(sku.code, region.code, month_start(month))

    # when the buyer reads that month's statement
    response = api(buyer).get(STATEMENT, {"asset": code})

    # then the issuance is one line of 16 GPUs x the month's hours, as integers
    (line,) = response.json()["results"]
    assert (line["amount"], line["balance_after"]) == (16 * hours, 16 * hours)


def test_an_account_never_funded_has_an_empty_cash_statement(db):
    account = account_main(organization_create(slug="new", name="New", kind="startup"))

    response = api(account).get(STATEMENT)

    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize("asset", ["EUR", "GPUH-H100SXM-USEAST-209913", "trading:1:cash:USD"])
def test_a_statement_of_an_asset_never_held_is_404_naming_the_filter(buyer, asset):
    response = api(buyer).get(STATEMENT, {"asset": asset})

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("NOT_FOUND", "asset")
    assert error["message"].startswith(f"No asset {asset} in the account")


def test_another_accounts_gpu_hours_have_no_statement_for_me(sku, region, seller, buyer, fourth):
    # given a block held by the buyer
    reservation = block(seller, buyer, sku, region)
    month = f"{reservation.starts_at:%Y%m}"
    code = entitlement_code(sku.code, region.code, month_start(month))

    # when a fourth account asks for the statement of those GPU-hours
    response = api(fourth).get(STATEMENT, {"asset": code})

    # then there is none for it: answered as for an asset nobody holds
    assert response.status_code == 404
    unknown = api(fourth).get(STATEMENT, {"asset": "GPUH-H100SXM-USEAST-209912"}).json()["error"]
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("NOT_FOUND", "asset")
    assert error["message"] == unknown["message"].replace("209912", code[-6:])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"asset": "X" * 65}, "asset"),
        ({"asset": ""}, "asset"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": ""}, "limit"),
    ],
)
def test_malformed_statement_queries_are_400(buyer, query, field):
    response = api(buyer).get(STATEMENT, query)

    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
        "INVALID_INPUT",
        field,
    )


def test_a_forged_cursor_is_404_not_500(buyer):
    response = api(buyer).get(STATEMENT, {"cursor": "not-a-cursor"})

    assert response.status_code == 404


# Entitlements -----------------------------------------------------------------------------


def test_entitlements_per_sku_region_and_month_with_what_is_on_hold(sku, region, seller, buyer):
    # given a block of 16 GPUs over two months held by the buyer, 8 GPUs offered for resale
    reservation = block(seller, buyer, sku, region, days=40)
    listing = resale_list(reservation=reservation)
    place(buyer, listing, "sell", 8, "2.30")

    # when the buyer reads its entitlements
    response = api(buyer).get(ENTITLEMENTS)

    # then each month is a row with the hours held, on hold for the offer, and available
    assert response.status_code == 200
    per_month = sorted(month_hours(reservation.starts_at, reservation.ends_at).items())
    assert len(per_month) == 2
    assert response.json() == [
        {
            "code": f"GPUH-{sku.code}-{region.code}-{month}",
            "name": response.json()[index]["name"],
            "sku": sku.code,
            "region": region.code,
            "month": f"{month[:4]}-{month[4:]}-01",
            "held": 16 * hours,
            "on_hold": 8 * hours,
            "available": 8 * hours,
        }
        for index, (month, hours) in enumerate(per_month)
    ]
    # and nobody else sees them
    assert api(seller).get(ENTITLEMENTS).json() == []


# Scopes and authentication ----------------------------------------------------------------


@pytest.mark.parametrize("url", [BALANCES, POSITIONS, STATEMENT, ENTITLEMENTS])
def test_account_reads_need_the_read_scope(buyer, url):
    response = api(buyer, scopes=("trade", "transfer")).get(url)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "AUTH_SCOPE_MISSING"


@pytest.mark.parametrize("url", [BALANCES, POSITIONS, STATEMENT, ENTITLEMENTS])
def test_account_reads_need_a_key(buyer, url):
    response = APIClient().get(url)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTH_REQUIRED"


@pytest.mark.parametrize("url", [BALANCES, POSITIONS, STATEMENT, ENTITLEMENTS])
def test_account_reads_are_get_only(buyer, url):
    response = api(buyer, scopes=("read", "trade", "transfer")).post(url, {}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_each_key_sees_its_own_organizations_money(buyer, seller):
    # given a deposit to the seller only
    deposit_test_funds(account=seller, amount=Decimal("777.00"), actor=None)

    # then the buyer's key sees its own cash, the seller's its own
    (buyer_cash,) = api(buyer).get(BALANCES).json()
    (seller_cash,) = api(seller).get(BALANCES).json()
    assert buyer_cash["posted"] == usd(TEST_ACCOUNT_FUNDS)
    assert seller_cash["posted"] == usd(TEST_ACCOUNT_FUNDS + Decimal("777.00"))


def test_the_margin_call_endpoint_says_what_cures_the_accounts_open_call(buyer, seller):
    from exchange.models import MarginCall

    url = "/api/v1/account/margin-call/"
    assert api(buyer).get(url).json() == {"margin_call": None}
    # given an open call on the buyer's account (and a cured one of earlier), none on the seller's
    MarginCall.objects.create(
        account=buyer,
        trading_date=date(2026, 12, 1),
        required=5_000_000_000,
        maintenance=4_000_000_000,
        held=4_000_000_000,
        status=MarginCall.Status.CURED,
    )
    call = MarginCall.objects.create(
        account=buyer,
        trading_date=date(2026, 12, 4),
        required=30_132_000_000,
        maintenance=24_105_600_000,
        held=0,
        deficit=21_067_360_000,
        amount_called=40_000_000_000,
    )

    # when each reads it
    mine, theirs = api(buyer).get(url), api(seller).get(url)

    # then the buyer sees its open call and the USD that cures it; the seller sees none
    assert mine.status_code == 200
    standing = mine.json()["margin_call"]
    assert standing == {
        "trading_date": "2026-12-04",
        "created_at": standing["created_at"],
        "amount_called": "40000.000000",
        "figured_at": None,
        "required": "30132.000000",
        "held": "0.000000",
        "deficit": "21067.360000",
        "amount_due": "51199.360000",
    }
    assert standing["created_at"].startswith(f"{call.created_at:%Y-%m-%dT%H:%M}")
    assert theirs.json() == {"margin_call": None}
