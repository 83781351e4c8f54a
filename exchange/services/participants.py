"""Organizations, their members and their trading accounts."""

import re
from typing import cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower

from exchange.errors import ParticipantError, ParticipantErrorCode
from exchange.models import Account, MarginCall, Membership, Organization
from exchange.recent import Recent
from exchange.services.audit import audit_record
from statements import Select

# Who may sign up on their own: every kind but the exchange operator, which staff create.
SIGN_UP_KINDS = (
    Organization.Kind.STARTUP,
    Organization.Kind.PROVIDER,
    Organization.Kind.TRADING_FIRM,
    Organization.Kind.SPONSOR,
)
# Lower-case letters and digits in hyphen-separated words: a slug appears in account names
# ("lumen/main") and addresses, so it has one spelling.
SLUG_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
SLUG_LENGTH_MAX = 64  # Organization.slug.
NAME_LENGTH_MAX = 200  # Organization.name.
USERNAME_LENGTH_MAX = 150  # Django's User.username.
EMAIL_LENGTH_MAX = 254  # Django's User.email.


@transaction.atomic
def organization_create(
    *, slug: str, name: str, kind: str, actor: User | None = None
) -> Organization:
    """Create an organization with its main trading account.

    Its name, without surrounding blanks, must be no other organization's whatever the case
    (``PARTICIPANT_NAME_TAKEN``): people and staff tell organizations apart by name. There is
    one exchange operator (``PARTICIPANT_OPERATOR_EXISTS`` for a second).
    """
    name = name.strip()
    _name_taken_check(name)
    if (
        kind == Organization.Kind.EXCHANGE
        and Organization.objects.filter(kind=Organization.Kind.EXCHANGE).exists()
    ):
        raise ParticipantError(
            ParticipantErrorCode.OPERATOR_EXISTS,
            "The exchange operator's organization already exists: there is one operator.",
            field="kind",
        )
    organization = Organization.objects.create(slug=slug, name=name, kind=kind)
    Account.objects.create(organization=organization, name="main")
    audit_record(
        actor=actor,
        action="organization.create",
        target=organization,
        after={"slug": slug, "kind": kind},
    )
    return organization


