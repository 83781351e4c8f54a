"""Who is signed in, for which organization, and what their role lets them do.

Every page of the trading UI acts for one organization: the signed-in user's membership (the
first by organization slug when a user belongs to several). Traders trade, fund and manage keys;
viewers read. A page that writes checks the role with ``trader_required`` and answers 403 to a
viewer, so a viewer's browser cannot place an order by posting the form by hand.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from exchange.models import Account, Membership
from exchange.services.participants import account_main


def signed_in_user(request: HttpRequest) -> User:
    """The user acting on a page that signed-out visitors never reach (``login_required``,
    ``trader_required``, or a check of ``is_authenticated`` first)."""
    user = request.user
    assert not isinstance(user, AnonymousUser), "the view lets signed-in users only"
    return user


def membership_of(request: HttpRequest) -> Membership:
    """The signed-in user's membership the pages act for; 404 for a user of no organization."""
    membership = (
        Membership.objects.filter(user=signed_in_user(request))
        .select_related("organization")
        .order_by("organization__slug")
        .first()
    )
    if membership is None:
        raise Http404("Not a member of any organization.")
    return membership


def trading_account_of(membership: Membership) -> Account:
    """The organization's main trading account: where the web UI places orders and funds."""
    return account_main(membership.organization)


def can_trade(membership: Membership) -> bool:
    return membership.role == Membership.Role.TRADER


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "exchange/forbidden.html", {"message": message}, status=403)


def trader_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in, a member, and a trader: else the sign-in page, 404 or 403.

    The view receives the membership as ``membership``.
    """

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = membership_of(request)
        if not can_trade(membership):
            return forbidden(request, "Your role is viewer: only traders do this.")
        return view(request, *args, membership=membership, **kwargs)

    return wrapped
