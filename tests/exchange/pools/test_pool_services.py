"""Every pool service: what it writes when it succeeds, and the named code it refuses with,
having written nothing (``exchange.services.pools``)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from exchange import calendar, tasks
from exchange.errors import PoolError, PoolErrorCode
from exchange.matcher.runtime import Matcher
from exchange.models import (
    Account,
    AuditEntry,
    Instrument,
    MarginCall,
    Notice,
    Order,
    OrderCommand,
    Organization,
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolOrder,
    PoolRound,
    PoolTransfer,
    SettlementPrice,
    Trade,
)
from exchange.services import collateral
from exchange.services import pools as pools_services
from exchange.services.funding import deposit_test_funds
from exchange.services.ledger_accounts import (
    cash_account,
    cost_account,
    margin_account,
    position_account,
)
from exchange.services.margin import order_margin_per_contract
from exchange.services.orders import order_cancel
from exchange.services.participants import account_main, organization_create
from exchange.services.pools import (
    credit_outstanding,
    demand_amend,
    demand_submit,
    demand_withdraw,
    pool_create,
    pool_credit_repay,
    pool_cut_off,
    pool_fund,
    pool_member_add,
    pool_member_graduate,
    pool_member_priority_set,
    pool_offer,
    pool_reallocate,
    pool_round_close,
    pool_settings_set,
    pool_take_back,
    pools_run_due,
)
from ledger.models import Entry
from tests.exchange.pools.conftest import POOL_FUNDS
from tests.exchange.pools.support import startup
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

Code = PoolErrorCode
WRITTEN_MODELS = (
    Pool,
    PoolMember,
    PoolDemand,
    PoolRound,
    PoolOrder,
    PoolAllocation,
    PoolTransfer,
    Account,
    Order,
    OrderCommand,
    AuditEntry,
    Entry,
)


def _rows() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in WRITTEN_MODELS}


def assert_refused(code: PoolErrorCode, service, **arguments) -> PoolError:
    """The service refuses with ``code`` and writes nothing at all."""
    before = _rows()
    with pytest.raises(PoolError) as raised:
        service(**arguments)
    assert raised.value.code == code, raised.value
    assert _rows() == before
    return raised.value


def _submit(member, instrument, *, gpus=10, limit="2.50", actor=None) -> PoolDemand:
    [demand] = demand_submit(
        member=member,
        sku=instrument.sku,
        region=instrument.region,
        months=[instrument.delivery_start],
        gpus=gpus,
        limit_price=Decimal(limit),
        actor=actor,
    )
    return demand


def _reload(row):
    return type(row).objects.get(pk=row.pk)


def _cash(account) -> int:
    return cash_account(account).available


def _audit(action: str, target) -> AuditEntry:
    return AuditEntry.objects.get(
        action=action, target_type=type(target).__name__, target_id=str(target.pk)
    )


def _micros(usd: str) -> int:
    return int(Decimal(usd) * 10**6)


# pool_create -------------------------------------------------------------------------------


def test_pool_create_opens_a_trading_account_and_records_its_terms(sponsor, sponsor_user):
    cutoff = timezone.now() + timedelta(days=2)

    pool = pool_create(
        sponsor=sponsor,
        name="  Seed GPUs  ",
        rule=Pool.Rule.PRIORITY,
        subsidy_percent=Decimal("12.50"),
        credit_line=Decimal("1500.25"),
        cutoff_at=cutoff,
        actor=sponsor_user,
    )

    pool = _reload(pool)
    assert (pool.name, pool.rule, pool.subsidy_percent) == (
        "Seed GPUs",
        "priority",
        Decimal("12.5"),
    )
    assert (pool.credit_line, pool.cutoff_at, pool.status) == (1_500_250_000, cutoff, "open")
    assert pool.account.organization == sponsor
    assert pool.account != account_main(sponsor)
    assert _cash(pool.account) == 0
    audit = _audit("pool.create", pool)
    assert audit.actor == sponsor_user
    assert audit.after["credit_line"] == "1500.250000"
    assert audit.after["subsidy_percent"] == "12.50"


def test_only_a_sponsor_creates_pools(buyer):
    error = assert_refused(
        Code.SPONSOR_REQUIRED, pool_create, sponsor=buyer.organization, name="Mine", actor=None
    )
    assert error.field == "sponsor"


def test_a_sponsor_names_each_pool_once(pool, sponsor, sponsor_user):
    error = assert_refused(
        Code.NAME_TAKEN, pool_create, sponsor=sponsor, name="Seed GPUs", actor=sponsor_user
    )
    assert error.field == "name"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_pool_names_are_one_to_a_hundred_characters(sponsor, name):
    assert_refused(Code.NAME_INVALID, pool_create, sponsor=sponsor, name=name, actor=None)


@pytest.mark.parametrize(
    ("terms", "code", "field"),
    [
        ({"rule": "largest_first"}, Code.RULE_INVALID, "rule"),
        ({"subsidy_percent": Decimal("-1")}, Code.SUBSIDY_INVALID, "subsidy_percent"),
        ({"subsidy_percent": Decimal("100.01")}, Code.SUBSIDY_INVALID, "subsidy_percent"),
        ({"subsidy_percent": Decimal("10.005")}, Code.SUBSIDY_INVALID, "subsidy_percent"),
        ({"subsidy_percent": 10}, Code.SUBSIDY_INVALID, "subsidy_percent"),
        ({"subsidy_percent": Decimal("NaN")}, Code.SUBSIDY_INVALID, "subsidy_percent"),
        ({"credit_line": Decimal("-0.01")}, Code.CREDIT_LINE_INVALID, "credit_line"),
        ({"credit_line": Decimal("0.0000001")}, Code.CREDIT_LINE_INVALID, "credit_line"),
        ({"credit_line": Decimal("10000000.01")}, Code.CREDIT_LINE_INVALID, "credit_line"),
        ({"credit_line": Decimal("Infinity")}, Code.CREDIT_LINE_INVALID, "credit_line"),
        ({"credit_line": Decimal("NaN")}, Code.CREDIT_LINE_INVALID, "credit_line"),
        (
            {"cutoff_at": timezone.now() - timedelta(minutes=1)},
            Code.CUTOFF_INVALID,
            "cutoff_at",
        ),
    ],
)
def test_pool_create_refuses_bad_terms(sponsor, terms, code, field):
    error = assert_refused(code, pool_create, sponsor=sponsor, name="Seed", actor=None, **terms)
    assert error.field == field


# pool_settings_set -------------------------------------------------------------------------


def test_pool_settings_set_changes_the_terms_and_audits_before_and_after(pool, sponsor_user):
    cutoff = timezone.now() + timedelta(hours=3)

    changed = pool_settings_set(
        pool=pool,
        rule=Pool.Rule.PRIORITY,
        subsidy_percent=Decimal("0"),
        credit_line=Decimal("0"),
        cutoff_at=cutoff,
        actor=sponsor_user,
    )

    pool = _reload(pool)
    assert (pool.rule, pool.subsidy_percent, pool.credit_line, pool.cutoff_at) == (
        "priority",
        Decimal("0"),
        0,
        cutoff,
    )
    assert changed.rule == "priority"
    audit = _audit("pool.settings", pool)
    assert (audit.before["rule"], audit.after["rule"]) == ("pro_rata", "priority")
    assert (audit.before["subsidy_percent"], audit.after["subsidy_percent"]) == ("10.00", "0")


def test_pool_settings_set_refuses_bad_terms_and_closed_pools(pool):
    terms = {
        "rule": Pool.Rule.PRO_RATA,
        "subsidy_percent": Decimal("10"),
        "credit_line": Decimal("20000"),
        "cutoff_at": None,
    }
    assert_refused(
        Code.SUBSIDY_INVALID,
        pool_settings_set,
        pool=pool,
        actor=None,
        **{**terms, "subsidy_percent": Decimal("101")},
    )
    assert _reload(pool).subsidy_percent == Decimal("10")

    Pool.objects.filter(pk=pool.pk).update(status=Pool.Status.CLOSED)
    assert_refused(Code.CLOSED, pool_settings_set, pool=pool, actor=None, **terms)


# Members -----------------------------------------------------------------------------------


def test_pool_member_add_uses_the_organizations_main_account(pool, sponsor_user):
    ada = startup("ada", "0")

    member = pool_member_add(pool=pool, organization=ada, priority=5, actor=sponsor_user)

    member = _reload(member)
    assert (member.account, member.priority, member.status) == (account_main(ada), 5, "active")
    assert _audit("pool.member_add", member).after == {"organization": "ada", "priority": 5}


@pytest.mark.parametrize(
    "kind",
    [
        Organization.Kind.TRADING_FIRM,
        Organization.Kind.PROVIDER,
        Organization.Kind.SPONSOR,
        Organization.Kind.EXCHANGE,
    ],
)
def test_only_startups_are_members(pool, kind):
    # A trading firm or a provider added as a member could be given the pool's capacity
    # (and have margin taken from its cash) without ever having asked for it.
    organization = account_main(
        organization_create(slug="other", name="Other Co", kind=kind)
    ).organization

    error = assert_refused(
        Code.MEMBER_NOT_STARTUP, pool_member_add, pool=pool, organization=organization, actor=None
    )

    assert error.field == "organization"
    assert "Only startups join a pool" in error.message
    assert not PoolMember.objects.filter(organization=organization).exists()


def test_the_pools_own_sponsor_is_not_a_member(pool, sponsor):
    error = assert_refused(
        Code.MEMBER_NOT_STARTUP, pool_member_add, pool=pool, organization=sponsor, actor=None
    )
    assert error.field == "organization"


def test_an_organization_joins_a_pool_once(pool, members):
    assert_refused(
        Code.ALREADY_MEMBER,
        pool_member_add,
        pool=pool,
        organization=members[0].organization,
        actor=None,
    )


def test_a_closed_pool_takes_no_members(pool):
    Pool.objects.filter(pk=pool.pk).update(status=Pool.Status.CLOSED)
    assert_refused(
        Code.CLOSED,
        pool_member_add,
        pool=_reload(pool),
        organization=startup("ada", "0"),
        actor=None,
    )


@pytest.mark.parametrize("priority", [-1, 10_001, True, 1.5])
def test_priority_is_a_whole_number_from_0_to_10000(pool, members, priority):
    dyna = startup("dyna", "0")
    assert_refused(
        Code.PRIORITY_INVALID,
        pool_member_add,
        pool=pool,
        organization=dyna,
        priority=priority,
        actor=None,
    )
    assert_refused(
        Code.PRIORITY_INVALID,
        pool_member_priority_set,
        member=members[0],
        priority=priority,
        actor=None,
    )
    assert _reload(members[0]).priority == 10


def test_pool_member_priority_set(members, sponsor_user):
    ada = members[0]

    pool_member_priority_set(member=ada, priority=0, actor=sponsor_user)

    assert _reload(ada).priority == 0
    audit = _audit("pool.member_priority", ada)
    assert (audit.before, audit.after) == ({"priority": 10}, {"priority": 0})


# demand_submit -----------------------------------------------------------------------------


def test_demand_for_several_months_is_one_demand_per_month(members, futures, sponsor_user):
    ada = members[0]
    february, march = futures
    lcm_hours = 20832  # A whole number of contracts of both months (672 and 744 GPU-hours).
    assert (february.gpu_hours_per_contract, march.gpu_hours_per_contract) == (672, 744)

    by_gpus = demand_submit(
        member=ada,
        sku=february.sku,
        region=february.region,
        months=[march.delivery_start, february.delivery_start, march.delivery_start],
        gpus=8,
        limit_price=Decimal("2.455"),
        actor=sponsor_user,
    )
    by_hours = demand_submit(
        member=ada,
        sku=february.sku,
        region=february.region,
        months=[february.delivery_start, march.delivery_start],
        gpu_hours=lcm_hours,
        limit_price=Decimal("2.50"),
        actor=sponsor_user,
    )

    assert [(d.instrument, d.quantity, d.gpu_hours) for d in by_gpus] == [
        (february, 8, 8 * 672),
        (march, 8, 8 * 744),
    ]
    assert [(d.instrument, d.quantity, d.gpu_hours) for d in by_hours] == [
        (february, 31, lcm_hours),
        (march, 28, lcm_hours),
    ]
    stored = PoolDemand.objects.get(pk=by_gpus[0].pk)
    assert (stored.status, stored.limit_price, stored.submitted_by) == (
        "open",
        Decimal("2.455"),
        sponsor_user,
    )
    audits = AuditEntry.objects.filter(action="pool.demand_submit").order_by("id")
    assert [a.target_id for a in audits] == [str(d.pk) for d in by_gpus + by_hours]
    assert audits[0].after == {
        "instrument": february.symbol,
        "quantity": 8,
        "gpu_hours": 8 * 672,
        "limit_price": "2.455",
        "status": "open",
    }


def _demand_terms(future, **overrides) -> dict:
    return {
        "sku": future.sku,
        "region": future.region,
        "months": [future.delivery_start],
        "limit_price": Decimal("2.50"),
        "actor": None,
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"gpu_hours": 1000}, Code.NOT_WHOLE_CONTRACTS, "gpu_hours"),
        ({"gpu_hours": 672, "gpus": 1}, Code.QUANTITY_INVALID, "gpu_hours"),
        ({}, Code.QUANTITY_INVALID, "gpu_hours"),
        ({"gpus": 0}, Code.QUANTITY_INVALID, "gpus"),
        ({"gpus": 100_001}, Code.QUANTITY_INVALID, "gpus"),
        ({"gpus": 2, "limit_price": Decimal("0")}, Code.PRICE_INVALID, "limit_price"),
        ({"gpus": 2, "limit_price": Decimal("-2.5")}, Code.PRICE_INVALID, "limit_price"),
        ({"gpus": 2, "limit_price": Decimal("2.502")}, Code.PRICE_INVALID, "limit_price"),
        ({"gpus": 2, "limit_price": Decimal("1000.005")}, Code.PRICE_INVALID, "limit_price"),
        ({"gpus": 2, "limit_price": 2.5}, Code.PRICE_INVALID, "limit_price"),
        ({"gpus": 2, "limit_price": Decimal("NaN")}, Code.PRICE_INVALID, "limit_price"),
        ({"gpus": 2, "months": []}, Code.MONTHS_INVALID, "months"),
    ],
)
def test_demand_submit_refuses_bad_demand(members, future, overrides, code, field):
    error = assert_refused(
        code, demand_submit, member=members[0], **_demand_terms(future, **overrides)
    )
    assert error.field == field


def test_demand_for_a_month_not_listed_is_refused_whole(members, futures):
    february, march = futures
    april = calendar.add_months(march.delivery_start, 1)

    error = assert_refused(
        Code.MONTHS_INVALID,
        demand_submit,
        member=members[0],
        **_demand_terms(february, months=[february.delivery_start, april], gpus=4),
    )
    assert error.field == "months"

    # A halted future does not trade either.
    Instrument.objects.filter(pk=march.pk).update(status=Instrument.Status.HALTED)
    assert_refused(
        Code.MONTHS_INVALID,
        demand_submit,
        member=members[0],
        **_demand_terms(february, months=[march.delivery_start], gpus=4),
    )


def test_demand_for_a_future_that_stopped_trading_is_refused(members, futures):
    # given the first month's last trading day has passed, though the daily cycle has not yet
    # expired it (its status still says active): an order on it is ORDER_INSTRUMENT_EXPIRED
    ended = futures[0]
    Instrument.objects.filter(pk=ended.pk).update(
        last_trading_day=timezone.now().date() - timedelta(days=2)
    )
    # then demand for it is refused, alone or with a month that trades
    for months in ([ended.delivery_start], [ended.delivery_start, futures[1].delivery_start]):
        error = assert_refused(
            Code.MONTHS_INVALID,
            demand_submit,
            member=members[0],
            sku=ended.sku,
            region=ended.region,
            months=months,
            gpus=10,
            limit_price=Decimal("2.50"),
            actor=None,
        )
        assert error.field == "months"


def test_a_graduated_member_submits_no_demand(members, future):
    pool_member_graduate(member=members[0], actor=None)

    assert_refused(
        Code.MEMBER_GRADUATED,
        demand_submit,
        member=members[0],
        **_demand_terms(future, gpus=4),
    )


# demand_amend and demand_withdraw -----------------------------------------------------------


def test_demand_amend_changes_quantity_and_limit_while_open(members, future, sponsor_user):
    demand = _submit(members[0], future, gpus=10, limit="2.50")

    demand_amend(demand=demand, limit_price=Decimal("2.45"), gpu_hours=3 * 672, actor=sponsor_user)

    demand = _reload(demand)
    assert (demand.quantity, demand.gpu_hours, demand.limit_price, demand.status) == (
        3,
        3 * 672,
        Decimal("2.45"),
        "open",
    )
    audit = _audit("pool.demand_amend", demand)
    assert (audit.before["quantity"], audit.after["quantity"]) == (10, 3)
    assert (audit.before["limit_price"], audit.after["limit_price"]) == ("2.500000", "2.45")


def test_demand_amend_refuses_bad_terms_leaving_the_demand_as_it_was(members, future):
    demand = _submit(members[0], future, gpus=10, limit="2.50")

    assert_refused(
        Code.PRICE_INVALID,
        demand_amend,
        demand=demand,
        limit_price=Decimal("2.501"),
        gpus=5,
        actor=None,
    )
    assert_refused(
        Code.NOT_WHOLE_CONTRACTS,
        demand_amend,
        demand=demand,
        limit_price=Decimal("2.45"),
        gpu_hours=700,
        actor=None,
    )

    demand = _reload(demand)
    assert (demand.quantity, demand.limit_price) == (10, Decimal("2.50"))


def test_demand_withdraw_then_it_is_locked(members, future, sponsor_user):
    demand = _submit(members[0], future)

    demand_withdraw(demand=demand, actor=sponsor_user)

    assert _reload(demand).status == PoolDemand.Status.WITHDRAWN
    assert _audit("pool.demand_withdraw", demand).after == {"status": "withdrawn"}
    assert_refused(Code.DEMAND_LOCKED, demand_withdraw, demand=demand, actor=None)
    assert_refused(
        Code.DEMAND_LOCKED,
        demand_amend,
        demand=demand,
        limit_price=Decimal("2.5"),
        gpus=1,
        actor=None,
    )


def test_demand_is_locked_after_the_cut_off(pool, members, future):
    demand = _submit(members[0], future)
    pool_cut_off(pool=pool, actor=None)

    assert _reload(demand).status == PoolDemand.Status.SUBMITTED
    assert_refused(
        Code.DEMAND_LOCKED,
        demand_amend,
        demand=demand,
        limit_price=Decimal("2.45"),
        gpus=5,
        actor=None,
    )
    assert_refused(Code.DEMAND_LOCKED, demand_withdraw, demand=demand, actor=None)
    assert _reload(demand).quantity == 10


def test_demand_is_locked_from_the_cut_off_time_not_from_when_the_scheduler_runs(
    pool, members, future
):
    # given ada's open demand, and a cut-off that has passed the scheduler has not yet run
    ada, bolt, _ = members
    demand = _submit(ada, future, gpus=10)
    passed = timezone.now() - timedelta(seconds=30)
    Pool.objects.filter(pk=pool.pk).update(cutoff_at=passed)

    # then no demand is submitted, amended or withdrawn any more, whatever the scheduler did
    for service, arguments in (
        (demand_amend, {"demand": demand, "limit_price": Decimal("2.60"), "gpus": 20}),
        (demand_withdraw, {"demand": demand}),
    ):
        error = assert_refused(Code.CUTOFF_PASSED, service, actor=None, **arguments)
        assert f"{passed:%Y-%m-%d %H:%M} UTC" in error.message
    assert_refused(
        Code.CUTOFF_PASSED,
        demand_submit,
        member=bolt,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=5,
        limit_price=Decimal("2.50"),
        actor=None,
    )
    demand = _reload(demand)
    assert (demand.status, demand.quantity, demand.limit_price) == ("open", 10, Decimal("2.50"))

    # when the scheduler cuts off, the round has the demand as it stood at the cut-off time
    pools_run_due()
    assert PoolOrder.objects.get().quantity == 10
    # and new demand goes to the next cut-off
    assert _submit(bolt, future, gpus=5).status == PoolDemand.Status.OPEN


def test_a_cut_off_passed_with_no_demand_is_cleared_so_demand_can_come(pool, members, future):
    passed = timezone.now() - timedelta(seconds=30)
    Pool.objects.filter(pk=pool.pk).update(cutoff_at=passed)

    assert pools_run_due() == {"cut_off": 0, "closed": 0, "allocated": 0}

    assert _reload(pool).cutoff_at is None
    audit = _audit("pool.cut_off_empty", pool)
    assert (audit.actor, audit.after["cutoff_at"]) == (None, None)
    assert _submit(members[0], future).status == PoolDemand.Status.OPEN


def test_the_scheduler_does_not_cut_off_a_pool_whose_cut_off_was_moved_meanwhile(
    pool, members, future, sponsor, sponsor_user, monkeypatch
):
    # given two pools due for their cut-off, each with open demand
    second = pool_create(sponsor=sponsor, name="Second", actor=sponsor_user)
    pool_fund(pool=second, amount=Decimal("100000"), actor=sponsor_user)
    dune = pool_member_add(pool=second, organization=startup("dune", "0"), actor=sponsor_user)
    _submit(members[0], future, gpus=10)
    _submit(dune, future, gpus=5)
    passed = timezone.now() - timedelta(seconds=30)
    Pool.objects.filter(pk__in=[pool.pk, second.pk]).update(cutoff_at=passed)
    later = timezone.now() + timedelta(hours=2)
    place_tier = pools_services._place

    def postpone_the_second_then_place(pool_order, actor):
        # The sponsor postpones the second pool's cut-off while the scheduler, which has
        # listed both pools as due, places the first pool's orders.
        pool_settings_set(
            pool=second,
            rule=second.rule,
            subsidy_percent=second.subsidy_percent,
            credit_line=Decimal(0),
            cutoff_at=later,
            actor=sponsor_user,
        )
        place_tier(pool_order, actor)

    monkeypatch.setattr(pools_services, "_place", postpone_the_second_then_place)

    # when the scheduler runs
    done = pools_run_due()

    # then only the first pool is cut off: the second keeps its open demand and its new time
    assert done["cut_off"] == 1
    assert PoolRound.objects.filter(pool=pool).count() == 1
    assert not PoolRound.objects.filter(pool=second).exists()
    assert _reload(second).cutoff_at == later
    assert PoolDemand.objects.get(pool=second).status == PoolDemand.Status.OPEN


# pool_cut_off ------------------------------------------------------------------------------


def test_cut_off_without_open_demand_is_refused(pool, members, future):
    assert_refused(Code.NO_DEMAND, pool_cut_off, pool=pool, actor=None)

    demand_withdraw(demand=_submit(members[0], future), actor=None)
    assert_refused(Code.NO_DEMAND, pool_cut_off, pool=pool, actor=None)


def test_cut_off_is_refused_while_the_previous_round_works(pool, members, future):
    _submit(members[0], future)
    first = pool_cut_off(pool=pool, actor=None)
    assert first.status == PoolRound.Status.WORKING
    _submit(members[1], future)

    assert_refused(Code.ROUND_WORKING, pool_cut_off, pool=pool, actor=None)

    pool_round_close(round_=first, actor=None)
    second = pool_cut_off(pool=pool, actor=None)
    assert (first.number, second.number) == (1, 2)
    assert_refused(Code.ROUND_NOT_WORKING, pool_round_close, round_=_reload(first), actor=None)


def test_cut_off_places_one_order_per_price_tier_at_its_lowest_limit(
    pool, members, future, futures, sponsor_user, settings
):
    settings.EXCHANGE_POOL_PRICE_TIERS = 2
    ada, bolt, cirrus = members
    pool_settings_set(
        pool=pool,
        rule=pool.rule,
        subsidy_percent=pool.subsidy_percent,
        credit_line=Decimal("20000"),
        cutoff_at=timezone.now() + timedelta(hours=1),
        actor=None,
    )
    high = _submit(ada, future, gpus=10, limit="2.60")
    middle = _submit(bolt, future, gpus=20, limit="2.50")
    low = _submit(cirrus, future, gpus=5, limit="2.40")
    other_month = _submit(ada, futures[1], gpus=3, limit="2.55")

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    assert (round_.number, round_.status, round_.cut_off_by) == (1, "working", sponsor_user)
    assert round_.closes_at == round_.cut_off_at + timedelta(minutes=60)
    orders = list(round_.orders.order_by("instrument_id", "-price"))
    assert [(o.instrument, o.price, o.quantity) for o in orders] == [
        (future, Decimal("2.50"), 30),
        (future, Decimal("2.40"), 5),
        (futures[1], Decimal("2.55"), 3),
    ]
    for pool_order in orders:
        order = pool_order.order
        assert (order.account, order.side, order.price, order.quantity) == (
            pool.account,
            "buy",
            pool_order.price,
            pool_order.quantity,
        )
        assert order.client_order_id == f"pool-{round_.pk}-{pool_order.pk}"
        assert order.status == Order.Status.OPEN
        assert pool_order.refusal_code == ""
    assert {d.pk: (d.status, d.pool_order_id) for d in PoolDemand.objects.all()} == {
        high.pk: ("submitted", orders[0].pk),
        middle.pk: ("submitted", orders[0].pk),
        low.pk: ("submitted", orders[1].pk),
        other_month.pk: ("submitted", orders[2].pk),
    }
    assert _reload(pool).cutoff_at is None
    audit = _audit("pool.cut_off", round_)
    assert audit.actor == sponsor_user
    assert audit.after["demands"] == 4
    assert audit.after["orders"][0] == {
        "instrument": future.symbol,
        "price": "2.500000",
        "quantity": 30,
    }


def test_a_tier_above_the_futures_price_limit_buys_at_the_limit(
    pool, members, future, sponsor_user
):
    """A member's limit is the most it pays, not what the pool must bid: a tier priced above
    the future's price limit (its mark plus EXCHANGE_PRICE_LIMIT) would be refused whole, so
    it is placed at the limit, within every member's."""
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=timezone.now().date() - timedelta(days=1),
        price=Decimal("2.00"),
        source="vwap",
    )
    _submit(members[0], future, gpus=10, limit="2.60")

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    pool_order = round_.orders.get()
    assert (pool_order.price, pool_order.refusal_code) == (Decimal("2.60"), "")
    assert (pool_order.order.price, pool_order.order.status) == (Decimal("2.50"), "open")
    assert pool_order.placement_note == (
        "Bought at 2.500000, the future's price limit, not the tier's 2.600000."
    )


