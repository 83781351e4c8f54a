"""Who may open each back-office page and admin function: anonymous users and members who are
not staff are sent to the admin's sign-in, staff without the page's role get 403, staff with it
(and superusers) get the page."""

import pytest
from django.urls import reverse

from exchange.backoffice.roles import Role, has_any_role, roles_of
from exchange.models import AuditEntry, Order
from tests.exchange.support import place

pytestmark = pytest.mark.django_db

ALL = {"operations", "risk", "finance", "superuser"}

# (URL name, arguments, who gets 200)
PAGES = [
    ("backoffice:dashboard", [], ALL),
    ("backoffice:audit_log", [], ALL),
    ("backoffice:instruments", [], {"operations", "superuser"}),
    ("backoffice:exposure", [], {"risk", "superuser"}),
    ("backoffice:trial_balance", [], {"finance", "superuser"}),
    ("backoffice:trial_balance_csv", [], {"finance", "superuser"}),
]
ADMIN_FUNCTIONS = [
    ("admin:exchange_instrument_roll", {"operations", "superuser"}),
    ("admin:exchange_instrument_list_strip", {"operations", "superuser"}),
    ("admin:exchange_riskcycle_run", {"risk", "superuser"}),
    ("admin:exchange_margincall_changelist", {"risk", "superuser"}),
    ("admin:exchange_settlementprice_add", {"risk", "superuser"}),
    ("admin:exchange_withdrawal_changelist", {"finance", "superuser"}),
    ("admin:exchange_deposit_changelist", {"finance", "superuser"}),
    ("admin:exchange_order_changelist", {"operations", "risk", "superuser"}),
    ("admin:exchange_auditentry_changelist", ALL),
]
STAFF = ["operations", "risk", "finance", "roleless", "superuser"]


def _actions(response) -> set[str]:
    form = response.context["action_form"]  # None when no action is allowed.
    return set(dict(form.fields["action"].choices)) if form is not None else set()


@pytest.mark.parametrize("change", ["halt", "resume"])
def test_the_status_change_pages_need_the_operations_role(future, client, users, change):
    url = reverse("backoffice:instrument_status", args=[future.pk, change])

    assert client.get(url).status_code == 302  # Anonymous.
    for name, user in users.items():
        client.force_login(user)
        response = client.get(url)
        if name == "member":
            assert response.status_code == 302
        else:
            assert response.status_code == (200 if name in {"operations", "superuser"} else 403)


@pytest.mark.parametrize(("name", "args", "allowed"), PAGES)
def test_anonymous_and_members_are_sent_to_the_staff_sign_in(client, member, name, args, allowed):
    url = reverse(name, args=args)

    anonymous = client.get(url)
    client.force_login(member)
    signed_in = client.get(url)

    for response in (anonymous, signed_in):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
        assert "next=" in response["Location"]


@pytest.mark.parametrize(("name", "args", "allowed"), PAGES)
@pytest.mark.parametrize("who", STAFF)
def test_staff_need_the_page_role(client, users, name, args, allowed, who):
    client.force_login(users[who])

    response = client.get(reverse(name, args=args))

    assert response.status_code == (200 if who in allowed else 403)
    if response.status_code == 403:
        assert "needs the" in response.content.decode()


@pytest.mark.parametrize(("name", "allowed"), ADMIN_FUNCTIONS)
@pytest.mark.parametrize("who", STAFF)
def test_admin_functions_follow_the_roles(client, users, name, allowed, who):
    client.force_login(users[who])

    response = client.get(reverse(name))

    assert response.status_code == (200 if who in allowed else 403)


@pytest.mark.parametrize(("name", "allowed"), ADMIN_FUNCTIONS)
def test_admin_functions_send_members_to_the_sign_in(client, member, name, allowed):
    client.force_login(member)

    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_admin_actions_are_offered_to_their_role_only(client, operations, risk, future):
    url = reverse("admin:exchange_instrument_changelist")

    client.force_login(risk)
    seen_by_risk = client.get(url)
    client.force_login(operations)
    seen_by_operations = client.get(url)

    assert seen_by_risk.status_code == seen_by_operations.status_code == 200
    assert "halt" not in _actions(seen_by_risk)
    assert {"halt", "resume"} <= _actions(seen_by_operations)


def test_a_halt_posted_without_the_role_changes_nothing(client, risk, future):
    client.force_login(risk)

    client.post(
        reverse("admin:exchange_instrument_changelist"),
        {"action": "halt", "_selected_action": [future.pk], "confirm": "1", "reason": "r"},
    )

    future.refresh_from_db()
    assert future.status == "active"
    assert not AuditEntry.objects.filter(action="instrument.halted").exists()


def test_a_cancel_posted_without_the_role_changes_nothing(client, risk, future, buyer):
    order = place(buyer, future, "buy", 1, "2.45")
    client.force_login(risk)

    client.post(
        reverse("admin:exchange_order_changelist"),
        {"action": "cancel", "_selected_action": [order.pk], "confirm": "1", "reason": "r"},
    )

    order.refresh_from_db()
    assert order.status == Order.Status.OPEN
    assert not AuditEntry.objects.filter(action="order.cancel").exists()


def test_roles_come_from_the_groups_of_active_staff_only(users, django_user_model):
    assert roles_of(users["operations"]) == {Role.OPERATIONS}
    assert roles_of(users["superuser"]) == set(Role)
    assert roles_of(users["roleless"]) == set()
    assert roles_of(users["member"]) == set()
    # A user in a role's group who is no longer staff has no role.
    former = django_user_model.objects.get(pk=users["finance"].pk)
    former.is_staff = False
    former.save()
    assert not has_any_role(django_user_model.objects.get(pk=former.pk), [Role.FINANCE])


def test_the_role_groups_exist_after_migrating(db):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"operations", "risk", "finance"}


@pytest.mark.parametrize(
    ("who", "listed", "hidden"),
    [
        ("operations", {"instrument", "order", "auditentry"}, {"withdrawal", "margincall"}),
        ("risk", {"riskcycle", "margincall", "settlementprice"}, {"withdrawal", "deposit"}),
        ("finance", {"withdrawal", "deposit", "auditentry"}, {"riskcycle", "ordercommand"}),
        ("roleless", set(), {"auditentry", "instrument", "withdrawal"}),
    ],
)
def test_the_admin_index_lists_what_each_role_opens(client, users, who, listed, hidden):
    client.force_login(users[who])

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    models = {
        model["object_name"].lower()
        for app in response.context["app_list"]
        for model in app["models"]
    }
    assert listed <= models
    assert not hidden & models
