"""The team page: traders add members and set roles; viewers only read; an organization's
last trader stays a trader; another organization's members are out of reach."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from exchange.models import AuditEntry, Membership, Organization
from exchange.services.participants import member_add, organization_create

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"


@pytest.fixture
def lumen():
    organization = organization_create(slug="lumen", name="Lumen Labs", kind="startup")
    member_add(organization=organization, username="alice", email="a@l.example", password=PASSWORD)
    member_add(
        organization=organization,
        username="victor",
        email="v@l.example",
        password=PASSWORD,
        role=Membership.Role.VIEWER,
    )
    return organization


@pytest.fixture
def quanta():
    organization = organization_create(slug="quanta", name="Quanta Bio", kind="startup")
    member_add(organization=organization, username="quinn", email="q@q.example", password=PASSWORD)
    return organization


def _as(client, username):
    client.force_login(get_user_model().objects.get(username=username))
    return client


def _membership(username) -> Membership:
    return Membership.objects.get(user__username=username)


def _new_member(**changes):
    return {
        "username": "bea",
        "email": "bea@lumen.example",
        "password": PASSWORD,
        "role": "viewer",
        **changes,
    }


def test_anonymous_is_sent_to_sign_in(client, lumen):
    response = client.get(reverse("web:team"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_members_see_only_their_organization(client, lumen, quanta):
    page = _as(client, "victor").get(reverse("web:team")).content.decode()

    assert "alice" in page and "victor" in page
    assert "quinn" not in page
    assert "Add a member" not in page  # A viewer's page has no forms.


def test_a_trader_adds_a_member_who_can_sign_in(client, lumen):
    response = _as(client, "alice").post(reverse("web:team_add"), _new_member())

    assert response.status_code == 302
    bea = _membership("bea")
    assert (bea.organization, bea.role) == (lumen, Membership.Role.VIEWER)
    assert AuditEntry.objects.filter(action="membership.add", actor__username="alice").exists()
    client.logout()
    assert client.login(username="bea", password=PASSWORD)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"username": "alice"}, "username", "taken. (PARTICIPANT_USERNAME_TAKEN)"),
        ({"username": "Alice"}, "username", "taken. (PARTICIPANT_USERNAME_TAKEN)"),
        ({"username": "no spaces allowed"}, "username", "Enter a valid username"),
        ({"email": "not-an-address"}, "email", "not an email address"),
        ({"password": "short"}, "password", "too short"),
        ({"role": "owner"}, "role", "Select a valid choice"),
    ],
)
def test_bad_member_is_refused_next_to_its_field(client, lumen, changes, field, message):
    users = get_user_model().objects.count()

    response = _as(client, "alice").post(reverse("web:team_add"), _new_member(**changes))

    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert get_user_model().objects.count() == users


def test_a_viewer_cannot_add_members_or_set_roles(client, lumen):
    viewer = _as(client, "victor")

    added = viewer.post(reverse("web:team_add"), _new_member())
    promoted = viewer.post(
        reverse("web:team_role", args=[_membership("victor").pk]), {"role": "trader"}
    )

    assert added.status_code == promoted.status_code == 403
    assert not get_user_model().objects.filter(username="bea").exists()
    assert _membership("victor").role == Membership.Role.VIEWER


def test_a_trader_sets_roles_audited(client, lumen):
    trader = _as(client, "alice")

    trader.post(reverse("web:team_role", args=[_membership("victor").pk]), {"role": "trader"})

    assert _membership("victor").role == Membership.Role.TRADER
    entry = AuditEntry.objects.get(action="membership.role")
    assert (entry.before, entry.after) == ({"role": "viewer"}, {"role": "trader"})
    assert entry.actor.username == "alice"


def test_the_last_trader_stays_a_trader(client, lumen):
    response = _as(client, "alice").post(
        reverse("web:team_role", args=[_membership("alice").pk]), {"role": "viewer"}, follow=True
    )

    assert _membership("alice").role == Membership.Role.TRADER
    assert "last trader" in response.content.decode()
    assert "(PARTICIPANT_LAST_TRADER)" in response.content.decode()
    assert not AuditEntry.objects.filter(action="membership.role").exists()


def test_another_organizations_member_is_not_found(client, lumen, quanta):
    response = _as(client, "alice").post(
        reverse("web:team_role", args=[_membership("quinn").pk]), {"role": "viewer"}
    )

    assert response.status_code == 404
    assert _membership("quinn").role == Membership.Role.TRADER


def test_the_same_role_again_changes_nothing(client, lumen):
    _as(client, "alice").post(
        reverse("web:team_role", args=[_membership("victor").pk]), {"role": "viewer"}
    )

    assert not AuditEntry.objects.filter(action="membership.role").exists()
    assert Organization.objects.get(slug="lumen").memberships.count() == 2
