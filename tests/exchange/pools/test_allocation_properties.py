"""Properties of ``exchange.allocation`` (pure: no database), then one property of a whole round
on the services: whatever the members ask and the market offers, the allocations add up to the
pool's fills, no member gets more than it asked for or pays above its limit, and the ledger
balances."""

import itertools
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.management import call_command
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from exchange import allocation
from exchange.allocation import PRIORITY, PRO_RATA, AllocationError, Request
from exchange.models import (
    LIVE_STATUSES,
    CancelReason,
    Order,
    Organization,
    PoolAllocation,
    PoolDemand,
)
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import MICROS_PER_USD, position_account
from exchange.services.orders import orders_cancel
from exchange.services.pools import (
    demand_submit,
    pool_create,
    pool_cut_off,
    pool_member_add,
    pool_round_close,
)
from tests.exchange.conftest import _account
from tests.exchange.support import place

TICK = Decimal("0.005")

limits = st.integers(1, 12).map(lambda ticks: Decimal("2.40") + ticks * TICK)


@st.composite
def requests_(draw, min_size: int = 0, max_size: int = 8) -> list[Request]:
    """Requests with unique keys (in random order), lots, limits and priorities."""
    size = draw(st.integers(min_size, max_size))
    keys = draw(st.lists(st.integers(1, 10_000), min_size=size, max_size=size, unique=True))
    return [
        Request(
            key=key,
            lots=draw(st.integers(0, 50)),
            limit=draw(limits),
            priority=draw(st.integers(0, 3)),
        )
        for key in keys
    ]


@st.composite
def requests_and_filled(draw) -> tuple[list[Request], int]:
    requests = draw(requests_())
    return requests, draw(st.integers(0, sum(r.lots for r in requests)))


rules = st.sampled_from([PRO_RATA, PRIORITY])


# allocate ----------------------------------------------------------------------------------


@given(requests_and_filled(), rules)
def test_allocate_shares_exactly_what_filled_within_each_request(case, rule):
    requests, filled = case

    shares = allocation.allocate(requests, filled, rule)

    assert set(shares) == {r.key for r in requests}
    assert sum(shares.values()) == filled
    for request in requests:
        assert 0 <= shares[request.key] <= request.lots


@given(requests_and_filled(), rules, st.randoms(use_true_random=False))
def test_allocate_is_deterministic_whatever_the_order_of_the_requests(case, rule, random):
    requests, filled = case
    shuffled = list(requests)
    random.shuffle(shuffled)

    assert allocation.allocate(requests, filled, rule) == allocation.allocate(
        shuffled, filled, rule
    )
    assert allocation.allocate(requests, filled, rule) == allocation.allocate(
        requests, filled, rule
    )


@given(requests_and_filled())
def test_pro_rata_is_within_one_lot_of_the_exact_share(case):
    requests, filled = case
    total = sum(r.lots for r in requests)

    shares = allocation.allocate(requests, filled, PRO_RATA)

    for request in requests:
        exact = Fraction(filled * request.lots, total) if total else Fraction(0)
        assert abs(shares[request.key] - exact) < 1
        # Largest remainder: the floor of the exact share, or one lot more.
        assert shares[request.key] in (exact.__floor__(), exact.__floor__() + 1)


@given(requests_and_filled())
def test_priority_serves_nobody_later_while_someone_earlier_is_short(case):
    requests, filled = case

    shares = allocation.allocate(requests, filled, PRIORITY)

    served = sorted(requests, key=lambda r: (r.priority, r.key))
    for earlier, later in itertools.combinations(served, 2):
        if shares[earlier.key] < earlier.lots:
            assert shares[later.key] == 0, (earlier, later, shares)


def test_allocate_examples():
    requests = [
        Request(1, 60, Decimal("2.5")),
        Request(2, 30, Decimal("2.5")),
        Request(3, 10, Decimal("2.5")),
    ]
    assert allocation.allocate(requests, 70, PRO_RATA) == {1: 42, 2: 21, 3: 7}
    # 3 lots over 1:1:1, the remainders tie: the earlier requests take the extra lots.
    equal = [Request(5, 1, Decimal(1)), Request(6, 1, Decimal(1)), Request(7, 1, Decimal(1))]
    assert allocation.allocate(equal, 2, PRO_RATA) == {5: 1, 6: 1, 7: 0}
    ranked = [Request(1, 5, Decimal(1), priority=2), Request(2, 5, Decimal(1), priority=1)]
    assert allocation.allocate(ranked, 7, PRIORITY) == {2: 5, 1: 2}


