"""A DELETE takes no body (``api.views.ApiView``): it acts on what its path names, whole. A body
sent with one is refused with 400 INVALID_INPUT, its first key as the field, before anything
is done. Until 2026-12-07 DRF read the body and no view looked at it: a member sending
``{"member": ...}`` to withdraw one demand, or a trader ``{"quantity": 2}`` to cancel part of an
order, had the whole thing deleted."""

from decimal import Decimal

import pytest
from django.urls import get_resolver
from rest_framework.test import APIClient

from exchange.api.views import ApiView
from exchange.models import ApiKey, AuditEntry, Order, OrderCommand, PoolDemand
from exchange.services.api_keys import api_key_create
from exchange.services.pools import (
    demand_submit,
    pool_cut_off,
    pool_member_add,
    pool_member_graduate,
    pool_offer,
    pool_round_close,
    pool_take_back,
)
from tests.exchange.pools.support import sponsor_pool, startup
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

SCOPES = ["read", "trade", "transfer"]


def _client(organization) -> APIClient:
    client = APIClient()
    token = api_key_create(organization=organization, name="bot", scopes=SCOPES).token
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _written() -> tuple[int, int, int]:
    return OrderCommand.objects.count(), Order.objects.count(), AuditEntry.objects.count()


def _refused(answer) -> tuple[int, str, str | None]:
    error = answer.json()["error"]
    assert "A DELETE takes no body" in error["message"], error
    return answer.status_code, error["code"], error["field"]


def _api_views() -> dict[str, type]:
    """Every /api/v1/ route and its view class."""

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), getattr(pattern.callback, "cls", None)

    return {
        path: view
        for path, view in walk(get_resolver().url_patterns)
        if path.startswith("api/v1/") and view is not None
    }


def test_every_delete_endpoint_refuses_a_body_by_the_shared_rule_and_is_tested_here():
    deletes = {path: view for path, view in _api_views().items() if hasattr(view, "delete")}

    # A new DELETE endpoint is listed here with a test of its own below.
    assert set(deletes) == {
        "api/v1/keys/<text:prefix>/",
        "api/v1/orders/<text:order_id>/",
        "api/v1/pools/<text:pool_id>/demands/<text:demand_id>/",
        "api/v1/pools/<text:pool_id>/offer/<text:order_id>/",
    }
    assert all(issubclass(view, ApiView) for view in deletes.values())


def test_an_order_cancel_with_a_body_is_refused_and_the_order_rests(buyer, future):
    order = place(buyer, future, "buy", 5, "2.00")
    client = _client(buyer.organization)
    path = f"/api/v1/orders/{order.pk}/"
    before = _written()

    answers = [
        client.delete(path, {"quantity": 2}, format="json"),
        client.delete(path, [order.pk], format="json"),
    ]

    assert [_refused(answer) for answer in answers] == [
        (400, "INVALID_INPUT", "quantity"),
        (400, "INVALID_INPUT", None),
    ]
    assert _written() == before
    order.refresh_from_db()
    assert (order.status, order.open_quantity) == ("open", 5)
    # An empty object is no body: the cancel goes through.
    cancelled = client.delete(path, {}, format="json")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")


def test_a_key_revoked_with_a_body_is_refused_and_stays_valid(buyer):
    key = api_key_create(organization=buyer.organization, name="old", scopes=["read"]).key
    client = _client(buyer.organization)
    before = _written()

    answer = client.delete(f"/api/v1/keys/{key.prefix}/", {"reason": "leaked"}, format="json")

    assert _refused(answer) == (400, "INVALID_INPUT", "reason")
    assert _written() == before
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    assert client.delete(f"/api/v1/keys/{key.prefix}/").status_code == 200


@pytest.fixture
def pool_world(future, seller):
    """A sponsor's pool, ada's open demand, and an offer of the pool's contracts (bolt's lots
    taken back after it graduated)."""
    sponsor, _, pool = sponsor_pool()
    ada = pool_member_add(pool=pool, organization=startup("ada", "200000"), actor=None)
    bolt = pool_member_add(pool=pool, organization=startup("bolt", "200000"), actor=None)
    demand = {
        "sku": future.sku,
        "region": future.region,
        "months": [future.delivery_start],
        "limit_price": Decimal("2.50"),
        "actor": None,
    }
    demand_submit(member=bolt, gpus=4, **demand)
    place(seller, future, "sell", 4, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    pool_member_graduate(member=bolt, actor=None)
    pool_take_back(member=bolt, instrument=future, quantity=4, actor=None)
    offer = pool_offer(pool=pool, instrument=future, quantity=4, price=Decimal("9"), actor=None)
    [open_demand] = demand_submit(member=ada, gpus=10, **demand)
    return sponsor, pool, ada, open_demand, offer


def test_a_demand_withdrawn_with_a_body_is_refused_and_stays_open(pool_world):
    _, pool, ada, demand, _ = pool_world
    client = _client(ada.organization)
    path = f"/api/v1/pools/{pool.pk}/demands/{demand.pk}/"
    before = _written()

    answer = client.delete(path, {"member": "ada"}, format="json")

    assert _refused(answer) == (400, "INVALID_INPUT", "member")
    assert _written() == before
    assert PoolDemand.objects.get(pk=demand.pk).status == "open"
    assert client.delete(path).json()["status"] == "withdrawn"


def test_an_offer_withdrawn_with_a_body_is_refused_and_still_offered(pool_world):
    sponsor, pool, _, _, offer = pool_world
    client = _client(sponsor)
    path = f"/api/v1/pools/{pool.pk}/offer/{offer.pk}/"
    before = _written()

    answer = client.delete(path, {"quantity": 1}, format="json")

    assert _refused(answer) == (400, "INVALID_INPUT", "quantity")
    assert _written() == before
    offer.refresh_from_db()
    assert (offer.status, offer.open_quantity) == ("open", 4)
    assert client.delete(path).json()["status"] == "cancelled"