def test_a_tier_the_exchange_refuses_keeps_the_refusal_and_allocates_nothing(
    sponsor, sponsor_user, future, seller
):
    # given a pool whose account has no cash for the order's collateral
    pool = pool_create(sponsor=sponsor, name="Unfunded", actor=sponsor_user)
    member = pool_member_add(pool=pool, organization=startup("ada", "5000"), actor=None)
    demand = _submit(member, future, gpus=10)
    place(seller, future, "sell", 10, "2.45")

    # when
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    # then the tier is recorded with the exchange's refusal, and no order stands for it
    pool_order = round_.orders.get()
    assert (pool_order.order, pool_order.refusal_code) == (None, "RISK_INSUFFICIENT_FUNDS")
    assert pool_order.refusal_message
    assert not Order.objects.filter(account=pool.account).exists()

    round_ = pool_round_close(round_=round_, actor=sponsor_user)

    allocation = PoolAllocation.objects.get(demand=demand)
    assert (allocation.status, allocation.quantity, allocation.requested) == ("none", 0, 10)
    assert allocation.entry is None
    assert (round_.status, _reload(demand).status) == ("allocated", "allocated")
    assert _audit("pool.allocate", round_).after["tiers"] == [
        {
            "instrument": future.symbol,
            "price": "2.500000",
            "filled": 0,
            "settled": 0,
            "unfunded": 0,
        }
    ]
    call_command("ledger_check")


