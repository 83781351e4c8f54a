"""A pool's orders and its sponsor's own: one organization, so they never trade together."""

from decimal import Decimal

import pytest

from exchange.models import Order, Trade
from exchange.services.participants import account_main
from exchange.services.pools import demand_submit, pool_cut_off
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def test_a_sponsor_cannot_sell_its_own_pool_what_its_members_pay_for(
    pool, members, sponsor, sponsor_user, future, seller
):
    # given a round working: the pool's tier bid for its members, paid with their money
    ada = members[0]
    demand_submit(
        member=ada,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=4,
        limit_price=Decimal("2.50"),
        actor=sponsor_user,
    )
    bid = pool_cut_off(pool=pool, actor=sponsor_user).orders.get().order
    assert (bid.account_id, bid.status, bid.open_quantity) == (pool.account_id, "open", 4)

    # when the sponsor's main account sells into it
    own = place(account_main(sponsor), future, "sell", 4, "2.40")

    # then self-trade prevention cancels the sell (the default mode, cancel_newest), unfilled
    assert (own.status, own.done_reason, own.filled_quantity) == ("cancelled", "self_trade", 0)
    bid.refresh_from_db()
    assert (bid.status, bid.open_quantity) == ("open", 4)
    # and another organization's sell fills the pool as ever
    ask = place(seller, future, "sell", 4, "2.40")
    assert ask.status == Order.Status.FILLED
    assert list(Trade.objects.values_list("maker_order_id", "taker_order_id")) == [(bid.pk, ask.pk)]