@pytest.mark.parametrize(
    ("requests", "filled", "rule"),
    [
        ([Request(1, 3, Decimal(1))], 4, PRO_RATA),  # filled above what was requested
        ([Request(1, 3, Decimal(1))], 4, PRIORITY),
        ([Request(1, 3, Decimal(1))], -1, PRO_RATA),  # negative fills
        ([Request(1, 3, Decimal(1))], -1, PRIORITY),
        ([Request(1, 5, Decimal(1)), Request(2, -2, Decimal(1))], 1, PRO_RATA),  # negative lots
        ([Request(1, 5, Decimal(1)), Request(2, -2, Decimal(1))], 1, PRIORITY),
        ([Request(1, 2, Decimal(1)), Request(1, 2, Decimal(2))], 1, PRO_RATA),  # duplicate keys
        ([Request(1, 2, Decimal(1)), Request(1, 2, Decimal(2))], 1, PRIORITY),
        ([Request(1, 2, Decimal(1))], 1, "largest_first"),  # unknown rule
        ([], 0, "largest_first"),
    ],
)
def test_allocate_refuses_invalid_input(requests, filled, rule):
    with pytest.raises(AllocationError):
        allocation.allocate(requests, filled, rule)


# split -------------------------------------------------------------------------------------

weights_ = st.lists(st.integers(0, 10**6), min_size=1, max_size=10).filter(any)


@given(weights_, st.data())
def test_split_never_loses_or_creates_a_unit(weights, data):
    amount = data.draw(st.integers(0, 10**12) | st.integers(0, sum(weights)))

    parts = allocation.split(amount, weights)

    assert len(parts) == len(weights)
    assert sum(parts) == amount
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert part >= 0
        assert abs(part - Fraction(amount * weight, total)) < 1
        if amount <= total:
            assert part <= weight


def test_split_examples():
    assert allocation.split(10, [1, 1, 1]) == [4, 3, 3]
    assert allocation.split(0, [0, 0]) == [0, 0]
    assert allocation.split(7, [0, 3, 0]) == [0, 7, 0]
    assert allocation.split(100, [2, 1]) == [67, 33]


@pytest.mark.parametrize(("amount", "weights"), [(1, [1, -1]), (5, [0, 0]), (1, [])])
def test_split_refuses_invalid_input(amount, weights):
    with pytest.raises(AllocationError):
        allocation.split(amount, weights)


# price_tiers -------------------------------------------------------------------------------


@given(requests_(), st.integers(1, 5))
def test_price_tiers_cover_every_request_once_never_above_its_limit(requests, tiers_max):
    tiers = allocation.price_tiers(requests, tiers_max)

    assert len(tiers) <= tiers_max
    assert len(tiers) == min(tiers_max, len({r.limit for r in requests}))
    keys = [r.key for _, tier in tiers for r in tier]
    assert sorted(keys) == sorted(r.key for r in requests)
    for price, tier in tiers:
        assert tier
        assert all(price <= r.limit for r in tier)
        assert price == min(r.limit for r in tier)  # The lowest limit: nobody pays more.
        assert tier == sorted(tier, key=lambda r: (r.priority, r.key))
    # Highest first, and contiguous: every limit of a tier is above every limit of the next.
    for (_, higher), (_, lower) in itertools.pairwise(tiers):
        assert min(r.limit for r in higher) > max(r.limit for r in lower)


def test_price_tiers_examples():
    a, b, c = (Request(k, 1, Decimal(limit)) for k, limit in ((1, "2.6"), (2, "2.5"), (3, "2.4")))
    d = Request(4, 1, Decimal("2.50"))

    assert allocation.price_tiers([c, a, b, d], 2) == [
        (Decimal("2.5"), [a, b, d]),
        (Decimal("2.4"), [c]),
    ]
    assert allocation.price_tiers([a, c], 1) == [(Decimal("2.4"), [a, c])]
    assert allocation.price_tiers([], 3) == []


@pytest.mark.parametrize("tiers_max", [0, -1])
def test_price_tiers_need_at_least_one_tier(tiers_max):
    with pytest.raises(AllocationError):
        allocation.price_tiers([Request(1, 1, Decimal(1))], tiers_max)


# A whole round on the services -------------------------------------------------------------