def test_a_pool_under_a_margin_call_places_no_buys_and_says_why_on_the_round(
    pool, members, future, seller, sponsor_user
):
    # given the pool's own account is under a margin call, and a seller the tier would meet
    _margin_call(pool.account)
    demand = _submit(members[0], future, gpus=10)
    place(seller, future, "sell", 10, "2.45")

    # when the round is cut off
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    # then its tier is recorded refused for the call, with the amount due; no order was tried
    pool_order = round_.orders.get()
    assert (pool_order.order, pool_order.refusal_code) == (None, "POOL_MARGIN_CALL_OPEN")
    assert "under a margin call (10,000.00 USD due)" in pool_order.refusal_message
    assert "the round's buys were not placed" in pool_order.refusal_message
    assert not Order.objects.filter(account=pool.account).exists()
    assert _audit("pool.cut_off", round_).after["refused"] == "POOL_MARGIN_CALL_OPEN"
    # and the round allocates nothing, as for any refused tier
    round_ = pool_round_close(round_=round_, actor=sponsor_user)
    allocation = PoolAllocation.objects.get(demand=demand)
    assert (round_.status, allocation.status, allocation.quantity) == ("allocated", "none", 0)
    call_command("ledger_check")


def test_a_tier_above_the_largest_order_is_placed_as_several_and_allocated_as_one(
    pool, members, future, seller, sponsor_user
):
    # given a future of lots of 2 contracts and orders of at most 15 (so 14 in whole lots),
    # and three members' demand at one limit, 24 contracts in all
    Instrument.objects.filter(pk=future.pk).update(lot_size=2, quantity_max=15)
    future.refresh_from_db()
    ada, bolt, cirrus = members
    demands = [_submit(m, future, gpus=g) for m, g in ((ada, 10), (bolt, 10), (cirrus, 4))]

    # when the round is cut off
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    # then the tier is two orders at its price, 14 and 10, its demand with the first
    parts = list(round_.orders.order_by("pk"))
    assert [(p.price, p.quantity, p.refusal_code) for p in parts] == [
        (Decimal("2.50"), 14, ""),
        (Decimal("2.50"), 10, ""),
    ]
    assert [(p.order.quantity, p.order.price) for p in parts] == [
        (14, Decimal("2.50")),
        (10, Decimal("2.50")),
    ]
    assert {_reload(d).pool_order_id for d in demands} == {parts[0].pk}

    # when 20 fill, across both orders, and the round allocates
    place(seller, future, "sell", 14, "2.45")
    place(seller, future, "sell", 6, "2.45")
    assert [_reload(p.order).filled_quantity for p in parts] == [14, 6]
    round_ = pool_round_close(round_=round_, actor=sponsor_user)

    # then the 20 are shared as one tier, pro rata in whole lots (10 lots of 12 asked)
    rows = {a.member_id: a for a in PoolAllocation.objects.filter(round=round_)}
    assert {m: (r.status, r.quantity) for m, r in rows.items()} == {
        ada.pk: ("settled", 8),
        bolt.pk: ("settled", 8),
        cirrus.pk: ("settled", 4),
    }
    assert {r.pool_order_id for r in rows.values()} == {parts[0].pk}
    hours = future.gpu_hours_per_contract
    assert sum(r.cost for r in rows.values()) == 20 * hours * _micros("2.50")
    assert _audit("pool.allocate", round_).after["tiers"] == [
        {
            "instrument": future.symbol,
            "price": "2.500000",
            "filled": 20,
            "settled": 20,
            "unfunded": 0,
        }
    ]
    assert position_account(pool.account, future.symbol).balance == 0
    call_command("ledger_check")


