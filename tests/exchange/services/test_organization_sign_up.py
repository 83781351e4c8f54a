"""Signing up: an organization, its main account and its first member (a trader) at once."""

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from exchange.errors import ParticipantError, ParticipantErrorCode
from exchange.models import Account, AuditEntry, Membership, Organization
from exchange.services import participants
from exchange.services.participants import member_add, organization_create, organization_sign_up

pytestmark = pytest.mark.django_db

PASSWORD = "gpu-hours-by-the-month"


def _sign_up(**changes):
    fields = {
        "name": "Lumen Labs",
        "slug": "lumen-labs",
        "kind": Organization.Kind.STARTUP,
        "username": "alice",
        "email": "alice@lumen.example",
        "password": PASSWORD,
    }
    fields.update(changes)
    return organization_sign_up(**fields)


def _rows():
    return {
        "organizations": Organization.objects.count(),
        "accounts": Account.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": Membership.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def test_sign_up_creates_the_organization_its_account_and_a_trader():
    # when
    membership = _sign_up(name="  Lumen Labs ")

    # then
    organization = membership.organization
    assert (organization.slug, organization.name, organization.kind) == (
        "lumen-labs",
        "Lumen Labs",
        Organization.Kind.STARTUP,
    )
    assert membership.role == Membership.Role.TRADER
    assert membership.user.username == "alice"
    assert membership.user.email == "alice@lumen.example"
    assert membership.user.check_password(PASSWORD)
    assert list(organization.accounts.values_list("name", flat=True)) == ["main"]
    audit = AuditEntry.objects.get(action="organization.sign_up")
    assert audit.actor == membership.user and audit.target_id == str(organization.pk)


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"name": "   "}, ParticipantErrorCode.NAME_INVALID, "name"),
        ({"name": "x" * 201}, ParticipantErrorCode.NAME_INVALID, "name"),
        ({"slug": "Lumen"}, ParticipantErrorCode.SLUG_INVALID, "slug"),
        ({"slug": "lumen--labs"}, ParticipantErrorCode.SLUG_INVALID, "slug"),
        ({"slug": "-lumen"}, ParticipantErrorCode.SLUG_INVALID, "slug"),
        ({"slug": ""}, ParticipantErrorCode.SLUG_INVALID, "slug"),
        ({"slug": "a" * 65}, ParticipantErrorCode.SLUG_INVALID, "slug"),
        ({"kind": Organization.Kind.EXCHANGE}, ParticipantErrorCode.KIND_INVALID, "kind"),
        ({"kind": "bank"}, ParticipantErrorCode.KIND_INVALID, "kind"),
        ({"username": ""}, ParticipantErrorCode.USERNAME_INVALID, "username"),
        ({"username": "alice smith"}, ParticipantErrorCode.USERNAME_INVALID, "username"),
        ({"username": "a" * 151}, ParticipantErrorCode.USERNAME_INVALID, "username"),
        ({"email": "alice"}, ParticipantErrorCode.EMAIL_INVALID, "email"),
        ({"password": "short"}, ParticipantErrorCode.PASSWORD_INVALID, "password"),
        ({"password": "password123"}, ParticipantErrorCode.PASSWORD_INVALID, "password"),
        ({"password": "alice@lumen.example"}, ParticipantErrorCode.PASSWORD_INVALID, "password"),
    ],
)
def test_invalid_sign_up_is_refused_with_its_field_and_writes_nothing(changes, code, field):
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        _sign_up(**changes)

    assert (refused.value.code, refused.value.field) == (code, field)
    assert _rows() == before


def test_a_taken_slug_is_refused_and_writes_nothing():
    organization_create(slug="lumen-labs", name="Other Lumen", kind=Organization.Kind.STARTUP)
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        _sign_up()

    assert refused.value.code == ParticipantErrorCode.SLUG_TAKEN
    assert refused.value.field == "slug"
    assert _rows() == before


@pytest.mark.parametrize("name", ["Lumen Labs", "lumen labs", "  LUMEN LABS  "])
def test_a_taken_organization_name_is_refused_whatever_its_case_and_writes_nothing(name):
    organization_create(slug="lumen", name="Lumen Labs", kind=Organization.Kind.STARTUP)
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        _sign_up(name=name)  # Another slug, lumen-labs: only the name is taken.

    assert refused.value.code == ParticipantErrorCode.NAME_TAKEN
    assert refused.value.field == "name"
    assert "Lumen Labs" in refused.value.message
    assert _rows() == before