member_case = st.fixed_dictionaries(
    {
        "gpus": st.integers(1, 40),
        "limit": limits,
        "months": st.sampled_from([(0,), (1,), (0, 1)]),
        "cash": st.sampled_from(["0", "3000", "200000"]),
        "priority": st.integers(0, 3),
    }
)
# Sells from a little below the lowest limit to the highest: most rounds fill something.
sell_prices = st.integers(-4, 12).map(lambda ticks: Decimal("2.40") + ticks * TICK)
sell_case = st.tuples(st.integers(0, 1), st.integers(1, 60), sell_prices)
round_case = st.fixed_dictionaries(
    {
        "members": st.lists(member_case, min_size=3, max_size=5),
        "sells": st.lists(sell_case, min_size=1, max_size=6),
        "rule": rules,
        "subsidy": st.sampled_from(["0", "10", "37.5"]),
        "credit_line": st.sampled_from(["0", "2000", "20000"]),
    }
)
example_numbers = itertools.count()


@pytest.mark.django_db
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=round_case)
def test_a_round_allocates_exactly_the_fills_within_each_demand(
    case, sponsor, sponsor_user, futures, seller
):
    # given a fresh pool and members (the examples share the database) and resting sells on a
    # book the earlier examples left empty
    orders_cancel(
        orders=Order.objects.filter(account=seller, status__in=LIVE_STATUSES),
        reason=CancelReason.USER,
    )
    number = next(example_numbers)
    pool = pool_create(
        sponsor=sponsor,
        name=f"Round {number}",
        rule=case["rule"],
        subsidy_percent=Decimal(case["subsidy"]),
        credit_line=Decimal(case["credit_line"]),
        actor=sponsor_user,
    )
    deposit_test_funds(account=pool.account, amount=Decimal("300000"), actor=None)
    members = []
    for index, wanted in enumerate(case["members"]):
        account = _account(f"s{number}-{index}", Organization.Kind.STARTUP, funded=False)
        if Decimal(wanted["cash"]):
            deposit_test_funds(account=account, amount=Decimal(wanted["cash"]), actor=None)
        member = pool_member_add(
            pool=pool,
            organization=account.organization,
            priority=wanted["priority"],
            actor=sponsor_user,
        )
        members.append(member)
        demand_submit(
            member=member,
            sku=futures[0].sku,
            region=futures[0].region,
            months=[futures[month].delivery_start for month in wanted["months"]],
            gpus=wanted["gpus"],
            limit_price=wanted["limit"],
            actor=sponsor_user,
        )
    for month, quantity, price in case["sells"]:
        place(seller, futures[month], "sell", quantity, str(price))

    # when
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    round_ = pool_round_close(round_=round_, actor=sponsor_user)

    # then
    assert round_.status == "allocated"
    allocations = list(PoolAllocation.objects.filter(round=round_).select_related("demand"))
    demands = list(PoolDemand.objects.filter(pool=pool))
    assert sorted(a.demand_id for a in allocations) == sorted(d.pk for d in demands)
    assert {d.status for d in demands} == {PoolDemand.Status.ALLOCATED}
    for pool_order in round_.orders.select_related("order"):
        filled = pool_order.order.filled_quantity if pool_order.order else 0
        assert sum(a.quantity for a in allocations if a.pool_order_id == pool_order.pk) == filled
        assert pool_order.order is None or pool_order.order.status not in LIVE_STATUSES
    for row in allocations:
        hours = row.instrument.gpu_hours_per_contract
        assert 0 <= row.quantity <= row.demand.quantity == row.requested
        if row.quantity:
            average = Decimal(row.cost) / (row.quantity * hours * MICROS_PER_USD)
            assert average <= row.demand.limit_price
            assert row.pool_order.price <= row.demand.limit_price
        assert (row.entry_id is not None) == (row.status == PoolAllocation.Status.SETTLED)
        assert (row.quantity == 0) == (row.status == PoolAllocation.Status.NONE)
    for instrument in futures:
        for member in members:
            settled = sum(
                a.quantity
                for a in allocations
                if a.member_id == member.pk
                and a.instrument_id == instrument.pk
                and a.status == PoolAllocation.Status.SETTLED
            )
            assert position_account(member.account, instrument.symbol).balance == settled
        unfunded = sum(
            a.quantity
            for a in allocations
            if a.instrument_id == instrument.pk and a.status == PoolAllocation.Status.UNFUNDED
        )
        assert position_account(pool.account, instrument.symbol).balance == unfunded
    call_command("ledger_check")
    for row in allocations:
        event(f"allocation {row.status}")
    event(f"refused tiers: {round_.orders.exclude(refusal_code='').count()}")