def test_each_order_of_a_split_tier_earns_the_block_fee_tier_on_its_own_fills(
    pool, members, future, seller, sponsor_user
):
    # given orders of at most 80 and a tier of 160 (ada 80, bolt 80): two orders of 80, below
    # the first block tier (100 filled) each, above it together
    Instrument.objects.filter(pk=future.pk).update(quantity_max=80)
    future.refresh_from_db()
    ada, bolt, _ = members
    _submit(ada, future, gpus=80)
    _submit(bolt, future, gpus=80)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    first, second = (part.order for part in round_.orders.order_by("pk"))

    # when both fill whole
    place(seller, future, "sell", 80, "2.45")
    place(seller, future, "sell", 80, "2.45")

    # then each pays the whole maker rate: the tier is each order's own (docs/ARCHITECTURE.md,
    # "Collateral and settlement"), as for any account's several orders
    per_contract = collateral.fee_micros(future.kind, collateral.fee_rates(future.kind).maker, 1, 0)
    for order in (first, second):
        trades = Trade.objects.filter(maker_order=order)
        assert sum(t.quantity for t in trades) == 80
        assert sum(t.buyer_fee for t in trades) == 80 * per_contract


def test_order_sizes_are_whole_lots_up_to_the_largest_order(future):
    future.lot_size, future.quantity_max = 5, 12
    assert pools_services.order_sizes(10, future) == [10]
    assert pools_services.order_sizes(25, future) == [10, 10, 5]
    assert pools_services.order_sizes(30, future) == [10, 10, 10]


# Allocation --------------------------------------------------------------------------------


def test_a_settled_allocation_moves_contracts_margin_fee_and_subsidy(
    pool, members, future, seller, sponsor_user
):
    ada = members[0]
    symbol, hours = future.symbol, future.gpu_hours_per_contract
    demand = _submit(ada, future, gpus=10, limit="2.50")
    place(seller, future, "sell", 10, "2.45")
    ada_cash, pool_cash = _cash(ada.account), _cash(pool.account)

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    round_ = pool_round_close(round_=round_, actor=sponsor_user)

    allocation = PoolAllocation.objects.get(demand=demand)
    cost = 10 * hours * _micros("2.45")
    fee = 10 * _micros("0.50")  # The pool took, at the full taker rate (below the block tier).
    subsidy = cost // 10
    margin = order_margin_per_contract(future, "buy", Decimal("2.45")) * 10
    assert (allocation.status, allocation.quantity, allocation.cost) == ("settled", 10, cost)
    assert (allocation.fee, allocation.subsidy, allocation.margin, allocation.credit) == (
        fee,
        subsidy,
        margin,
        0,
    )
    assert allocation.entry.idempotency_key == f"pool-allocation:{round_.pk}:{demand.pk}"
    assert position_account(ada.account, symbol).balance == 10
    assert cost_account(ada.account, symbol).balance == cost
    assert -margin_account(ada.account, symbol).balance == margin
    assert _cash(ada.account) == ada_cash - margin - fee + subsidy
    # The pool got its fee back and its margin released: it is out of the subsidy only.
    assert position_account(pool.account, symbol).balance == 0
    assert cost_account(pool.account, symbol).balance == 0
    assert margin_account(pool.account, symbol).balance == 0
    assert _cash(pool.account) == pool_cash - subsidy
    assert _audit("pool.allocate", round_).after["tiers"][0]["settled"] == 10
    call_command("ledger_check")


def test_the_priority_rule_serves_lower_priority_numbers_first(
    pool, members, future, seller, sponsor_user
):
    ada, bolt, cirrus = members  # Priorities 10, 20, 30.
    pool_member_priority_set(member=ada, priority=25, actor=None)
    pool_settings_set(
        pool=pool,
        rule=Pool.Rule.PRIORITY,
        subsidy_percent=Decimal("0"),
        credit_line=Decimal("20000"),
        cutoff_at=None,
        actor=None,
    )
    for member, gpus in ((ada, 60), (bolt, 30), (cirrus, 10)):
        _submit(member, future, gpus=gpus)
    place(seller, future, "sell", 70, "2.45")

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    pool_round_close(round_=round_, actor=sponsor_user)

    quantities = {a.member_id: a.quantity for a in PoolAllocation.objects.filter(round=round_)}
    assert quantities == {bolt.pk: 30, ada.pk: 40, cirrus.pk: 0}
    assert position_account(ada.account, future.symbol).balance == 40
    call_command("ledger_check")


def _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user):
    """Each member asks 10 contracts and all 30 fill at 2.45; cirrus has no cash and the credit
    line is cut to zero."""
    pool_settings_set(
        pool=pool,
        rule=Pool.Rule.PRO_RATA,
        subsidy_percent=Decimal("10"),
        credit_line=Decimal("0"),
        cutoff_at=None,
        actor=None,
    )
    for member in members:
        _submit(member, future, gpus=10)
    place(seller, future, "sell", 30, "2.45")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    return pool_round_close(round_=round_, actor=sponsor_user)


def test_an_unfunded_member_leaves_its_lots_with_the_pool(
    pool, members, future, seller, sponsor_user
):
    ada, bolt, cirrus = members

    round_ = _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)

    rows = {a.member_id: a for a in PoolAllocation.objects.filter(round=round_)}
    assert {m: (r.status, r.quantity) for m, r in rows.items()} == {
        ada.pk: ("settled", 10),
        bolt.pk: ("settled", 10),
        cirrus.pk: ("unfunded", 10),
    }
    unfunded = rows[cirrus.pk]
    assert (unfunded.entry, unfunded.fee, unfunded.subsidy, unfunded.credit) == (None, 0, 0, 0)
    assert unfunded.cost == 10 * 672 * _micros("2.45")
    assert not Entry.objects.filter(
        idempotency_key=f"pool-allocation:{round_.pk}:{unfunded.demand_id}"
    )
    assert position_account(pool.account, future.symbol).balance == 10
    assert position_account(cirrus.account, future.symbol).balance == 0
    assert _cash(cirrus.account) == 0
    told = Notice.objects.get(account=cirrus.account, kind=Notice.Kind.POOL_ALLOCATION)
    assert told.subject.endswith(f"10 {future.symbol} kept by the pool")
    assert "could not pay" in told.message
    assert credit_outstanding(cirrus) == 0
    # The pool keeps the margin of the lots it holds.
    margin = order_margin_per_contract(future, "buy", Decimal("2.50"))
    assert -margin_account(pool.account, future.symbol).balance == 10 * margin
    assert _audit("pool.allocate", round_).after["tiers"][0] == {
        "instrument": future.symbol,
        "price": "2.500000",
        "filled": 30,
        "settled": 20,
        "unfunded": 10,
    }
    call_command("ledger_check")


def test_a_member_with_cash_is_not_refused_for_a_credit_line_lowered_below_its_debt(
    pool, members, future, seller, sponsor_user
):
    # given cirrus borrowed from the pool, then the sponsor cut the credit line to zero
    cirrus = members[2]
    _submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    owed = credit_outstanding(cirrus)
    assert owed > 0
    pool_settings_set(
        pool=pool,
        rule=pool.rule,
        subsidy_percent=pool.subsidy_percent,
        credit_line=Decimal("0"),
        cutoff_at=None,
        actor=None,
    )
    # when cirrus, now with cash of its own, is allocated again
    deposit_test_funds(account=cirrus.account, amount=Decimal("50000"), actor=None)
    demand = _submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)

    # then it pays in cash, borrowing nothing more
    allocation = PoolAllocation.objects.get(demand=demand)
    assert (allocation.status, allocation.credit) == ("settled", 0)
    assert credit_outstanding(cirrus) == owed
    call_command("ledger_check")


# Graduation, take-back, reallocation, offers -----------------------------------------------


def test_graduation_withdraws_open_and_submitted_demand(pool, members, futures, sponsor_user):
    ada = members[0]
    in_round = _submit(ada, futures[0])
    pool_cut_off(pool=pool, actor=None)
    still_open = _submit(ada, futures[1])

    pool_member_graduate(member=ada, actor=sponsor_user)

    ada = _reload(ada)
    assert ada.status == PoolMember.Status.GRADUATED and ada.left_at is not None
    assert _reload(still_open).status == PoolDemand.Status.WITHDRAWN
    in_round = _reload(in_round)
    assert (in_round.status, in_round.pool_order_id) == (
        PoolDemand.Status.WITHDRAWN,
        PoolOrder.objects.get().pk,
    )
    assert _audit("pool.member_graduate", ada).after == {
        "status": "graduated",
        "demand_withdrawn": 2,
    }
    assert_refused(Code.MEMBER_GRADUATED, pool_member_graduate, member=ada, actor=None)
    assert_refused(Code.DEMAND_LOCKED, demand_withdraw, demand=still_open, actor=None)


def test_a_member_that_graduates_while_its_round_works_receives_nothing_from_it(
    pool, members, future, seller, sponsor_user
):
    # given ada and bolt each ask 10 in one tier, the tier fills whole, and ada graduates
    # before the round allocates
    ada, bolt, _ = members
    ada_demand = _submit(ada, future, gpus=10)
    bolt_demand = _submit(bolt, future, gpus=10)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    place(seller, future, "sell", 20, "2.45")  # At the resting tier's 2.50.
    pool_member_graduate(member=ada, actor=sponsor_user)
    ada_cash = _cash(ada.account)

    # when the round allocates
    round_ = pool_round_close(round_=round_, actor=sponsor_user)

    # then bolt receives its 10, ada nothing: its 10 stay with the pool, with their cost
    assert not PoolAllocation.objects.filter(demand=ada_demand).exists()
    assert _reload(ada_demand).status == PoolDemand.Status.WITHDRAWN
    bolt_allocation = PoolAllocation.objects.get(demand=bolt_demand)
    hours = future.gpu_hours_per_contract
    assert (bolt_allocation.status, bolt_allocation.quantity, bolt_allocation.cost) == (
        "settled",
        10,
        10 * hours * _micros("2.50"),
    )
    assert position_account(ada.account, future.symbol).balance == 0
    assert _cash(ada.account) == ada_cash
    assert position_account(pool.account, future.symbol).balance == 10
    assert cost_account(pool.account, future.symbol).balance == 10 * hours * _micros("2.50")
    assert _audit("pool.allocate", round_).after["tiers"][0] == {
        "instrument": future.symbol,
        "price": "2.500000",
        "filled": 20,
        "settled": 10,
        "unfunded": 0,
    }
    # and the sponsor may offer them: they are the pool's
    pool_offer(pool=pool, instrument=future, quantity=10, price=Decimal("2.60"), actor=sponsor_user)
    call_command("ledger_check")


