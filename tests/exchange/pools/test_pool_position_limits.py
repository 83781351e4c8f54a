"""A pool's account is its sponsor's: its round buys count against the sponsor's position
limit unless staff exempt the sponsor. A tier so refused says why on the round, and the round
allocates it nothing; an exempt sponsor's tier is placed."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from exchange.models import Order, PoolAllocation
from exchange.services.api_keys import api_key_create
from exchange.services.pools import demand_submit, pool_cut_off, pool_round_close
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def _submit(member, instrument, gpus):
    [demand] = demand_submit(
        member=member,
        sku=instrument.sku,
        region=instrument.region,
        months=[instrument.delivery_start],
        gpus=gpus,
        limit_price=Decimal("2.50"),
        actor=None,
    )
    return demand


def test_a_tier_beyond_the_sponsors_limit_buys_the_room_left_and_says_so(
    pool, members, future, seller, sponsor, sponsor_user, settings, client
):
    """A limit of 15 and demand for 20 (12 and 8): the tier buys 15, allocated pro rata,
    rather than being refused whole (as until 2026-12-07)."""
    ada = _submit(members[0], future, gpus=12)
    bolt = _submit(members[1], future, gpus=8)
    place(seller, future, "sell", 20, "2.45")
    settings.EXCHANGE_POSITION_LIMIT = 15

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    pool_order = round_.orders.get()
    assert (pool_order.quantity, pool_order.refusal_code) == (20, "")
    assert (pool_order.order.quantity, pool_order.order.status) == (15, Order.Status.FILLED)
    assert pool_order.placement_note.startswith("15 of the tier's 20 contracts placed")
    assert "position limit" in pool_order.placement_note
    # and the sponsor reads why in the round's API answer and on its page
    token = api_key_create(organization=sponsor, name="bot", scopes=["read"]).token
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    answer = api.get(f"/api/v1/pools/{pool.pk}/rounds/{round_.pk}/").json()
    assert answer["orders"][0]["placement_note"] == pool_order.placement_note
    client.force_login(sponsor_user)
    page = client.get(reverse("web:pool", args=[pool.pk])).content.decode()
    assert escape(pool_order.placement_note) in page
    # and the round allocates the 15 pro rata
    pool_round_close(round_=round_, actor=sponsor_user)
    allocated = {a.demand_id: a.quantity for a in PoolAllocation.objects.all()}
    assert sum(allocated.values()) == 15 and allocated[ada.pk] > allocated[bolt.pk] > 0


def test_a_tier_with_no_room_left_is_refused_with_its_reason_on_the_round(
    pool, members, future, seller, sponsor_user, settings
):
    # given demand for 20 GPUs of the month, a seller the tier would meet, and a limit of 15
    # the sponsor's organization already uses whole (the pool's account long 15)
    demand = _submit(members[0], future, gpus=20)
    place(seller, future, "sell", 35, "2.45")
    place(pool.account, future, "buy", 15, "2.45")
    settings.EXCHANGE_POSITION_LIMIT = 15

    # when the round is cut off
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    # then the tier is recorded refused, by name, with what counts, and no order stands for it
    pool_order = round_.orders.get()
    assert (pool_order.order, pool_order.refusal_code) == (None, "RISK_POSITION_LIMIT")
    assert f"could be 35 contracts long in {future.symbol}" in pool_order.refusal_message
    assert "above its position limit of 15" in pool_order.refusal_message
    assert "staff may grant an exemption" in pool_order.refusal_message
    assert pool_order.placement_note == ""
    assert not Order.objects.filter(pool_order__round=round_).exists()
    # and the round allocates it nothing
    pool_round_close(round_=round_, actor=sponsor_user)
    allocation = PoolAllocation.objects.get(demand=demand)
    assert (allocation.status, allocation.quantity) == ("none", 0)


def test_an_exempt_sponsors_tier_is_placed(
    pool, members, future, seller, sponsor, sponsor_user, settings
):
    demand = _submit(members[0], future, gpus=20)
    place(seller, future, "sell", 20, "2.45")
    settings.EXCHANGE_POSITION_LIMIT = 15
    sponsor.position_limit_exempt = True
    sponsor.save()

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    pool_order = round_.orders.get()
    assert (pool_order.refusal_code, pool_order.order.status) == ("", Order.Status.FILLED)
    pool_round_close(round_=round_, actor=sponsor_user)
    assert PoolAllocation.objects.get(demand=demand).quantity == 20
