"""Staff actions of the back office: role grants, margin call reviews, order cancels and API
key revocations by staff, and edits made in the admin's forms.

Each writes its audit row (who, what, before, after) in the transaction of the change, except
where the change must commit on its own first (an order cancel: see ``order_staff_cancel``).
A margin call review's row is written by the review itself (``margin_call_review``), as the
scheduled review's is.

Margin call reviews need the risk role, order cancels and key revocations the operations role,
and role grants a superuser, checked here whoever calls (``exchange.backoffice.roles.StaffGate``);
the system (no actor) may do each of them.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction

from exchange.backoffice.roles import (
    ORDER_STAFF,
    RISK_STAFF,
    ROLES_CACHE_ATTRIBUTE,
    ROLES_STAFF,
    Role,
)
from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import ApiKey, AuditEntry, CancelReason, MarginCall, Order
from exchange.services.api_keys import api_key_revoke
from exchange.services.audit import audit_record
from exchange.services.orders import order_cancel
from exchange.services.risk_cycle import margin_call_review

REDACTED = "(redacted)"
SECRET_FIELD_MARKERS = ("password", "secret", "token")


def staff_roles_grant(*, user: Any, roles: Iterable[Role], actor: User | None) -> frozenset[Role]:
    """Give ``user`` the back-office ``roles`` (their groups) on top of those it has; the user
    becomes staff. Idempotent: granting roles already held writes nothing.

    Only a superuser grants roles (``STAFF_NOT_STAFF``, ``STAFF_SUPERUSER_REQUIRED``), or the
    system (no actor: the demo's seed): staff with a role could otherwise give themselves or
    anyone every other."""
    ROLES_STAFF.check(actor, "grant back-office roles")
    wanted = {Role(role) for role in roles}
    with transaction.atomic():
        groups = {}
        for role in sorted(wanted):
            groups[role], _ = Group.objects.get_or_create(name=role)
        before = set(user.groups.filter(name__in=list(Role)).values_list("name", flat=True))
        missing = wanted - {Role(name) for name in before}
        if not missing and user.is_staff:
            return frozenset(Role(name) for name in before)
        was_staff = user.is_staff
        if not was_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        user.groups.add(*(groups[role] for role in sorted(missing)))
        after = sorted(before | {str(role) for role in missing})
        audit_record(
            actor=actor,
            action="staff.roles_grant",
            target=user,
            before={"is_staff": was_staff, "roles": sorted(before)},
            after={"is_staff": True, "roles": after},
        )
    if hasattr(user, ROLES_CACHE_ATTRIBUTE):
        delattr(user, ROLES_CACHE_ATTRIBUTE)
    return frozenset(Role(name) for name in after)


def margin_call_staff_review(*, call: MarginCall, actor: User | None) -> MarginCall:
    """Staff review a margin call: top up the margin from cash, cure the call if covered (see
    ``margin_call_review``), which records what it changed under ``actor``'s name, with the
    call's figures before and after (micro-USD).

    A review that changed nothing (no cash to top up with, or a call no longer open) writes no
    audit row, as ``margin_call_review`` writes nothing then: a row with the same figures before
    and after records no change, only noise in the log. The admin tells staff what came of it.
    """
    RISK_STAFF.check(actor, "review margin calls")
    return margin_call_review(call, actor=actor)


def order_staff_cancel(*, order: Order, actor: User | None, reason: str = "") -> Order:
    """Staff cancel a customer's order through the matcher, then record it with why (the
    admin's confirmation asks for the reason).

    ``order_cancel`` commits its command in a transaction of its own (an accepted command is a
    committed one), so the audit row follows in a second; the command itself names who asked.
    """
    ORDER_STAFF.check(actor, "cancel customers' orders")
    before = {"status": order.status, "filled_quantity": order.filled_quantity}
    cancelled = order_cancel(order=order, requested_by=actor, reason=CancelReason.STAFF)
    audit_record(
        actor=actor,
        action="order.cancel",
        target=cancelled,
        before=before,
        after={"status": cancelled.status, "filled_quantity": cancelled.filled_quantity},
        reason=reason.strip(),
    )
    return cancelled


def api_key_staff_revoke(*, key: ApiKey, actor: User | None, reason: str) -> ApiKey:
    """Staff revoke a customer's API key (one leaked, or a program running wild), at once, as
    its organization's traders can (``api_key_revoke``), with why in the audit row. The
    operations role (``ORDER_NOT_STAFF``, ``ORDER_ROLE_REQUIRED``): the key's orders are that
    role's to cancel too. A reason is required (``ORDER_REASON_REQUIRED``); both are checked
    before anything is written. A key revoked already is left as it is, with no second row."""
    ORDER_STAFF.check(actor, "revoke customers' API keys")
    if not reason.strip():
        raise OrderRejected(
            OrderRejectCode.REASON_REQUIRED, "Give a reason for the revocation.", field="reason"
        )
    return api_key_revoke(key=key, actor=actor, reason=reason.strip())


def _jsonable(value: Any) -> Any:
    """A form value as JSON: models by primary key, files by name, the rest as Django's
    encoder writes it (Decimal and dates as strings)."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, models.QuerySet | list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if hasattr(value, "name") and hasattr(value, "read"):
        return value.name
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _field_value(field: str, values: Mapping[str, Any]) -> Any:
    if any(marker in field.lower() for marker in SECRET_FIELD_MARKERS):
        return REDACTED
    return _jsonable(values.get(field))


def admin_changes(
    fields: Iterable[str], before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``fields`` a form reports changed, as JSON, before (None: an addition) and after.

    Fields whose value is the same before and after are left out (a form may call a field
    changed when only its text differs, as JSON does); secrets are redacted.
    """
    if before is None:
        return {}, {field: _field_value(field, after) for field in fields}
    old = {field: _field_value(field, before) for field in fields}
    new = {field: _field_value(field, after) for field in fields}
    changed = [field for field in fields if old[field] != new[field] or old[field] == REDACTED]
    return {field: old[field] for field in changed}, {field: new[field] for field in changed}


def admin_edit_record(
    *,
    actor: User | None,
    action: str,
    target: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """The audit row of an add, change or delete made in an admin form (the caller's
    transaction: the admin's own)."""
    return audit_record(actor=actor, action=action, target=target, before=before, after=after)