def test_a_graduates_unfilled_share_is_not_bought_by_its_working_round(
    pool, members, future, seller, sponsor_user
):
    # given ada and bolt each ask 10 in one tier of 20, of which 6 have filled
    ada, bolt, _ = members
    _submit(ada, future, gpus=10)
    bolt_demand = _submit(bolt, future, gpus=10)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    tier = PoolOrder.objects.get(round=round_).order
    place(seller, future, "sell", 6, "2.45")

    # when ada graduates
    pool_member_graduate(member=ada, actor=sponsor_user)

    # then the tier order shrinks in place to what bolt's 10 still need: 4 open
    tier.refresh_from_db()
    assert (tier.status, tier.filled_quantity, tier.open_quantity) == ("partially_filled", 6, 4)
    assert OrderCommand.objects.filter(order=tier, kind=OrderCommand.Kind.REPLACE).count() == 1
    assert _audit("pool.tier_shrink", round_).after == {"orders": [{"order": tier.pk, "to": 4}]}
    # and the market's sellers fill only that, so the round buys bolt's 10 and no more
    place(seller, future, "sell", 20, "2.45")
    tier.refresh_from_db()
    assert (tier.status, tier.filled_quantity) == ("filled", 10)
    pool_round_close(round_=round_, actor=sponsor_user)
    allocation = PoolAllocation.objects.get(demand=bolt_demand)
    assert (allocation.status, allocation.quantity) == ("settled", 10)
    assert position_account(pool.account, future.symbol).balance == 0
    call_command("ledger_check")


def test_a_graduation_cancels_a_tier_whose_remaining_demand_has_filled(
    pool, members, future, seller, sponsor_user
):
    # given a tier of 20 (ada 10, bolt 10) that has filled 12
    ada, bolt, _ = members
    _submit(ada, future, gpus=10)
    _submit(bolt, future, gpus=10)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    tier = PoolOrder.objects.get(round=round_).order
    place(seller, future, "sell", 12, "2.45")

    # when ada graduates
    pool_member_graduate(member=ada, actor=sponsor_user)

    # then nothing more is bought: bolt's 10 are filled already, the 2 beyond stay the pool's
    tier.refresh_from_db()
    assert (tier.status, tier.filled_quantity, tier.done_reason) == (
        "cancelled",
        12,
        "replaced_to_zero",
    )
    pool_round_close(round_=round_, actor=sponsor_user)
    assert position_account(pool.account, future.symbol).balance == 2
    assert position_account(bolt.account, future.symbol).balance == 10
    call_command("ledger_check")


def test_a_split_tier_shrinks_its_last_orders_first(pool, members, future, seller, sponsor_user):
    # given the largest order is 8: ada's 10 and bolt's 10 are one tier of 8, 8 and 4
    Instrument.objects.filter(pk=future.pk).update(quantity_max=8)
    future.refresh_from_db()
    ada, bolt, _ = members
    _submit(ada, future, gpus=8)
    _submit(bolt, future, gpus=8)
    _submit(members[2], future, gpus=4)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    first, second, third = (
        part.order for part in PoolOrder.objects.filter(round=round_).order_by("pk")
    )
    assert [first.quantity, second.quantity, third.quantity] == [8, 8, 4]
    place(seller, future, "sell", 3, "2.45")  # Into the first order.

    # when ada (8) graduates: the tier's remaining demand is 12, of which 3 filled
    pool_member_graduate(member=ada, actor=sponsor_user)

    # then 9 still work: the first order keeps its 5, the second shrinks to 4, the third goes
    for order in (first, second, third):
        order.refresh_from_db()
    assert [o.open_quantity for o in (first, second, third)] == [5, 4, 0]
    assert third.status == "cancelled"
    assert not OrderCommand.objects.filter(order=first, kind=OrderCommand.Kind.REPLACE).exists()


def test_a_graduation_while_the_cut_off_places_its_orders_shrinks_them_once_placed(
    pool, members, future, sponsor_user, monkeypatch
):
    # given ada and bolt each ask 10, and ada graduates after the round committed but before
    # its tier order is placed
    ada, bolt, _ = members
    _submit(ada, future, gpus=10)
    _submit(bolt, future, gpus=10)
    place_tier = pools_services._place

    def graduate_then_place(pool_order, actor):
        pool_member_graduate(member=ada, actor=sponsor_user)
        place_tier(pool_order, actor)

    monkeypatch.setattr(pools_services, "_place", graduate_then_place)

    # when the cut-off places it
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    # then it asks only for bolt's 10
    tier = PoolOrder.objects.get(round=round_).order
    assert (tier.status, tier.filled_quantity, tier.open_quantity) == ("open", 0, 10)
    assert OrderCommand.objects.filter(order=tier, kind=OrderCommand.Kind.REPLACE).count() == 1


