"""The back office's pool pages: every staff role browses them, operations close a round
behind a confirmation, and nothing there edits what the pool services write."""

from decimal import Decimal

import pytest
from django.urls import reverse

from exchange.backoffice.roles import Role
from exchange.errors import OrderRejected
from exchange.models import AuditEntry, Order, PoolAllocation, PoolRound
from exchange.services.participants import member_add
from exchange.services.pools import demand_submit, pool_cut_off, pool_round_close
from tests.exchange.support import place, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def working_round(pool, members, sponsor_user, future, seller):
    for member in members[:2]:
        demand_submit(
            member=member,
            sku=future.sku,
            region=future.region,
            months=[future.delivery_start],
            gpus=5,
            limit_price=Decimal("2.50"),
            actor=sponsor_user,
        )
    place(seller, future, "sell", 6, "2.45")
    return pool_cut_off(pool=pool, actor=sponsor_user)


@pytest.mark.parametrize(
    "model", ["pool", "pooldemand", "poolround", "poolallocation", "pooltransfer"]
)
def test_the_pool_pages_open_and_cannot_add(admin_client, working_round, model):
    changelist = admin_client.get(reverse(f"admin:exchange_{model}_changelist"))

    assert changelist.status_code == 200
    assert admin_client.get(reverse(f"admin:exchange_{model}_add")).status_code == 403


def test_a_round_page_shows_its_tier_orders(admin_client, working_round, future):
    page = admin_client.get(reverse("admin:exchange_poolround_change", args=[working_round.pk]))

    assert page.status_code == 200
    assert future.symbol in page.content.decode()


def test_closing_a_round_asks_first_and_a_reason_then_allocates(
    admin_client, admin_user, working_round
):
    url = reverse("admin:exchange_poolround_changelist")
    chosen = {"action": "close", "_selected_action": [working_round.pk]}

    page = admin_client.post(url, chosen)

    content = page.content.decode()
    assert "Close pool rounds" in content and 'name="reason"' in content
    assert "Why the rounds close before their time" in content
    assert PoolRound.objects.get(pk=working_round.pk).status == PoolRound.Status.WORKING

    # when staff confirm without a reason (blank), the close is refused and nothing is done
    before = _round_state(working_round)
    refused = admin_client.post(url, {**chosen, "confirm": "1", "reason": "  "})

    assert refused.status_code == 400
    assert refused.context["form"].errors == {"reason": ["This field is required."]}
    assert _round_state(working_round) == before

    # when they confirm with one, the round closes and allocates, the reason in its audit row
    admin_client.post(url, {**chosen, "confirm": "1", "reason": " Sponsor asked by phone "})

    assert PoolRound.objects.get(pk=working_round.pk).status == PoolRound.Status.ALLOCATED
    assert sorted(PoolAllocation.objects.values_list("quantity", flat=True)) == [3, 3]
    assert AuditEntry.objects.get(action="pool.allocate").actor == admin_user
    closed = AuditEntry.objects.get(action="pool.round_close")
    assert (closed.actor, closed.reason) == (admin_user, "Sponsor asked by phone")


def _round_state(round_):
    return (
        PoolRound.objects.get(pk=round_.pk).status,
        sorted(Order.objects.filter(pool_order__round=round_).values_list("pk", "status")),
        AuditEntry.objects.count(),
        PoolAllocation.objects.count(),
    )


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("risk staff", "ORDER_ROLE_REQUIRED"),
        ("staff without a role", "ORDER_ROLE_REQUIRED"),
        ("a member of another organization", "ORDER_NOT_STAFF"),
    ],
)
def test_closing_a_round_needs_the_operations_role_unless_the_sponsor_closes_it(
    working_round, members, who, code
):
    # given a user who neither sponsors the pool nor has the operations role
    actor = {
        "risk staff": lambda: staff_user("risk desk", Role.RISK),
        "staff without a role": lambda: staff_user("nobody"),
        "a member of another organization": lambda: (
            member_add(
                organization=members[0].organization,
                username="ada-trader",
                email="t@ada.example",
                password="x-2026",
            ).user
        ),
    }[who]()
    before = _round_state(working_round)

    # when they close the round
    with pytest.raises(OrderRejected) as refused:
        pool_round_close(round_=working_round, actor=actor)

    # then it is refused by name, and its orders still work: nothing was written
    assert refused.value.code == code
    assert _round_state(working_round) == before


@pytest.mark.parametrize("who", ["operations staff", "the sponsor"])
def test_operations_staff_and_the_sponsor_close_a_round(working_round, sponsor_user, who):
    actor = staff_user("desk", Role.OPERATIONS) if who == "operations staff" else sponsor_user
    # The sponsor closes its own round early without saying why; staff give a reason.
    reason = "instrument halted" if who == "operations staff" else ""

    closed = pool_round_close(round_=working_round, actor=actor, reason=reason)

    assert closed.status == PoolRound.Status.ALLOCATED
    assert AuditEntry.objects.get(action="pool.allocate").actor == actor
    assert AuditEntry.objects.get(action="pool.round_close").reason == reason


@pytest.mark.parametrize("reason", ["", "   "])
def test_staff_closing_a_round_without_a_reason_is_refused_and_writes_nothing(
    working_round, reason
):
    desk = staff_user("desk", Role.OPERATIONS)
    before = _round_state(working_round)

    with pytest.raises(OrderRejected) as refused:
        pool_round_close(round_=working_round, actor=desk, reason=reason)

    assert (refused.value.code, refused.value.field) == ("ORDER_REASON_REQUIRED", "reason")
    assert "Give a reason" in refused.value.message
    assert _round_state(working_round) == before


def test_staff_closing_a_round_an_external_matcher_has_still_to_cancel_is_audited(
    working_round, external_matcher
):
    # given a round whose tier orders rest with an external matcher, which has not run yet
    desk = staff_user("desk", Role.OPERATIONS)

    # when operations staff close it
    closed = pool_round_close(round_=working_round, actor=desk, reason="sponsor's request")

    # then it waits for the cancels to allocate, and who closed it is in the audit log now
    assert closed.status == PoolRound.Status.WORKING
    assert not AuditEntry.objects.filter(action="pool.allocate").exists()
    entry = AuditEntry.objects.get(action="pool.round_close")
    assert (entry.actor, entry.target_id, entry.reason) == (
        desk,
        str(working_round.pk),
        "sponsor's request",
    )
    assert entry.after["close_reason"] == PoolRound.CloseReason.STAFF
    assert entry.after["orders_cancelled"] == list(
        Order.objects.filter(pool_order__round=working_round)
        .order_by("pk")
        .values_list("pk", flat=True)
    )

    # and closing it again (the schedule's close, or a second click) writes no second row
    pool_round_close(round_=working_round, actor=desk, reason="again")
    assert AuditEntry.objects.filter(action="pool.round_close").count() == 1