def test_creating_an_organization_refuses_a_taken_name_too():
    # given an organization, then one created by another path than sign-up (staff, scripts)
    organization_create(slug="lumen", name="Lumen Labs", kind=Organization.Kind.STARTUP)
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        organization_create(slug="lumen-2", name=" lumen LABS ", kind=Organization.Kind.STARTUP)

    assert (refused.value.code, refused.value.field) == (ParticipantErrorCode.NAME_TAKEN, "name")
    assert _rows() == before
    # and a name differing in more than case and surrounding blanks is another organization's
    other = organization_create(slug="lumen-3", name=" Lumen Labs 2 ", kind="startup")
    assert other.name == "Lumen Labs 2"


def test_the_database_refuses_two_organizations_of_one_name_whatever_its_case():
    """The rule holds for rows written without the service too (the admin's form reads it from
    the constraint); the service's check reports it first, with its field."""
    Organization.objects.create(slug="lumen", name="Lumen Labs", kind="startup")

    with pytest.raises(IntegrityError), transaction.atomic():
        Organization.objects.create(slug="lumen-2", name="LUMEN LABS", kind="startup")


def test_a_sign_up_that_loses_a_race_for_its_name_is_reported_as_taken(monkeypatch):
    # given another sign-up that takes the name between the check and the insert
    real_check = participants._name_taken_check
    calls = []

    def check_then_race(name):
        calls.append(name)
        if len(calls) == 1:  # The sign-up's check passes, then the other sign-up commits.
            real_check(name)
            Organization.objects.create(slug="other", name=name.upper(), kind="startup")
        elif len(calls) > 2:  # organization_create's own check ran before that commit.
            real_check(name)

    monkeypatch.setattr(participants, "_name_taken_check", check_then_race)
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        _sign_up()

    assert (refused.value.code, refused.value.field) == (ParticipantErrorCode.NAME_TAKEN, "name")
    assert _rows() == {**before, "organizations": before["organizations"] + 1}  # The other's.


def test_a_taken_username_is_refused_whatever_its_case_and_writes_nothing():
    other = organization_create(slug="helix", name="Helix", kind=Organization.Kind.TRADING_FIRM)
    member_add(organization=other, username="Alice", email="a@helix.example", password=PASSWORD)
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        _sign_up(username="alice")

    assert refused.value.code == ParticipantErrorCode.USERNAME_TAKEN
    assert refused.value.field == "username"
    assert _rows() == before


def test_a_sign_up_that_loses_a_race_for_its_username_is_reported_as_taken(monkeypatch):
    # given another sign-up that takes the user name between the check and the insert
    real_check = participants._taken_check
    calls = []

    def check_then_race(*, slug, username):
        calls.append(username)
        if len(calls) == 1:
            real_check(slug=slug, username=username)
            other = organization_create(
                slug="helix", name="Helix", kind=Organization.Kind.TRADING_FIRM
            )
            member_add(organization=other, username=username, email="a@h.example", password="x")
            return
        real_check(slug=slug, username=username)

    monkeypatch.setattr(participants, "_taken_check", check_then_race)
    before = _rows()

    # when
    with pytest.raises(ParticipantError) as refused:
        _sign_up()

    # then the unique constraint refused the insert, the whole sign-up was rolled back, and
    # the refusal names the field
    assert refused.value.code == ParticipantErrorCode.USERNAME_TAKEN
    assert not Organization.objects.filter(slug="lumen-labs").exists()
    after = _rows()
    # Only the racing sign-up's own rows were added (its organization, account, user,
    # membership and their two audit rows).
    assert after == {
        "organizations": before["organizations"] + 1,
        "accounts": before["accounts"] + 1,
        "users": before["users"] + 1,
        "memberships": before["memberships"] + 1,
        "audit": before["audit"] + 2,
    }


def test_an_integrity_error_that_is_not_a_taken_name_is_raised(monkeypatch):
    def broken(**kwargs):
        raise IntegrityError("something else")

    monkeypatch.setattr(participants, "member_add", broken)

    with pytest.raises(IntegrityError):
        _sign_up()

    assert not Organization.objects.filter(slug="lumen-labs").exists()


def test_there_is_one_exchange_operator():
    organization_create(slug="gpux", name="GPU Exchange", kind=Organization.Kind.EXCHANGE)
    before = _rows()

    with pytest.raises(ParticipantError) as refused:
        organization_create(slug="gpux-2", name="GPU Exchange 2", kind=Organization.Kind.EXCHANGE)

    assert refused.value.code == ParticipantErrorCode.OPERATOR_EXISTS
    assert refused.value.field == "kind"
    assert _rows() == before


def test_the_database_keeps_one_exchange_operator_against_other_writers():
    Organization.objects.create(slug="gpux", name="GPU Exchange", kind=Organization.Kind.EXCHANGE)

    with pytest.raises(IntegrityError), transaction.atomic():
        Organization.objects.create(slug="gpux-2", name="Other", kind=Organization.Kind.EXCHANGE)
