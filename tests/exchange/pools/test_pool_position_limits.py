"""A pool's account is its sponsor's: its round buys count against the sponsor's position
limit unless staff exempt the sponsor. A tier so refused says why on the round, and the round
allocates it nothing; an exempt sponsor's tier is placed."""

from decimal import Decimal

import pytest

from exchange.models import Order, PoolAllocation
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


def test_a_tier_beyond_the_sponsors_limit_is_refused_with_its_reason_on_the_round(
    pool, members, future, seller, sponsor_user, settings
):
    # given demand for 20 GPUs of the month, a seller the tier would meet, and a limit of 15
    demand = _submit(members[0], future, gpus=20)
    place(seller, future, "sell", 20, "2.45")
    settings.EXCHANGE_POSITION_LIMIT = 15

    # when the round is cut off
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    # then the tier is recorded refused, by name, with what counts, and no order stands for it
    pool_order = round_.orders.get()
    assert (pool_order.order, pool_order.refusal_code) == (None, "RISK_POSITION_LIMIT")
    assert f"could be 20 contracts long in {future.symbol}" in pool_order.refusal_message
    assert "above its position limit of 15" in pool_order.refusal_message
    assert "staff may grant an exemption" in pool_order.refusal_message
    assert not Order.objects.filter(account=pool.account).exists()
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