@transaction.atomic
def member_add(
    *,
    organization: Organization,
    username: str,
    email: str,
    password: str,
    role: str = Membership.Role.TRADER,
    actor: User | None = None,
) -> Membership:
    """Create a user and make it a member of ``organization``."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    membership = Membership.objects.create(user=user, organization=organization, role=role)
    audit_record(
        actor=actor,
        action="membership.add",
        target=membership,
        after={"user": username, "role": role},
    )
    return membership


# A raw statement: the ORM compiled this query afresh on every API request, a third of the
# placement's CPU in the web process. At most one open margin call per account (a unique
# constraint), so one row.
ACCOUNT_MAIN = Select(
    [Account, MarginCall],
    "{t0} LEFT JOIN {t1} ON {t1}.account_id = {t0}.id AND {t1}.status = 'open'",
    "WHERE {t0}.organization_id = %s AND {t0}.name = 'main'",
)


def account_main(organization: Organization, *, with_margin_call: bool = False) -> Account:
    """The organization's main trading account.

    ``with_margin_call``: also say whether it has an open margin call
    (``has_open_margin_call``, read in the same query), which the order services then need not
    read again; for an account read per request (the API's caller), never for one kept across
    changes.
    """
    found = ACCOUNT_MAIN.rows([organization.pk])
    if not found:
        raise Account.DoesNotExist(f"{organization} has no main account.")
    account, call = found[0]
    if with_margin_call:
        account.has_open_margin_call = call.pk is not None  # type: ignore[attr-defined]
    return cast(Account, account)


# Main accounts read for orders, by organization id (``exchange.recent``).
MAIN_ACCOUNTS_RECENT: Recent[int, Account] = Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")


def account_main_recent(organization: Organization) -> Account:
    """``account_main(organization, with_margin_call=True)`` as this process read it at most
    ``EXCHANGE_REFERENCE_CACHE_SECONDS`` ago: for the API's caller, whose requests would
    otherwise read it every time. Read-only: the same instance serves every thread."""
    account = MAIN_ACCOUNTS_RECENT.get(
        organization.pk, lambda: account_main(organization, with_margin_call=True)
    )
    assert account is not None  # account_main raises rather than answer None.
    return account


def organization_sign_up(
    *, name: str, slug: str, kind: str, username: str, email: str, password: str
) -> Membership:
    """A new organization, its main trading account and its first member, a trader.

    All of it or nothing: one transaction. Refusals are ``ParticipantError`` naming the field
    (``name``, ``slug``, ``kind``, ``username``, ``email`` or ``password``); the first problem
    found is reported. The password must pass the configured Django password validators. Two
    sign-ups racing for one name, slug or user name: the database's unique constraints refuse
    the second, which is then reported as taken like any other.
    """
    name = name.strip()
    _sign_up_check(name=name, slug=slug, kind=kind, username=username, email=email)
    _password_check(password=password, username=username, email=email)
    try:
        with transaction.atomic(durable=True):
            organization = organization_create(slug=slug, name=name, kind=kind)
            membership = member_add(
                organization=organization,
                username=username,
                email=email,
                password=password,
                role=Membership.Role.TRADER,
            )
            audit_record(
                actor=membership.user,
                action="organization.sign_up",
                target=organization,
                after={"slug": slug, "kind": kind, "user": username},
            )
    except IntegrityError:
        # The transaction is rolled back; the checks now see the other sign-up's rows and
        # name the field that was taken.
        _name_taken_check(name)
        _taken_check(slug=slug, username=username)
        raise
    return membership


def _sign_up_check(*, name: str, slug: str, kind: str, username: str, email: str) -> None:
    if not name or len(name) > NAME_LENGTH_MAX:
        raise ParticipantError(
            ParticipantErrorCode.NAME_INVALID,
            f"Give the organization's name, at most {NAME_LENGTH_MAX} characters.",
            field="name",
        )
    _name_taken_check(name)
    if len(slug) > SLUG_LENGTH_MAX or not SLUG_PATTERN.fullmatch(slug):
        raise ParticipantError(
            ParticipantErrorCode.SLUG_INVALID,
            "A short name of lower-case letters and digits, words separated by single "
            f"hyphens (such as lumen-labs), at most {SLUG_LENGTH_MAX} characters.",
            field="slug",
        )
    if kind not in SIGN_UP_KINDS:
        raise ParticipantError(
            ParticipantErrorCode.KIND_INVALID,
            f"{kind!r} is not a kind of organization that can sign up.",
            field="kind",
        )
    _username_and_email_check(username=username, email=email)
    _taken_check(slug=slug, username=username)


def _username_and_email_check(*, username: str, email: str) -> None:
    if not username or len(username) > USERNAME_LENGTH_MAX:
        raise ParticipantError(
            ParticipantErrorCode.USERNAME_INVALID,
            f"Give a user name of at most {USERNAME_LENGTH_MAX} characters.",
            field="username",
        )
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError as error:
        raise ParticipantError(
            ParticipantErrorCode.USERNAME_INVALID, " ".join(error.messages), field="username"
        ) from error
    try:
        validate_email(email)
    except ValidationError as error:
        raise ParticipantError(
            ParticipantErrorCode.EMAIL_INVALID, f"{email!r} is not an email address.", field="email"
        ) from error
    if len(email) > EMAIL_LENGTH_MAX:
        raise ParticipantError(
            ParticipantErrorCode.EMAIL_INVALID,
            f"An email address has at most {EMAIL_LENGTH_MAX} characters.",
            field="email",
        )


def _taken_check(*, slug: str, username: str) -> None:
    if Organization.objects.filter(slug=slug).exists():
        raise ParticipantError(
            ParticipantErrorCode.SLUG_TAKEN,
            f"The short name {slug} is taken by another organization.",
            field="slug",
        )
    _username_taken_check(username)


def _name_taken_check(name: str) -> None:
    # Compared as the database's unique index on the lower-cased name compares them, so the
    # check and the constraint that backs it against races agree on every character.
    taken = (
        Organization.objects.alias(folded=Lower("name"))
        .filter(folded=Lower(Value(name)))
        .values_list("name", flat=True)
        .first()
    )
    if taken is not None:
        raise ParticipantError(
            ParticipantErrorCode.NAME_TAKEN,
            f"An organization named {taken} already exists: choose another name.",
            field="name",
        )


def _username_taken_check(username: str) -> None:
    # Case-insensitive: "Alice" and "alice" would be two users nobody tells apart.
    if get_user_model().objects.filter(username__iexact=username).exists():
        raise ParticipantError(
            ParticipantErrorCode.USERNAME_TAKEN,
            f"The user name {username} is taken.",
            field="username",
        )


def _password_check(*, password: str, username: str, email: str) -> None:
    # The validators compare the password with the user's other attributes, so they get an
    # unsaved user carrying the name and email being signed up.
    candidate = get_user_model()(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as error:
        raise ParticipantError(
            ParticipantErrorCode.PASSWORD_INVALID, " ".join(error.messages), field="password"
        ) from error


def member_invite(
    *,
    organization: Organization,
    username: str,
    email: str,
    password: str,
    role: str,
    actor: User,
) -> Membership:
    """A new user made a member of ``organization`` by one of its traders, with a first
    password to hand over. Refusals are ``ParticipantError`` naming the field (``username``,
    ``email``, ``password`` or ``role``), as at sign-up; nothing is written then."""
    if role not in Membership.Role.values:
        raise ParticipantError(
            ParticipantErrorCode.ROLE_INVALID, f"{role!r} is not a role.", field="role"
        )
    _username_and_email_check(username=username, email=email)
    _username_taken_check(username)
    _password_check(password=password, username=username, email=email)
    try:
        with transaction.atomic():
            return member_add(
                organization=organization,
                username=username,
                email=email,
                password=password,
                role=role,
                actor=actor,
            )
    except IntegrityError:
        _username_taken_check(username)  # Another request took the name meanwhile.
        raise


@transaction.atomic
def member_role_set(*, membership: Membership, role: str, actor: User) -> Membership:
    """Make a member a trader or a viewer. An organization keeps at least one trader, so its
    last trader cannot become a viewer (``PARTICIPANT_LAST_TRADER``)."""
    if role not in Membership.Role.values:
        raise ParticipantError(
            ParticipantErrorCode.ROLE_INVALID, f"{role!r} is not a role.", field="role"
        )
    # The organization's memberships locked together: two traders demoting each other at once
    # cannot leave it without one.
    locked = {
        row.pk: row
        for row in Membership.objects.select_for_update()
        .filter(organization_id=membership.organization_id)
        .order_by("pk")
    }
    current = locked[membership.pk]
    if current.role == role:
        return current
    traders = sum(1 for row in locked.values() if row.role == Membership.Role.TRADER)
    if current.role == Membership.Role.TRADER and traders <= 1:
        raise ParticipantError(
            ParticipantErrorCode.LAST_TRADER,
            "The organization's last trader cannot become a viewer: make another member a "
            "trader first.",
            field="role",
        )
    before = current.role
    current.role = role
    current.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="membership.role",
        target=current,
        before={"role": before},
        after={"role": role},
    )
    return current