def _allocated_to_ada(pool, members, future, seller, quantity=10):
    ada = members[0]
    _submit(ada, future, gpus=quantity)
    place(seller, future, "sell", quantity, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    assert position_account(ada.account, future.symbol).balance == quantity
    return ada


def _mark(future, price: str) -> None:
    """The future settled at ``price`` today, after its trades so far (moved to yesterday: a
    trade after today's close would be the newer mark, ``selectors.marks``)."""
    Trade.objects.filter(instrument=future).update(executed_at=F("executed_at") - timedelta(days=1))
    SettlementPrice.objects.create(
        instrument=future,
        trading_date=timezone.now().date(),
        price=Decimal(price),
        source=SettlementPrice.Source.OVERRIDE,
    )


def test_take_back_moves_a_graduates_contracts_to_the_pool_at_the_mark(
    pool, members, future, seller, sponsor_user
):
    # given ada holds 10 contracts bought at 2.45, graduates, and the future settled at 2.60
    ada = _allocated_to_ada(pool, members, future, seller)
    pool_member_graduate(member=ada, actor=None)
    _mark(future, "2.60")
    symbol, hours = future.symbol, future.gpu_hours_per_contract
    ada_margin = -margin_account(ada.account, symbol).balance
    ada_cost = cost_account(ada.account, symbol).balance
    ada_cash, pool_cash = _cash(ada.account), _cash(pool.account)

    # when the sponsor takes 4 back
    transfer = pool_take_back(member=ada, instrument=future, quantity=4, actor=sponsor_user)

    # then 4 contracts and their value at the mark move; ada's margin on them is freed and
    # the pool sets aside its own at the mark
    freed = ada_margin * 4 // 10
    pool_margin = order_margin_per_contract(future, "buy", Decimal("2.60")) * 4
    value = 4 * hours * _micros("2.60")
    assert (transfer.kind, transfer.quantity, transfer.price) == ("take_back", 4, Decimal("2.60"))
    assert transfer.actor == sponsor_user
    assert position_account(ada.account, symbol).balance == 6
    assert position_account(pool.account, symbol).balance == 4
    assert cost_account(ada.account, symbol).balance == ada_cost - value
    assert cost_account(pool.account, symbol).balance == value
    assert -margin_account(ada.account, symbol).balance == ada_margin - freed
    assert -margin_account(pool.account, symbol).balance == pool_margin
    assert _cash(ada.account) == ada_cash + freed
    assert _cash(pool.account) == pool_cash - pool_margin
    assert _audit("pool.take_back", transfer).after == {
        "member": "ada",
        "instrument": symbol,
        "quantity": 4,
        "price": "2.600000",
    }
    call_command("ledger_check")

    # and the rest comes back with all of ada's remaining margin
    pool_take_back(member=ada, instrument=future, quantity=6, actor=sponsor_user)
    assert position_account(ada.account, symbol).balance == 0
    assert margin_account(ada.account, symbol).balance == 0
    call_command("ledger_check")


def test_take_back_refusals(pool, members, futures, seller):
    future = futures[0]
    ada = _allocated_to_ada(pool, members, future, seller)

    assert_refused(
        Code.NOT_ENOUGH_HELD,
        pool_take_back,
        member=ada,
        instrument=future,
        quantity=11,
        actor=None,
    )
    assert_refused(
        Code.NOT_ENOUGH_HELD,
        pool_take_back,
        member=members[1],
        instrument=future,
        quantity=1,
        actor=None,
    )
    assert_refused(
        Code.QUANTITY_INVALID,
        pool_take_back,
        member=ada,
        instrument=future,
        quantity=0,
        actor=None,
    )
    # The other month never traded and has no settlement price: nothing to transfer at.
    assert_refused(
        Code.NO_MARK, pool_take_back, member=ada, instrument=futures[1], quantity=1, actor=None
    )
    # Contracts ada offers for sale are not given back: sold as well, ada would be short 4
    # with no margin held (its sell closes a position and holds none).
    offer = place(ada.account, future, "sell", 4, "9.00")
    assert_refused(
        Code.NOT_ENOUGH_HELD, pool_take_back, member=ada, instrument=future, quantity=7, actor=None
    )
    order_cancel(order=offer)
    Instrument.objects.filter(pk=future.pk).update(status=Instrument.Status.HALTED)
    assert_refused(
        Code.INSTRUMENT_INVALID,
        pool_take_back,
        member=ada,
        instrument=Instrument.objects.get(pk=future.pk),
        quantity=1,
        actor=None,
    )
    assert position_account(ada.account, future.symbol).balance == 10


def test_take_back_takes_only_what_the_pool_gave_the_member(pool, members, future, seller):
    # given ada holds 10 contracts from the pool and bought 5 more in the market itself, and
    # bolt holds only 5 it bought itself
    ada, bolt = _allocated_to_ada(pool, members, future, seller), members[1]
    for member in (ada, bolt):
        place(seller, future, "sell", 5, "2.45")
        place(member.account, future, "buy", 5, "2.45")
    assert position_account(ada.account, future.symbol).balance == 15
    _mark(future, "2.60")

    # then the sponsor takes none of bolt's and at most the pool's 10 of ada's
    assert_refused(
        Code.NOT_ENOUGH_HELD, pool_take_back, member=bolt, instrument=future, quantity=1, actor=None
    )
    assert_refused(
        Code.NOT_ENOUGH_HELD, pool_take_back, member=ada, instrument=future, quantity=11, actor=None
    )
    pool_take_back(member=ada, instrument=future, quantity=6, actor=None)
    assert_refused(
        Code.NOT_ENOUGH_HELD, pool_take_back, member=ada, instrument=future, quantity=5, actor=None
    )
    pool_take_back(member=ada, instrument=future, quantity=4, actor=None)
    assert position_account(ada.account, future.symbol).balance == 5
    assert position_account(bolt.account, future.symbol).balance == 5
    assert position_account(pool.account, future.symbol).balance == 10
    call_command("ledger_check")


def test_reallocate_moves_the_pools_contracts_to_a_member_at_the_mark(
    pool, members, future, seller, sponsor_user
):
    # given the pool kept cirrus's 10 unfunded lots, and cirrus has cash now; the last trade
    # (2.45) is the mark
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    cirrus = members[2]
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    symbol, hours = future.symbol, future.gpu_hours_per_contract
    cirrus_cash, pool_cash = _cash(cirrus.account), _cash(pool.account)
    pool_margin = -margin_account(pool.account, symbol).balance

    transfer = pool_reallocate(member=cirrus, instrument=future, quantity=10, actor=sponsor_user)

    margin = order_margin_per_contract(future, "buy", Decimal("2.45")) * 10
    assert (transfer.kind, transfer.price, transfer.quantity) == ("reallocate", Decimal("2.45"), 10)
    assert position_account(cirrus.account, symbol).balance == 10
    assert position_account(pool.account, symbol).balance == 0
    assert cost_account(cirrus.account, symbol).balance == 10 * hours * _micros("2.45")
    assert cost_account(pool.account, symbol).balance == 0
    assert _cash(cirrus.account) == cirrus_cash - margin
    # The pool's margin for its last contracts all returns to its cash.
    assert margin_account(pool.account, symbol).balance == 0
    assert _cash(pool.account) == pool_cash + pool_margin
    assert _audit("pool.reallocate", transfer).after["member"] == "cirrus"
    call_command("ledger_check")


def test_an_allocation_closing_a_members_short_releases_its_margin(
    pool, members, future, seller, sponsor_user
):
    # given ada is short 4 contracts of the month, with their margin held
    ada = members[0]
    symbol = future.symbol
    place(ada.account, future, "sell", 4, "2.50")
    place(seller, future, "buy", 4, "2.50")
    held = -margin_account(ada.account, symbol).balance
    assert position_account(ada.account, symbol).balance == -4 and held > 0
    cash = _cash(ada.account)
    # when the pool buys her 4 contracts of it
    _submit(ada, future, gpus=4)
    place(seller, future, "sell", 4, "2.45")
    round_ = pool_round_close(round_=pool_cut_off(pool=pool, actor=sponsor_user), actor=None)

    # then they close her short: flat, with no margin held, which returns to her cash
    allocation = PoolAllocation.objects.get(round=round_, member=ada)
    assert (allocation.status, allocation.quantity) == ("settled", 4)
    assert position_account(ada.account, symbol).balance == 0
    assert margin_account(ada.account, symbol).balance == 0
    assert allocation.margin == -held
    assert _cash(ada.account) == cash + held - allocation.fee + allocation.subsidy
    call_command("ledger_check")


def test_a_reallocation_closing_part_of_a_members_short_margins_only_the_rest(
    pool, members, future, seller, sponsor_user
):
    # given the pool kept cirrus's 10 unfunded lots; cirrus has cash now, and is short 4
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    cirrus = members[2]
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    symbol = future.symbol
    place(cirrus.account, future, "sell", 4, "2.45")
    place(seller, future, "buy", 4, "2.45")  # The mark stays 2.45.
    held = -margin_account(cirrus.account, symbol).balance
    assert position_account(cirrus.account, symbol).balance == -4 and held > 0
    cash = _cash(cirrus.account)

    pool_reallocate(member=cirrus, instrument=future, quantity=10, actor=sponsor_user)

    # then 4 contracts close its short (their margin returns) and 6 open a long
    margin = order_margin_per_contract(future, "buy", Decimal("2.45")) * 6
    assert position_account(cirrus.account, symbol).balance == 6
    assert -margin_account(cirrus.account, symbol).balance == margin
    assert _cash(cirrus.account) == cash + held - margin
    call_command("ledger_check")


def test_reallocate_refusals(pool, members, future, seller, sponsor_user):
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    ada, bolt, cirrus = members

    assert_refused(
        Code.NOT_ENOUGH_HELD,
        pool_reallocate,
        member=bolt,
        instrument=future,
        quantity=11,
        actor=None,
    )
    # cirrus has no cash for the margin, and a reallocation takes no credit.
    refusal = assert_refused(
        Code.INSUFFICIENT_FUNDS,
        pool_reallocate,
        member=cirrus,
        instrument=future,
        quantity=1,
        actor=None,
    )
    # In dollars and cents, as a customer reads them (not the ledger's six decimals).
    assert re.fullmatch(
        rf"Cirrus lacks the cash for the initial margin of 1 {re.escape(future.symbol)} "
        r"\([1-9][0-9,]*\.[0-9]{2} USD\)\.",
        refusal.message,
    ), refusal.message
    pool_member_graduate(member=ada, actor=None)
    assert_refused(
        Code.MEMBER_GRADUATED,
        pool_reallocate,
        member=_reload(ada),
        instrument=future,
        quantity=1,
        actor=None,
    )
    assert position_account(pool.account, future.symbol).balance == 10


def _holdings_and_cash(*accounts, symbol) -> list[tuple[int, int, int]]:
    return [
        (
            position_account(account, symbol).balance,
            cash_account(account).balance,
            margin_account(account, symbol).balance,
        )
        for account in accounts
    ]


def test_capacity_goes_to_no_member_without_demand_for_it(
    pool, members, futures, seller, sponsor_user
):
    # given the pool holds cirrus's 10 unfunded contracts; bolt's demand was filled in full,
    # dyna joined later and only has open demand (for the next cut-off) and demand in the
    # other month
    future = futures[0]
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    bolt = members[1]
    dyna = pool_member_add(pool=pool, organization=startup("dyna", "200000"), actor=None)
    _submit(dyna, future, gpus=10)
    _submit(dyna, futures[1], gpus=10)
    before = _holdings_and_cash(bolt.account, dyna.account, pool.account, symbol=future.symbol)

    # then neither receives even one contract, and nothing moves
    for member in (bolt, dyna):
        error = assert_refused(
            Code.REALLOCATION_BEYOND_DEMAND,
            pool_reallocate,
            member=member,
            instrument=future,
            quantity=1,
            actor=sponsor_user,
        )
        assert error.field == "member"
        assert f"no demand for {future.symbol}" in error.message
    assert (
        _holdings_and_cash(bolt.account, dyna.account, pool.account, symbol=future.symbol) == before
    )


def test_a_member_receives_at_most_its_uncovered_demand(
    pool, members, future, seller, sponsor_user
):
    from exchange.selectors.pools import demand_uncovered

    # given cirrus asked 10 and could not pay (its lots stayed with the pool) and has cash
    # now; the pool also holds the 10 taken back from ada: 20 in all
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    ada, _, cirrus = members
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    pool_take_back(member=ada, instrument=future, quantity=10, actor=sponsor_user)
    assert position_account(pool.account, future.symbol).balance == 20
    assert [demand_uncovered(m, future) for m in members] == [0, 0, 10]

    # when the sponsor gives cirrus 4, then tries 7 (6 left), then gives the 6
    pool_reallocate(member=cirrus, instrument=future, quantity=4, actor=sponsor_user)
    before = _holdings_and_cash(cirrus.account, pool.account, symbol=future.symbol)
    error = assert_refused(
        Code.REALLOCATION_BEYOND_DEMAND,
        pool_reallocate,
        member=cirrus,
        instrument=future,
        quantity=7,
        actor=sponsor_user,
    )
    assert _holdings_and_cash(cirrus.account, pool.account, symbol=future.symbol) == before
    pool_reallocate(member=cirrus, instrument=future, quantity=6, actor=sponsor_user)

    # then cirrus holds what it asked for and no more; the take-back made no room at ada
    assert (error.field, "6 more contracts" in error.message) == ("quantity", True)
    assert position_account(cirrus.account, future.symbol).balance == 10
    assert [demand_uncovered(m, future) for m in members] == [0, 0, 0]
    for member in (ada, cirrus):
        assert_refused(
            Code.REALLOCATION_BEYOND_DEMAND,
            pool_reallocate,
            member=member,
            instrument=future,
            quantity=1,
            actor=sponsor_user,
        )
    assert position_account(pool.account, future.symbol).balance == 10
    call_command("ledger_check")


def test_a_member_never_receives_contracts_above_its_limit(
    pool, members, future, seller, buyer, sponsor_user
):
    from exchange.selectors.pools import demand_uncovered_by_limit

    # given cirrus asked 10 at 2.50 and could not pay (its lots stayed with the pool), and has
    # cash now; it also asked 5 more at 2.70 in a later round that filled nothing
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    cirrus = members[2]
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    _submit(cirrus, future, gpus=5, limit="2.70")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    pool_round_close(round_=round_, actor=sponsor_user)
    assert demand_uncovered_by_limit(cirrus, future) == [
        (Decimal("2.70"), 5),
        (Decimal("2.50"), 10),
    ]
    # and the market has traded up to 2.60 since: the mark
    place(seller, future, "sell", 1, "2.60")
    place(buyer, future, "buy", 1, "2.60")
    before = _holdings_and_cash(cirrus.account, pool.account, symbol=future.symbol)

    # when the sponsor gives it 6 at the mark: only 5 of its demand is limited at 2.60 or more
    error = assert_refused(
        Code.REALLOCATION_ABOVE_LIMIT,
        pool_reallocate,
        member=cirrus,
        instrument=future,
        quantity=6,
        actor=sponsor_user,
    )

    # then nothing moves, and the message says what it could take
    assert error.field == "quantity"
    assert "at most 5 can go to it" in error.message and "2.6" in error.message
    assert _holdings_and_cash(cirrus.account, pool.account, symbol=future.symbol) == before
    # and 5 go (against the 2.70 demand), after which no more at that mark
    transfer = pool_reallocate(member=cirrus, instrument=future, quantity=5, actor=sponsor_user)
    assert transfer.price == Decimal("2.60")
    assert demand_uncovered_by_limit(cirrus, future) == [(Decimal("2.50"), 10)]
    error = assert_refused(
        Code.REALLOCATION_ABOVE_LIMIT,
        pool_reallocate,
        member=cirrus,
        instrument=future,
        quantity=1,
        actor=sponsor_user,
    )
    assert error.field == "member"
    call_command("ledger_check")


def test_past_reallocations_cover_demand_by_the_price_they_moved_at(
    pool, members, future, seller, buyer, sponsor_user
):
    from exchange.selectors.pools import demand_uncovered, demand_uncovered_by_limit

    # given cirrus's uncovered demand is 5 at 2.70 and 10 at 2.50, and it has cash now
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)
    cirrus = members[2]
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    _submit(cirrus, future, gpus=5, limit="2.70")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    pool_round_close(round_=round_, actor=sponsor_user)
    # and the sponsor gave it 5 at a mark of 2.40, within both limits
    place(seller, future, "sell", 1, "2.40")
    place(buyer, future, "buy", 1, "2.40")
    first = pool_reallocate(member=cirrus, instrument=future, quantity=5, actor=sponsor_user)
    assert first.price == Decimal("2.40")

    # then those 5 cover the 2.50 demand, the lowest limit they fit, and leave the 2.70 one
    assert demand_uncovered_by_limit(cirrus, future) == [
        (Decimal("2.70"), 5),
        (Decimal("2.50"), 5),
    ]
    assert demand_uncovered(cirrus, future) == 10

    # when the mark moves to 2.60 and the sponsor gives it 5 more
    place(seller, future, "sell", 1, "2.60")
    place(buyer, future, "buy", 1, "2.60")
    second = pool_reallocate(member=cirrus, instrument=future, quantity=5, actor=sponsor_user)

    # then they go against the 2.70 demand, and what is left is limited at 2.50
    assert second.price == Decimal("2.60")
    assert position_account(cirrus.account, future.symbol).balance == 10
    assert demand_uncovered_by_limit(cirrus, future) == [(Decimal("2.50"), 5)]
    assert demand_uncovered(cirrus, future) == 5
    call_command("ledger_check")


