"""The demo pool's full cycle on the demo market: three members ask for more than the best ask
offers, the pool's order fills partly, and the fills are shared pro rata with the sponsor's
subsidy, every amount in the ledger, which still checks out."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from exchange.demo import DEMO_POOL_NAME
from exchange.models import Instrument, Order, Pool, PoolAllocation, PoolRound
from exchange.selectors.market import quotes_for
from exchange.selectors.pools import report
from exchange.services.ledger_accounts import cash_account, position_account
from exchange.services.pools import demand_submit, pool_cut_off, pool_round_close

pytestmark = pytest.mark.django_db


def test_the_demo_pool_runs_a_cycle_with_partial_fills_and_subsidy():
    call_command("seed_demo", stdout=StringIO())
    pool = Pool.objects.get(name=DEMO_POOL_NAME)
    lumen, quanta, cirrus = pool.members.order_by("priority")
    future = Instrument.objects.filter(
        kind="future", sku__code="H100SXM", region__code="USEAST"
    ).order_by("delivery_start")[0]
    ask = quotes_for([future])[future.pk].best_ask
    wanted = {lumen: 3 * ask.quantity, quanta: 2 * ask.quantity, cirrus: ask.quantity}
    for member, gpus in wanted.items():
        demand_submit(
            member=member,
            sku=future.sku,
            region=future.region,
            months=[future.delivery_start],
            gpus=gpus,
            limit_price=ask.price,
            actor=None,
        )
    cash_before = {m: cash_account(m.account).available for m in wanted}
    # The demo's startups already trade this future: compare with what they held before.
    held_before = {m: position_account(m.account, future.symbol).balance for m in wanted}
    pool_cash_before = cash_account(pool.account).available

    round_ = pool_cut_off(pool=pool, actor=None)
    tier = round_.orders.get()
    assert (tier.quantity, tier.price) == (6 * ask.quantity, ask.price)
    assert tier.order.filled_quantity == ask.quantity  # only the best level was at the limit
    assert tier.order.status == Order.Status.PARTIALLY_FILLED
    round_ = pool_round_close(round_=round_, actor=None)

    assert round_.status == PoolRound.Status.ALLOCATED
    assert Order.objects.get(pk=tier.order_id).status == Order.Status.CANCELLED
    allocations = {a.member: a for a in PoolAllocation.objects.filter(round=round_)}
    assert sum(a.quantity for a in allocations.values()) == ask.quantity
    hours = future.gpu_hours_per_contract
    for member, allocation in allocations.items():
        assert allocation.status == PoolAllocation.Status.SETTLED
        assert allocation.quantity <= wanted[member]
        # exact pro rata share, within one lot
        assert abs(allocation.quantity - ask.quantity * wanted[member] / sum(wanted.values())) < 1
        assert allocation.cost == int(ask.price * allocation.quantity * hours * 10**6)
        assert allocation.subsidy == allocation.cost // 10
        held = position_account(member.account, future.symbol).balance
        assert held - held_before[member] == allocation.quantity
        paid = cash_before[member] - cash_account(member.account).available
        assert paid == allocation.margin + allocation.fee - allocation.subsidy
    assert position_account(pool.account, future.symbol).balance == 0
    subsidy = sum(a.subsidy for a in allocations.values())
    fees_back = sum(a.fee for a in allocations.values())
    # The pool paid its fees at the block tier and the subsidy; its members repaid the fees.
    pool_paid = pool_cash_before - cash_account(pool.account).available
    assert pool_paid == subsidy + _fees_paid(tier.order) - fees_back
    whole = report(pool)
    assert whole.gpu_hours_filled == ask.quantity * hours
    assert whole.subsidy == Decimal(subsidy) / 10**6
    call_command("ledger_check", stdout=StringIO())


def _fees_paid(order: Order) -> int:
    """The pool's fees on its fills (it took liquidity: the taker rate of its block tier)."""
    return int(order.taker_fee_rate * 10**6) * order.filled_quantity
