"""The staff services check the staff's role themselves, whoever calls them: operations for
trading status, listings and customers' orders; risk for settlement prices, the daily cycle,
margin calls and liquidation. A user without the role is refused by name and nothing is
written; staff with the role, a superuser and the system (no actor) go ahead."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.errors import CatalogError, ExchangeError, OrderRejected, RiskError, StaffError
from exchange.models import (
    AuditEntry,
    Instrument,
    MarginCall,
    Order,
    OrderCommand,
    RiskCycle,
    SettlementPrice,
)
from exchange.services.funding import deposit_test_funds
from exchange.services.instruments import instrument_halt, instrument_resume
from exchange.services.listing import (
    StripSpec,
    futures_list_new_strip,
    futures_list_strip,
    futures_list_upcoming,
    listings_roll,
    options_list_chain,
)
from exchange.services.risk_cycle import account_liquidate, daily_settlement_run
from exchange.services.settlement_prices import settlement_price_override, settlement_prices_set
from exchange.services.staff import (
    margin_call_staff_review,
    order_staff_cancel,
    staff_roles_grant,
)
from ledger.models import Entry
from tests.exchange.services.test_risk_cycle import _called_long_of_two
from tests.exchange.support import place, staff_user

# The risk services settle days the futures (listed from next month) trade on.
pytestmark = pytest.mark.usefixtures("calendar_ahead")

Act = Callable[[Any], Any]


def world() -> tuple[Any, ...]:
    """Everything a staff service here could write."""
    return (
        list(AuditEntry.objects.order_by("pk").values_list("pk", flat=True)),
        list(Instrument.objects.order_by("pk").values_list("pk", "status")),
        list(Order.objects.order_by("pk").values_list("pk", "status", "filled_quantity")),
        OrderCommand.objects.count(),
        list(SettlementPrice.objects.order_by("pk").values_list("pk", "price", "source")),
        list(RiskCycle.objects.order_by("pk").values_list("pk", "status")),
        list(
            MarginCall.objects.order_by("pk").values_list(
                "pk", "status", "required", "held", "deficit", "reviews"
            )
        ),
        Entry.objects.count(),
    )


def a_day(future: Instrument) -> date:
    """A closed trading day of ``future`` (the exchange's calendar is moved on)."""
    return calendar.business_days_before(future.last_trading_day, 5)


# Each case sets up what its service acts on and returns the service, called with an actor.
# Accounts come from ``fixtures`` (pytest's getfixturevalue) only where a case needs them: the
# margin call cases open their own under the same names.


def halt(future, fixtures) -> Act:
    return lambda actor: instrument_halt(instrument=future, actor=actor, reason="incident 7")


def resume(future, fixtures) -> Act:
    instrument_halt(instrument=future, actor=None, reason="incident 7")
    return lambda actor: instrument_resume(instrument=future, actor=actor, reason="fixed")


def roll(future, fixtures) -> Act:
    return lambda actor: listings_roll(actor=actor)


def list_strip(future, fixtures) -> Act:
    first_month = calendar.add_months(future.delivery_start, 24)
    return lambda actor: futures_list_strip(
        sku=future.sku, region=future.region, first_month=first_month, months=1, actor=actor
    )


def list_new_strip(future, fixtures) -> Act:
    first_month = calendar.add_months(future.delivery_start, 24)
    return lambda actor: futures_list_new_strip(
        sku=future.sku,
        region=future.region,
        first_month=first_month,
        months=1,
        spec=StripSpec(),
        actor=actor,
    )


def list_upcoming(future, fixtures) -> Act:
    return lambda actor: futures_list_upcoming(months_ahead=24, actor=actor)


def list_chain(future, fixtures) -> Act:
    return lambda actor: options_list_chain(
        future=future,
        reference_price=Decimal("2.45"),
        strike_step=Decimal("0.1"),
        strikes_each_side=1,
        actor=actor,
    )


def cancel_order(future, fixtures) -> Act:
    buyer = fixtures("buyer")
    order = place(buyer, future, "buy", 1, "2.40")
    return lambda actor: order_staff_cancel(order=order, actor=actor, reason="asked by phone")


def review_call(future, fixtures) -> Act:
    long = _called_long_of_two(future, None, bids=0)
    call = MarginCall.objects.get(account=long, status=MarginCall.Status.OPEN)
    deposit_test_funds(account=long, amount=Decimal("1000"), actor=None)  # The review cures it.
    return lambda actor: margin_call_staff_review(call=call, actor=actor)


def liquidate(future, fixtures) -> Act:
    long = _called_long_of_two(future, None, bids=2)
    return lambda actor: account_liquidate(account=long, actor=actor, reason="call not met")


def settle(future, fixtures) -> Act:
    buyer, seller = fixtures("buyer"), fixtures("seller")
    place(seller, future, "sell", 1, "2.45")
    place(buyer, future, "buy", 1, "2.45")
    return lambda actor: daily_settlement_run(trading_date=a_day(future), actor=actor)


def set_prices(future, fixtures) -> Act:
    buyer, seller = fixtures("buyer"), fixtures("seller")
    place(seller, future, "sell", 1, "2.45")
    place(buyer, future, "buy", 1, "2.45")
    return lambda actor: settlement_prices_set(trading_date=a_day(future), actor=actor)


def override(future, fixtures) -> Act:
    return lambda actor: settlement_price_override(
        instrument=future,
        trading_date=a_day(future),
        price=Decimal("2.50"),
        reason="Brokers' price",
        actor=actor,
    )


@dataclass(frozen=True)
class Case:
    setup: Callable[..., Act]
    role: Role
    error: type[ExchangeError]
    family: str  # The codes' prefix: <family>_NOT_STAFF, <family>_ROLE_REQUIRED.


CASES = {
    "instrument_halt": Case(halt, Role.OPERATIONS, CatalogError, "CATALOG"),
    "instrument_resume": Case(resume, Role.OPERATIONS, CatalogError, "CATALOG"),
    "listings_roll": Case(roll, Role.OPERATIONS, CatalogError, "CATALOG"),
    "futures_list_strip": Case(list_strip, Role.OPERATIONS, CatalogError, "CATALOG"),
    "futures_list_new_strip": Case(list_new_strip, Role.OPERATIONS, CatalogError, "CATALOG"),
    "futures_list_upcoming": Case(list_upcoming, Role.OPERATIONS, CatalogError, "CATALOG"),
    "options_list_chain": Case(list_chain, Role.OPERATIONS, CatalogError, "CATALOG"),
    "order_staff_cancel": Case(cancel_order, Role.OPERATIONS, OrderRejected, "ORDER"),
    "margin_call_staff_review": Case(review_call, Role.RISK, RiskError, "RISK"),
    "account_liquidate": Case(liquidate, Role.RISK, RiskError, "RISK"),
    "daily_settlement_run": Case(settle, Role.RISK, RiskError, "RISK"),
    "settlement_prices_set": Case(set_prices, Role.RISK, RiskError, "RISK"),
    "settlement_price_override": Case(override, Role.RISK, RiskError, "RISK"),
}


def refused_user(kind: str, role: Role):
    users = get_user_model().objects
    if kind == "member":  # Signed in, not staff.
        return users.create_user("trader")
    if kind == "inactive":  # Had the role, and left.
        user = staff_user("gone", role)
        user.is_active = False
        user.save(update_fields=["is_active"])
        return users.get(pk=user.pk)
    if kind == "other roles":
        return staff_user("other", *(other for other in Role if other != role))
    assert kind == "no role"
    return staff_user("nobody")


REFUSALS = {
    "member": "NOT_STAFF",
    "inactive": "NOT_STAFF",
    "other roles": "ROLE_REQUIRED",
    "no role": "ROLE_REQUIRED",
}


@pytest.mark.parametrize("kind", list(REFUSALS))
@pytest.mark.parametrize("service", list(CASES))
def test_a_user_without_the_role_is_refused_by_name_and_nothing_is_written(
    service, kind, future, request
):
    # given what the service acts on, and a user who may not call it
    case = CASES[service]
    act = case.setup(future, request.getfixturevalue)
    actor = refused_user(kind, case.role)
    before = world()

    # when the user calls the service
    with pytest.raises(case.error) as refused:
        act(actor)

    # then it is refused with the family's code, naming the role where staff lack it
    assert refused.value.code == f"{case.family}_{REFUSALS[kind]}"
    if REFUSALS[kind] == "ROLE_REQUIRED":
        assert f"the {case.role} role" in refused.value.message
    # and nothing was written: no audit row, no change of state
    assert world() == before


@pytest.mark.parametrize("who", ["the role", "superuser", "system"])
@pytest.mark.parametrize("service", list(CASES))
def test_staff_with_the_role_a_superuser_and_the_system_go_ahead(service, who, future, request):
    # given what the service acts on, and who may call it
    case = CASES[service]
    act = case.setup(future, request.getfixturevalue)
    users = get_user_model().objects
    actor = {
        "the role": lambda: staff_user("desk", case.role),
        "superuser": lambda: users.create_superuser("root", "root@exchange.example", "x-2026"),
        "system": lambda: None,
    }[who]()
    audits = AuditEntry.objects.count()
    before = world()

    # when they call it
    act(actor)

    # then it acted, and its audit rows name them
    assert world() != before
    labels = {entry.actor_label for entry in AuditEntry.objects.order_by("pk")[audits:]}
    assert labels == {"system" if actor is None else actor.username}


def test_an_inactive_superuser_is_refused(future):
    root = get_user_model().objects.create_superuser("root", "root@exchange.example", "x-2026")
    root.is_active = False
    root.save(update_fields=["is_active"])
    before = world()

    with pytest.raises(CatalogError) as refused:
        instrument_halt(instrument=future, actor=root, reason="incident 7")

    assert refused.value.code == "CATALOG_NOT_STAFF"
    assert world() == before


# Granting roles: a superuser's (or the system's), whatever roles the caller has.


def roles_held(user) -> tuple[bool, list[str]]:
    user = get_user_model().objects.get(pk=user.pk)
    return user.is_staff, sorted(user.groups.values_list("name", flat=True))


ROLE_GRANT_REFUSALS = {
    "member": "STAFF_NOT_STAFF",
    "inactive": "STAFF_NOT_STAFF",
    "other roles": "STAFF_SUPERUSER_REQUIRED",
    "no role": "STAFF_SUPERUSER_REQUIRED",
    "every role": "STAFF_SUPERUSER_REQUIRED",
}


@pytest.mark.parametrize("kind", list(ROLE_GRANT_REFUSALS))
def test_only_a_superuser_grants_roles_and_a_refusal_writes_nothing(db, kind):
    # given a member, to be made risk staff, and a caller who is not a superuser
    grantee = get_user_model().objects.create_user("grantee")
    actor = staff_user("desk", *Role) if kind == "every role" else refused_user(kind, Role.RISK)
    audits = AuditEntry.objects.count()

    # when the caller grants a role (to the member, or to themselves)
    for user in (grantee, actor):
        with pytest.raises(StaffError) as refused:
            staff_roles_grant(user=user, roles=[Role.RISK, Role.FINANCE], actor=actor)

        # then it is refused by name
        assert refused.value.code == ROLE_GRANT_REFUSALS[kind]

    # and nobody's roles changed, and no audit row was written
    assert roles_held(grantee) == (False, [])
    assert AuditEntry.objects.count() == audits


@pytest.mark.parametrize("who", ["superuser", "system"])
def test_a_superuser_and_the_system_grant_roles(db, who):
    grantee = get_user_model().objects.create_user("grantee")
    actor = (
        get_user_model().objects.create_superuser("root", "root@exchange.example", "x-2026")
        if who == "superuser"
        else None
    )

    granted = staff_roles_grant(user=grantee, roles=[Role.RISK], actor=actor)

    assert granted == {Role.RISK}
    assert roles_held(grantee) == (True, ["risk"])
    entry = AuditEntry.objects.get(action="staff.roles_grant")
    assert entry.actor_label == ("system" if actor is None else "root")


def test_an_inactive_superuser_grants_no_roles(db):
    root = get_user_model().objects.create_superuser("root", "root@exchange.example", "x-2026")
    root.is_active = False
    root.save(update_fields=["is_active"])
    grantee = get_user_model().objects.create_user("grantee")

    with pytest.raises(StaffError) as refused:
        staff_roles_grant(user=grantee, roles=[Role.RISK], actor=root)

    assert refused.value.code == "STAFF_NOT_STAFF"
    assert roles_held(grantee) == (False, [])