def test_reallocations_count_against_the_lowest_limit_that_covers_their_price():
    from exchange.selectors.pools import covered_by_reallocations

    limits = [(Decimal("2.50"), 10), (Decimal("2.70"), 5), (Decimal("2.60"), 4)]
    # The highest price goes first: 2.65 can only use 2.70; 2.55 then takes 2.60 before 2.70.
    assert covered_by_reallocations(limits, [(Decimal("2.55"), 5), (Decimal("2.65"), 3)]) == [
        (Decimal("2.70"), 1),
        (Decimal("2.50"), 10),
    ]
    # A reallocation above every limit (made before the rule) covers the highest limits left.
    assert covered_by_reallocations(limits, [(Decimal("2.40"), 10), (Decimal("2.90"), 6)]) == [
        (Decimal("2.60"), 3)
    ]
    # Demand a settled allocation more than covered counts as nothing, never as negative.
    assert covered_by_reallocations([(Decimal("2.50"), -2)], [(Decimal("2.50"), 1)]) == []


def test_a_member_under_a_margin_call_takes_no_contracts_until_the_call_is_met(
    pool, members, future, seller, sponsor_user
):
    # given ada (funded) under a margin call, each member asking 10, all 30 filling
    ada, bolt, _ = members
    call = _margin_call(ada.account)
    for member in members:
        _submit(member, future, gpus=10)
    place(seller, future, "sell", 30, "2.45")
    cash_before = _cash(ada.account)

    # when the round allocates
    round_ = pool_round_close(
        round_=pool_cut_off(pool=pool, actor=sponsor_user), actor=sponsor_user
    )

    # then ada's lots stay with the pool (reduce-only: no new position, no cash out for margin)
    rows = {a.member_id: a for a in PoolAllocation.objects.filter(round=round_)}
    assert (rows[ada.pk].status, rows[bolt.pk].status) == ("unfunded", "settled")
    assert position_account(ada.account, future.symbol).balance == 0
    assert _cash(ada.account) == cash_before
    # and the sponsor cannot hand them to it while the call is open
    error = assert_refused(
        Code.MARGIN_CALL_OPEN,
        pool_reallocate,
        member=ada,
        instrument=future,
        quantity=10,
        actor=sponsor_user,
    )
    assert "it can receive the pool's contracts once the call is met" in error.message
    # but can once it is met
    call.status = MarginCall.Status.CURED
    call.save()
    pool_reallocate(member=ada, instrument=future, quantity=10, actor=sponsor_user)
    assert position_account(ada.account, future.symbol).balance == 10
    call_command("ledger_check")


def test_pool_offer_sells_from_the_pool_account(pool, members, future, seller, sponsor_user):
    _round_with_an_unfunded_member(pool, members, future, seller, sponsor_user)

    order = pool_offer(
        pool=pool, instrument=future, quantity=6, price=Decimal("2.55"), actor=sponsor_user
    )

    order = _reload(order)
    assert (order.account, order.side, order.quantity, order.price, order.status) == (
        pool.account,
        "sell",
        6,
        Decimal("2.55"),
        Order.Status.OPEN,
    )
    assert _audit("pool.offer", pool).after == {
        "order": order.pk,
        "instrument": future.symbol,
        "quantity": 6,
    }
    # What is already offered is not offered twice: the pool would sell contracts it lacks.
    assert_refused(
        Code.NOT_ENOUGH_HELD,
        pool_offer,
        pool=pool,
        instrument=future,
        quantity=5,
        price=Decimal("2.55"),
        actor=None,
    )
    pool_offer(pool=pool, instrument=future, quantity=4, price=Decimal("2.60"), actor=None)


def test_pool_offer_refuses_more_than_the_pool_holds(pool, future):
    assert_refused(
        Code.NOT_ENOUGH_HELD,
        pool_offer,
        pool=pool,
        instrument=future,
        quantity=1,
        price=Decimal("2.55"),
        actor=None,
    )


# Cash: funding and credit ------------------------------------------------------------------


def test_pool_fund_and_withdraw_move_cash_between_sponsor_and_pool(pool, sponsor, sponsor_user):
    sponsor_cash = _cash(account_main(sponsor))
    assert _cash(pool.account) == _micros(str(POOL_FUNDS))

    entry = pool_fund(pool=pool, amount=Decimal("1000.5"), actor=sponsor_user)
    pool_fund(pool=pool, amount=Decimal("250"), withdraw=True, actor=sponsor_user)

    assert _cash(pool.account) == _micros(str(POOL_FUNDS)) + _micros("750.5")
    assert _cash(account_main(sponsor)) == sponsor_cash - _micros("750.5")
    assert _audit_actions(pool) >= {"pool.fund", "pool.withdraw"}
    assert entry.metadata == {"pool": pool.pk}
    call_command("ledger_check")


def _audit_actions(target) -> set[str]:
    return set(
        AuditEntry.objects.filter(
            target_type=type(target).__name__, target_id=str(target.pk)
        ).values_list("action", flat=True)
    )


@pytest.mark.parametrize("withdraw", [False, True])
def test_pool_fund_refuses_more_than_is_available(pool, withdraw):
    amount = Decimal("600000") if withdraw else Decimal("1000000")
    assert_refused(
        Code.INSUFFICIENT_FUNDS, pool_fund, pool=pool, amount=amount, withdraw=withdraw, actor=None
    )


@pytest.mark.parametrize(
    "amount",
    [Decimal("0"), Decimal("-5"), Decimal("0.0000001"), Decimal("NaN"), Decimal("Infinity"), True],
)
def test_pool_fund_refuses_bad_amounts(pool, amount):
    assert_refused(Code.AMOUNT_INVALID, pool_fund, pool=pool, amount=amount, actor=None)


def _margin_call(account) -> MarginCall:
    return MarginCall.objects.create(
        account=account,
        trading_date=timezone.localdate(),
        required=30_000_000_000,
        maintenance=24_000_000_000,
        held=20_000_000_000,
        deficit=0,
    )


@pytest.mark.parametrize("withdraw", [False, True])
def test_no_cash_leaves_an_account_under_a_margin_call_through_the_pool(
    pool, sponsor, sponsor_user, withdraw
):
    # given the account the cash would leave is under a margin call: funding takes it from the
    # sponsor's main account, withdrawing from the pool's
    sponsor_account = account_main(sponsor)
    _margin_call(pool.account if withdraw else sponsor_account)
    before = (_cash(sponsor_account), _cash(pool.account))

    # when the sponsor moves cash out of it
    error = assert_refused(
        Code.MARGIN_CALL_OPEN,
        pool_fund,
        pool=pool,
        amount=Decimal("1000"),
        withdraw=withdraw,
        actor=sponsor_user,
    )

    # then it is refused, naming the call, and no cash moved
    assert "under a margin call (10,000.00 USD due)" in error.message
    assert (_cash(sponsor_account), _cash(pool.account)) == before
    # but cash may still come into it, towards the call
    pool_fund(pool=pool, amount=Decimal("1000"), withdraw=not withdraw, actor=sponsor_user)
    call_command("ledger_check")


def test_credit_repay_pays_back_what_the_pool_lent(pool, members, future, seller, sponsor_user):
    # given cirrus (no cash) borrowed from the pool for an allocation
    cirrus = members[2]
    demand = _submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    owed = PoolAllocation.objects.get(demand=demand).credit
    assert owed > 0 and credit_outstanding(cirrus) == owed
    assert_refused(
        Code.INSUFFICIENT_FUNDS, pool_credit_repay, member=cirrus, amount=Decimal("1"), actor=None
    )
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    pool_cash, cirrus_cash = _cash(pool.account), _cash(cirrus.account)

    entry = pool_credit_repay(member=cirrus, amount=Decimal("100"), actor=sponsor_user)

    assert credit_outstanding(cirrus) == owed - _micros("100")
    assert _cash(pool.account) == pool_cash + _micros("100")
    assert _cash(cirrus.account) == cirrus_cash - _micros("100")
    assert entry.metadata == {"pool": pool.pk, "member": cirrus.pk}
    assert _audit("pool.credit_repay", cirrus).after["amount"] == "100"
    assert_refused(
        Code.AMOUNT_INVALID, pool_credit_repay, member=cirrus, amount=Decimal(owed), actor=None
    )
    call_command("ledger_check")


def test_credit_repay_is_refused_under_a_margin_call(pool, members, future, seller):
    # given cirrus borrowed from the pool, has cash now, and is under a margin call
    cirrus = members[2]
    _submit(cirrus, future, gpus=5)
    place(seller, future, "sell", 5, "2.45")
    pool_round_close(round_=pool_cut_off(pool=pool, actor=None), actor=None)
    deposit_test_funds(account=cirrus.account, amount=Decimal("100000"), actor=None)
    _margin_call(cirrus.account)
    owed, before = credit_outstanding(cirrus), (_cash(cirrus.account), _cash(pool.account))

    # when it repays: refused, its cash goes to the call first, and nothing moved
    assert_refused(
        Code.MARGIN_CALL_OPEN, pool_credit_repay, member=cirrus, amount=Decimal("100"), actor=None
    )
    assert credit_outstanding(cirrus) == owed
    assert (_cash(cirrus.account), _cash(pool.account)) == before


