"""The isolation matrix: two organizations, every endpoint that names or lists an object of
one. Another organization's objects answer 404 (as if they did not exist) and never appear in
a list; acting on them changes nothing."""

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from exchange import calendar
from exchange.models import Interconnect, Notice, Order
from exchange.services.api_keys import api_key_create
from exchange.services.capacity import capacity_register
from exchange.services.funding import withdrawal_request
from exchange.services.notices import notice_send
from tests.exchange.support import listing_month, place

pytestmark = pytest.mark.django_db

ALL_SCOPES = ["read", "trade", "transfer"]


def client_of(account) -> APIClient:
    token = api_key_create(organization=account.organization, name="iso", scopes=ALL_SCOPES).token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def theirs(futures, sku, region, buyer, seller):
    """The seller's (Northwind's) objects: a resting order, a filled one with its fill, a
    reserved block it provides and holds, a withdrawal, a key."""
    resting = place(seller, futures[0], "sell", 3, "2.60")
    place(seller, futures[1], "sell", 1, "2.50")
    place(buyer, futures[1], "buy", 1, "2.50")  # A trade: the seller's fill.
    starts = datetime.combine(calendar.add_months(listing_month(), 1), time.min, tzinfo=UTC)
    reservation = capacity_register(
        provider=seller.organization,
        holder=seller.organization,
        cluster="nw-iso-1",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=datetime.combine(calendar.add_months(starts.date(), 1), time.min, tzinfo=UTC),
        gpus=8,
        interconnect=Interconnect.INFINIBAND,
        contiguous_block_gpus=8,
    )
    withdrawal = withdrawal_request(account=seller, amount=Decimal("100.00"), actor=None)
    key = api_key_create(organization=seller.organization, name="theirs", scopes=["read"]).key
    notice = notice_send(
        account=seller,
        kind=Notice.Kind.MARGIN_CALL,
        key="theirs",
        subject="Margin call: $1.00 due",
        message="Theirs.",
    )
    return {
        "order": resting,
        "reservation": reservation,
        "withdrawal": withdrawal,
        "key": key,
        "notice": notice,
    }


def codes(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_another_organizations_objects_are_not_found(theirs, buyer, futures):
    mine = client_of(buyer)
    order, reservation, key = theirs["order"], theirs["reservation"], theirs["key"]

    answers = {
        "get order": mine.get(f"/api/v1/orders/{order.pk}/"),
        "order history": mine.get(f"/api/v1/orders/{order.pk}/history/"),
        "cancel order": mine.delete(f"/api/v1/orders/{order.pk}/"),
        "replace order": mine.post(
            f"/api/v1/orders/{order.pk}/replace/",
            {"price": "2.65", "quantity": 1},
            format="json",
        ),
        "list capacity for resale": mine.post(
            f"/api/v1/capacity/{reservation.pk}/list/", {}, format="json"
        ),
        "revoke key": mine.delete(f"/api/v1/keys/{key.prefix}/"),
    }

    batch_cancel = mine.post(
        "/api/v1/orders/batch/cancel/", {"order_ids": [order.pk]}, format="json"
    )

    assert {name: codes(response) for name, response in answers.items()} == {
        name: (404, "NOT_FOUND") for name in answers
    }
    (result,) = batch_cancel.json()["results"]
    assert (result["status"], result["error"]["code"]) == (404, "NOT_FOUND")
    # and nothing changed
    order.refresh_from_db()
    assert (order.status, order.price, order.quantity) == (
        Order.Status.OPEN,
        Decimal("2.60"),
        3,
    )
    assert not hasattr(reservation, "instrument") or reservation.instrument is None
    key.refresh_from_db()
    assert key.revoked_at is None


def test_lists_never_show_another_organizations_objects(theirs, buyer, seller, futures):
    mine, own = client_of(buyer), client_of(seller)
    place(buyer, futures[0], "buy", 1, "2.40")  # One live order of my own.

    def ids(client, path, field="id"):
        body = client.get(path).json()
        rows = body["results"] if isinstance(body, dict) and "results" in body else body
        return {row[field] for row in rows}

    their_order = theirs["order"].pk
    # Orders: mine are listed, theirs are not (and theirs are, to them).
    assert their_order not in ids(mine, "/api/v1/orders/")
    assert their_order in ids(own, "/api/v1/orders/")
    assert ids(mine, "/api/v1/orders/?status=live") == {
        order.pk for order in Order.objects.filter(account=buyer, status="open")
    }
    # Fills: each side sees only its own side of the shared trade.
    assert {fill["side"] for fill in mine.get("/api/v1/fills/").json()["results"]} == {"buy"}
    assert {fill["side"] for fill in own.get("/api/v1/fills/").json()["results"]} == {"sell"}
    # Filtering by their order: refused as an order that does not exist (nothing listed).
    by_their_order = mine.get(f"/api/v1/fills/?order={their_order}")
    assert (by_their_order.status_code, by_their_order.json()["error"]["field"]) == (404, "order")
    # Capacity, withdrawals, deposits and keys.
    assert ids(mine, "/api/v1/capacity/") == set()
    assert theirs["reservation"].pk in ids(own, "/api/v1/capacity/")
    assert theirs["withdrawal"].pk not in ids(mine, "/api/v1/funding/withdrawals/")
    assert theirs["withdrawal"].pk in ids(own, "/api/v1/funding/withdrawals/")
    their_deposits = ids(own, "/api/v1/funding/deposits/")
    assert their_deposits and not their_deposits & ids(mine, "/api/v1/funding/deposits/")
    assert theirs["key"].prefix not in ids(mine, "/api/v1/keys/", "prefix")
    # Notices.
    assert ids(mine, "/api/v1/account/notices/") == set()
    assert ids(own, "/api/v1/account/notices/") == {theirs["notice"].pk}


def test_account_figures_are_the_callers_own(theirs, buyer, seller, futures):
    mine, own = client_of(buyer), client_of(seller)

    my_positions = mine.get("/api/v1/account/positions/").json()["positions"]
    their_positions = own.get("/api/v1/account/positions/").json()["positions"]
    my_statement = mine.get("/api/v1/account/statement/").json()["results"]
    their_statement = own.get("/api/v1/account/statement/").json()["results"]

    symbol = futures[1].symbol
    assert [(p["symbol"], p["contracts"]) for p in my_positions] == [(symbol, 1)]
    assert [(p["symbol"], p["contracts"]) for p in their_positions] == [(symbol, -1)]
    assert {row["entry_id"] for row in my_statement} != {row["entry_id"] for row in their_statement}
    my_cash = next(b for b in mine.get("/api/v1/account/balances/").json() if b["asset"] == "USD")
    their_cash = next(b for b in own.get("/api/v1/account/balances/").json() if b["asset"] == "USD")
    assert my_cash != their_cash
    # Cancel-all cancels only the caller's orders.
    assert mine.post("/api/v1/orders/cancel-all/", {}, format="json").json() == {"cancelled": 0}
    assert Order.objects.get(pk=theirs["order"].pk).status == Order.Status.OPEN
