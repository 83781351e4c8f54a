"""Staff roles: which back-office functions a staff user may use.

A role is a Django group of the same name (migration 0008 creates them). Superusers have every
role; a user who is not active staff has none, whatever groups they are in.

- operations: trading status (halt, resume), listings, orders;
- risk: settlement prices, the daily cycle (settlement and expiry), margin calls and
  liquidation, open interest and exposure;
- finance: deposits and withdrawals, the trial balance.

Every role sees the dashboard and the audit log.

The services of each function check the role themselves, whoever calls them (the admin, a
back-office page, a shell): ``StaffGate`` below, one per family of error codes.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url

from exchange.errors import (
    CatalogError,
    CatalogErrorCode,
    ExchangeError,
    FundingError,
    FundingErrorCode,
    OrderRejectCode,
    OrderRejected,
    RiskError,
    RiskErrorCode,
    StaffError,
    StaffErrorCode,
)


class Role(StrEnum):
    OPERATIONS = "operations"
    RISK = "risk"
    FINANCE = "finance"


ALL_ROLES = tuple(Role)
ROLES_CACHE_ATTRIBUTE = "_backoffice_roles"


def roles_of(user: Any) -> frozenset[Role]:
    """The user's roles, read once per user object (a request's user lives for the request)."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return frozenset()
    cached = getattr(user, ROLES_CACHE_ATTRIBUTE, None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(Role)
        else:
            names = set(user.groups.filter(name__in=list(Role)).values_list("name", flat=True))
            cached = frozenset(Role(name) for name in names)
        setattr(user, ROLES_CACHE_ATTRIBUTE, cached)
    return cached


def has_any_role(user: Any, roles: Iterable[Role]) -> bool:
    return not roles_of(user).isdisjoint(roles)


def role_required(
    *roles: Role,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Active staff with one of ``roles``: else the admin's sign-in page (anonymous users and
    members who are not staff) or 403 (staff without the role)."""
    assert roles, "name the roles that open the view"

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not (user.is_authenticated and user.is_active and user.is_staff):
                return redirect_to_login(request.get_full_path(), resolve_url("admin:login"))
            if not has_any_role(user, roles):
                names = " or ".join(str(role) for role in roles)
                message = f"This back-office page needs the {names} role."
                return render(request, "exchange/forbidden.html", {"message": message}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


@dataclass(frozen=True)
class StaffGate:
    """Who may call a family of staff services: active staff with ``role`` (superusers have
    every role; ``role`` None: superusers only), or the system (``actor`` None: scheduled
    tasks, management commands) unless ``system_allowed`` is false. A refusal is ``error``
    with the family's code: ``not_staff`` for a user who is not active staff (anonymous users
    included), ``role_missing`` for staff without the role (or not superusers). It is checked
    before anything is written."""

    role: Role | None
    error: Callable[[StrEnum, str], ExchangeError]
    not_staff: StrEnum
    role_missing: StrEnum
    system_allowed: bool = True

    def check(self, actor: Any, action: str) -> None:
        """Refuse ``actor`` unless it may ``action`` (a verb phrase: "halt trading")."""
        if actor is None and self.system_allowed:
            return
        if actor is None or not (actor.is_authenticated and actor.is_active and actor.is_staff):
            raise self.error(self.not_staff, f"Only staff {action}.")
        if self.role is None:
            if not actor.is_superuser:
                raise self.error(self.role_missing, f"Only superusers {action}.")
        elif self.role not in roles_of(actor):
            raise self.error(self.role_missing, f"Only staff with the {self.role} role {action}.")

    def allows(self, actor: Any) -> bool:
        """Whether ``check`` lets ``actor`` through (the admin's permissions ask)."""
        try:
            self.check(actor, "")
        except ExchangeError:
            return False
        return True


# Trading status and listings (instrument_set_status, listings_roll and the listing services).
CATALOG_STAFF = StaffGate(
    Role.OPERATIONS, CatalogError, CatalogErrorCode.NOT_STAFF, CatalogErrorCode.ROLE_REQUIRED
)
# Customers' orders cancelled by staff (order_staff_cancel).
ORDER_STAFF = StaffGate(
    Role.OPERATIONS, OrderRejected, OrderRejectCode.NOT_STAFF, OrderRejectCode.ROLE_REQUIRED
)
# Settlement prices, the daily cycle, margin calls and liquidation.
RISK_STAFF = StaffGate(Role.RISK, RiskError, RiskErrorCode.NOT_STAFF, RiskErrorCode.ROLE_REQUIRED)
# Granting back-office roles (staff_roles_grant; the user and group admin): a role opens a
# family of services, so only a superuser, who has them all, gives one (or the system: the demo).
ROLES_STAFF = StaffGate(
    None, StaffError, StaffErrorCode.NOT_STAFF, StaffErrorCode.SUPERUSER_REQUIRED
)
# Withdrawal reviews: money leaves the exchange on a person's decision, never the system's.
FUNDING_STAFF = StaffGate(
    Role.FINANCE,
    FundingError,
    FundingErrorCode.NOT_STAFF,
    FundingErrorCode.NOT_FINANCE,
    system_allowed=False,
)