# The scheduler -----------------------------------------------------------------------------


def test_pools_run_due_cuts_off_then_closes_and_allocates(
    pool, members, future, seller, sponsor_user
):
    now = timezone.now()
    pool_settings_set(
        pool=pool,
        rule=pool.rule,
        subsidy_percent=pool.subsidy_percent,
        credit_line=Decimal("20000"),
        cutoff_at=now + timedelta(minutes=10),
        actor=None,
    )
    demand = _submit(members[0], future, gpus=10)
    place(seller, future, "sell", 4, "2.45")

    assert pools_run_due(now=now) == {"cut_off": 0, "closed": 0, "allocated": 0}
    assert not PoolRound.objects.exists()

    assert pools_run_due(now=now + timedelta(minutes=11)) == {
        "cut_off": 1,
        "closed": 0,
        "allocated": 0,
    }
    round_ = PoolRound.objects.get()
    assert round_.status == "working" and round_.cut_off_by is None
    audit = _audit("pool.cut_off", round_)
    assert (audit.actor, audit.actor_label) == (None, "system")

    assert pools_run_due(now=round_.closes_at + timedelta(seconds=1)) == {
        "cut_off": 0,
        "closed": 1,
        "allocated": 1,
    }
    assert _reload(round_).status == "allocated"
    assert PoolAllocation.objects.get(demand=demand).quantity == 4
    assert _reload(round_.orders.get().order).status == Order.Status.CANCELLED
    call_command("ledger_check")


def test_a_pool_that_fails_does_not_hold_up_the_others(
    pool, members, future, sponsor, sponsor_user, monkeypatch, caplog
):
    """An unexpected error in one pool's cut-off, then in its round's close, is logged and
    leaves that pool due; the other pool is cut off, then closed and allocated, in the same
    runs. The first error used to end the run: every pool after it waited on the faulty one."""
    other = pool_create(sponsor=sponsor, name="Second", actor=sponsor_user)
    pool_fund(pool=other, amount=POOL_FUNDS, actor=sponsor_user)
    other_member = pool_member_add(pool=other, organization=startup("dyn", "5000"), actor=None)
    _submit(members[0], future, gpus=3)
    _submit(other_member, future, gpus=2)
    Pool.objects.update(cutoff_at=timezone.now() - timedelta(seconds=1))
    cut_off, close = pools_services.pool_cut_off, pools_services.pool_round_close

    def cut_off_failing_for_the_first(*, pool, **kwargs):
        if pool.pk < other.pk:
            raise RuntimeError("boom")
        return cut_off(pool=pool, **kwargs)

    monkeypatch.setattr(pools_services, "pool_cut_off", cut_off_failing_for_the_first)
    assert pools_run_due() == {"cut_off": 1, "closed": 0, "allocated": 0}
    assert not PoolRound.objects.filter(pool=pool).exists()
    assert _reload(pool).cutoff_at is not None  # Still due.
    assert f"the cut-off of pool #{pool.pk} failed" in caplog.text

    monkeypatch.setattr(pools_services, "pool_cut_off", cut_off)
    assert pools_run_due()["cut_off"] == 1  # The next run cuts it off.

    def close_failing_for_the_first(*, round_, **kwargs):
        if round_.pool_id == pool.pk:
            raise RuntimeError("boom")
        return close(round_=round_, **kwargs)

    monkeypatch.setattr(pools_services, "pool_round_close", close_failing_for_the_first)
    later = timezone.now() + timedelta(days=2)
    assert pools_run_due(now=later) == {"cut_off": 0, "closed": 1, "allocated": 1}
    assert PoolRound.objects.get(pool=pool).status == PoolRound.Status.WORKING
    assert PoolRound.objects.get(pool=other).status == PoolRound.Status.ALLOCATED
    round_ = PoolRound.objects.get(pool=pool)
    assert f"round #{round_.pk} did not close or allocate" in caplog.text


def test_the_celery_task_runs_due_pools(pool, members, future):
    _submit(members[0], future, gpus=3)
    Pool.objects.filter(pk=pool.pk).update(cutoff_at=timezone.now() - timedelta(seconds=1))

    done = tasks.pools_run_due.delay().get()

    assert done == {"cut_off": 1, "closed": 0, "allocated": 0}
    assert PoolRound.objects.get(pool=pool).orders.get().quantity == 3


def test_with_an_external_matcher_the_round_allocates_once_the_cancels_are_processed(
    pool, members, future, seller, sponsor_user, external_matcher
):
    # given a pool order partly filled by the matcher
    ada, bolt, _ = members
    _submit(ada, future, gpus=6)
    _submit(bolt, future, gpus=4)
    place(seller, future, "sell", 5, "2.45")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    order = round_.orders.get().order
    assert order.status == Order.Status.NEW
    matcher = Matcher()
    matcher.process_pending()
    assert _reload(order).filled_quantity == 5

    # when the sponsor closes the round, its cancel waits for the matcher
    closed = pool_round_close(round_=round_, actor=sponsor_user)
    assert closed.status == PoolRound.Status.WORKING
    assert not PoolAllocation.objects.exists()
    late = closed.closes_at + timedelta(seconds=1)
    assert pools_run_due(now=late) == {"cut_off": 0, "closed": 1, "allocated": 0}
    assert _reload(round_).status == PoolRound.Status.WORKING

    # then once the matcher cancels what was left, the scheduler allocates
    matcher.process_pending()
    assert _reload(order).status == Order.Status.CANCELLED
    assert pools_run_due(now=late)["allocated"] == 1
    quantities = {a.member_id: a.quantity for a in PoolAllocation.objects.filter(round=round_)}
    assert quantities == {ada.pk: 3, bolt.pk: 2}
    assert position_account(ada.account, future.symbol).balance == 3
    call_command("ledger_check")


def test_a_round_closed_early_allocates_as_soon_as_the_matcher_has_cancelled(
    pool, members, future, sponsor_user, external_matcher
):
    _submit(members[0], future, gpus=6)
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)
    matcher = Matcher()
    matcher.process_pending()
    pool_round_close(round_=round_, actor=sponsor_user)
    now = timezone.now()
    assert round_.closes_at > now

    assert pools_run_due(now=now)["allocated"] == 0  # The cancel is not processed yet.
    matcher.process_pending()
    assert pools_run_due(now=now) == {"cut_off": 0, "closed": 0, "allocated": 1}

    assert _reload(round_).status == PoolRound.Status.ALLOCATED
    assert PoolAllocation.objects.get().status == PoolAllocation.Status.NONE


# The block fee tier ------------------------------------------------------------------------


def test_a_pool_orders_fills_earn_the_block_fee_tier_once_it_has_filled_a_hundred(
    pool, members, futures, sponsor_user, seller
):
    """The combined order earns the tier none of its members would alone, but only on what it
    fills: the fill that takes it to 100 contracts pays 80% of the schedule, the one before
    the whole rate, and an order of 99 never reaches it."""
    ada, bolt, _ = members
    _submit(ada, futures[0], gpus=60)
    _submit(bolt, futures[0], gpus=40)
    _submit(ada, futures[1], gpus=99)
    place(seller, futures[0], "sell", 60, "2.40")
    place(seller, futures[0], "sell", 40, "2.45")
    place(seller, futures[1], "sell", 99, "2.40")

    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    block, small = (round_.orders.get(instrument=f).order for f in futures)
    schedule = collateral.fee_rates("future")
    assert (block.maker_fee_rate, block.taker_fee_rate) == (schedule.maker, schedule.taker)
    assert block.filled_quantity == 100 and small.filled_quantity == 99
    first, second = Trade.objects.filter(taker_order=block).order_by("sequence")
    assert (first.quantity, first.buyer_fee) == (60, 60 * 500_000)
    assert (second.quantity, second.buyer_fee) == (40, 40 * 400_000)
    [trade] = Trade.objects.filter(taker_order=small)
    assert trade.buyer_fee == 99 * 500_000
    # The sellers' orders of 60 and 40 reach no tier either: the schedule's maker rate.
    assert (first.seller_fee, second.seller_fee) == (60 * 200_000, 40 * 200_000)
    assert collateral.tiered_rate("future", schedule.taker, collateral.block_fee_share(500)) == (
        Decimal("0.30")
    )


def test_a_working_rounds_fills_cannot_be_reallocated_or_offered(
    pool, members, sponsor_user, future, seller
):
    from exchange.services.pools import pool_offer, pool_reallocate

    ada, bolt, _ = members
    demand_submit(
        member=ada,
        sku=future.sku,
        region=future.region,
        months=[future.delivery_start],
        gpus=6,
        limit_price=Decimal("2.50"),
        actor=sponsor_user,
    )
    place(seller, future, "sell", 6, "2.45")
    round_ = pool_cut_off(pool=pool, actor=sponsor_user)

    for move in (
        lambda: pool_reallocate(member=bolt, instrument=future, quantity=6, actor=sponsor_user),
        lambda: pool_offer(
            pool=pool, instrument=future, quantity=6, price=Decimal("2.60"), actor=sponsor_user
        ),
    ):
        with pytest.raises(PoolError) as refused:
            move()
        assert refused.value.code == PoolErrorCode.NOT_ENOUGH_HELD
        assert "await a working round" in refused.value.message

    pool_round_close(round_=round_, actor=sponsor_user)
    allocation = PoolAllocation.objects.get(member=ada)
    assert (allocation.status, allocation.quantity) == (PoolAllocation.Status.SETTLED, 6)


def test_a_passed_cut_off_may_stay_while_other_settings_change(pool, sponsor_user):
    from exchange.models import Pool
    from exchange.services.pools import pool_settings_set

    passed = timezone.now() - timedelta(minutes=5)
    Pool.objects.filter(pk=pool.pk).update(cutoff_at=passed)  # due; nothing was cut off
    pool.refresh_from_db()

    changed = pool_settings_set(
        pool=pool,
        rule=pool.rule,
        subsidy_percent=Decimal("12.50"),
        credit_line=Decimal("1000"),
        cutoff_at=passed,
        actor=sponsor_user,
    )

    assert (changed.subsidy_percent, changed.cutoff_at) == (Decimal("12.50"), passed)
    with pytest.raises(PoolError) as refused:
        pool_settings_set(
            pool=pool,
            rule=pool.rule,
            subsidy_percent=Decimal("12.50"),
            credit_line=Decimal("1000"),
            cutoff_at=passed - timedelta(minutes=1),
            actor=sponsor_user,
        )
    assert refused.value.code == PoolErrorCode.CUTOFF_INVALID
