"""Staff roles: which back-office functions a staff user may use.

A role is a Django group of the same name (migration 0008 creates them). Superusers have every
role; a user who is not active staff has none, whatever groups they are in.

- operations: trading status (halt, resume), listings, orders;
- risk: settlement prices, the daily cycle (settlement and expiry), margin calls and
  liquidation, open interest and exposure;
- finance: deposits and withdrawals, the trial balance.

Every role sees the dashboard and the audit log.
"""

from collections.abc import Callable, Iterable
from enum import StrEnum
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url


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
