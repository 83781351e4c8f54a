"""A pool's full cycle on the services: demand, cut-off into tier orders, partial fills, the
allocation's ledger entries (subsidy, fee share, credit line) and the ledger's own check."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from exchange.models import Notice, Order, PoolAllocation, PoolDemand, PoolRound
from exchange.services.ledger_accounts import cash_account, micros_to_usd, position_account
from exchange.services.pools import (
    credit_outstanding,
    demand_submit,
    pool_cut_off,
    pool_round_close,
)
from tests.exchange.support import place

pytestmark = pytest.mark.django_db


def test_a_round_allocates_partial_fills_pro_rata_with_subsidy_and_credit(
    pool, members, sponsor_user, future, seller
):
    ada, bolt, cirrus = members
    hours = future.gpu_hours_per_contract
    month = future.delivery_start
    for member, gpus in ((ada, 60), (bolt, 30), (cirrus, 10)):
        demand_submit(
            member=member,
            sku=future.sku,
            region=future.region,
            months=[month],
            gpus=gpus,
            limit_price=Decimal("2.50"),
            actor=sponsor_user,
        )
    place(seller, future, "sell", 40, "2.40")
    place(seller, future, "sell", 30, "2.45")

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    pool_order = round_.orders.get()
    assert (pool_order.quantity, pool_order.price) == (100, Decimal("2.50"))
    order = pool_order.order
    assert order.filled_quantity == 70 and order.status == Order.Status.PARTIALLY_FILLED
    # The order keeps the schedule's rates; its 70 contracts filled reach no block tier (100),
    # so its fills pay the whole 0.50 taker fee, though the order asked for 100.
    assert order.taker_fee_rate == Decimal("0.50")

    round_ = pool_round_close(round_=round_, actor=sponsor_user)

    assert round_.status == PoolRound.Status.ALLOCATED
    rows = {a.member_id: a for a in PoolAllocation.objects.filter(round=round_)}
    assert {m.pk: rows[m.pk].quantity for m in members} == {ada.pk: 42, bolt.pk: 21, cirrus.pk: 7}
    total_cost = (40 * Decimal("2.40") + 30 * Decimal("2.45")) * hours * 10**6
    assert sum(a.cost for a in rows.values()) == total_cost
    assert sum(a.fee for a in rows.values()) == 70 * 500_000
    for member in members:
        allocation = rows[member.pk]
        assert allocation.status == PoolAllocation.Status.SETTLED
        assert allocation.subsidy == allocation.cost // 10
        assert position_account(member.account, future.symbol).balance == allocation.quantity
    assert position_account(pool.account, future.symbol).balance == 0
    # cirrus had no cash: the pool lent it the margin and fee, less its subsidy.
    lent = rows[cirrus.pk].margin + rows[cirrus.pk].fee - rows[cirrus.pk].subsidy
    assert rows[cirrus.pk].credit == lent > 0
    assert credit_outstanding(cirrus) == lent
    assert cash_account(cirrus.account).available == 0
    assert set(PoolDemand.objects.values_list("status", flat=True)) == {"allocated"}
    # and each member is told what it received and paid (cirrus: what the pool lent it)
    told = {n.account_id: n for n in Notice.objects.filter(kind=Notice.Kind.POOL_ALLOCATION)}
    assert set(told) == {member.account_id for member in members}
    assert told[ada.account_id].subject == (
        f"Pool {pool.name}, round {round_.number}: 42 {future.symbol} allocated"
    )
    assert "42 of the 60 contract(s)" in told[ada.account_id].message
    assert "the pool lent" not in told[ada.account_id].message
    assert f"the pool lent ${micros_to_usd(lent):,.2f}" in told[cirrus.account_id].message
    call_command("ledger_check")


def test_members_above_the_tier_price_never_pay_more_than_their_limit(
    pool, members, sponsor_user, future, seller
):
    ada, bolt, _ = members
    for member, limit in ((ada, "2.60"), (bolt, "2.40")):
        demand_submit(
            member=member,
            sku=future.sku,
            region=future.region,
            months=[future.delivery_start],
            gpus=10,
            limit_price=Decimal(limit),
            actor=sponsor_user,
        )
    place(seller, future, "sell", 10, "2.55")

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    pool_round_close(round_=round_, actor=sponsor_user)

    allocations = {a.member_id: a for a in PoolAllocation.objects.all()}
    assert allocations[ada.pk].quantity == 10
    assert allocations[bolt.pk].quantity == 0
    assert allocations[bolt.pk].status == PoolAllocation.Status.NONE
    nothing = Notice.objects.get(account=bolt.account, kind=Notice.Kind.POOL_ALLOCATION)
    assert nothing.subject.endswith(f"nothing filled for your {future.symbol} demand")
    hours = future.gpu_hours_per_contract
    assert micros_to_usd(allocations[ada.pk].cost) == Decimal("2.55") * 10 * hours
    call_command("ledger_check")


def test_the_report_compares_with_the_market_and_the_on_demand_price(
    pool, members, sponsor_user, future, seller, buyer
):
    from exchange.selectors.pools import report

    ada, bolt, _ = members
    future.sku.on_demand_price = Decimal("7.45")
    future.sku.save()
    hours = future.gpu_hours_per_contract
    # Others traded at 2.60 before the cut-off: the market's average.
    place(seller, future, "sell", 5, "2.60")
    place(buyer, future, "buy", 5, "2.60")
    for member in (ada, bolt):
        demand_submit(
            member=member,
            sku=future.sku,
            region=future.region,
            months=[future.delivery_start],
            gpus=10,
            limit_price=Decimal("2.50"),
            actor=sponsor_user,
        )
    place(seller, future, "sell", 10, "2.45")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    pool_round_close(round_=round_, actor=sponsor_user)

    mine = report(pool, member=ada)
    whole = report(pool)

    assert [line.allocation.member_id for line in mine.lines] == [ada.pk]
    line = mine.lines[0]
    assert (line.gpu_hours_requested, line.gpu_hours_filled) == (10 * hours, 5 * hours)
    assert (line.average_price, line.market_price) == (Decimal("2.45"), Decimal("2.60"))
    assert line.savings_vs_market == Decimal("0.15") * 5 * hours
    assert line.savings_vs_on_demand == (Decimal("7.45") - Decimal("2.45")) * 5 * hours
    assert line.subsidy == (Decimal("2.45") * 5 * hours / 10).quantize(Decimal("0.000001"))
    assert mine.fill_ratio == Decimal("50.00")
    assert whole.gpu_hours_filled == 10 * hours
    assert whole.subsidy == 2 * line.subsidy
