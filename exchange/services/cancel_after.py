"""Cancel-all-after: an account's dead man's switch.

An automated trader arms the switch with a timeout and arms it again, every few seconds, for as
long as it is alive and connected. If it stops (a crash, a lost connection, a hung process), the
timeout runs out and every live order of its account is cancelled, so its quotes do not stay in
the book at prices it no longer watches. Timeout 0 disarms; a switch that fired is disarmed.

The switches that ran out are fired by ``cancel_all_after_fire_due``, which Celery beat runs every
second (``run_schedule`` in the embedded mode): orders go at most about a second after the time.
"""

import logging
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from exchange.errors import OrderRejectCode, OrderRejected
from exchange.models import Account, CancelAllTimer, CancelReason
from exchange.selectors import orders as orders_selector
from exchange.services.orders import orders_cancel

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS_MIN = 5  # Shorter than a few sweeps would fire late relative to the timeout.
TIMEOUT_SECONDS_MAX = 24 * 60 * 60


def cancel_all_after_set(
    *,
    account: Account,
    timeout_seconds: int,
    armed_by: User | None = None,
    now: datetime | None = None,
) -> CancelAllTimer | None:
    """Arm (or arm again) the account's switch to fire ``timeout_seconds`` from now; 0
    disarms it. Returns the armed switch, or None once disarmed.

    A switch whose time has passed fires here first, even if the sweep has not come yet: the
    trader arming it again was too late, and its orders go. Then the switch is armed anew."""
    whole = isinstance(timeout_seconds, int) and not isinstance(timeout_seconds, bool)
    if not whole or not (
        timeout_seconds == 0 or TIMEOUT_SECONDS_MIN <= timeout_seconds <= TIMEOUT_SECONDS_MAX
    ):
        raise OrderRejected(
            OrderRejectCode.CANCEL_AFTER_TIMEOUT_INVALID,
            f"The timeout is 0 (disarm) or {TIMEOUT_SECONDS_MIN} to {TIMEOUT_SECONDS_MAX} seconds.",
            field="timeout_seconds",
        )
    now = now or timezone.now()
    late = (
        CancelAllTimer.objects.filter(account=account, fires_at__lte=now)
        .values_list("fires_at", flat=True)
        .first()
    )
    if late is not None:  # Its time came before this call: the orders go, as the sweep's would.
        _fire(account, late)
    if timeout_seconds == 0:
        CancelAllTimer.objects.filter(account=account).delete()
        return None
    user = armed_by if armed_by is not None and armed_by.is_authenticated else None
    timer, _ = CancelAllTimer.objects.update_or_create(
        account=account,
        defaults={
            "timeout_seconds": timeout_seconds,
            "fires_at": now + timedelta(seconds=timeout_seconds),
            "armed_at": now,
            "armed_by": user,
        },
    )
    return timer


def cancel_all_after_fire_due(*, now: datetime | None = None) -> int:
    """Fire every switch whose time has come: ask for the cancel of each live order of its
    account, then disarm it. Returns how many switches fired. One that fails is logged and
    left armed for the next sweep; the others fire.

    The cancels are asked for before the switch is disarmed, so a switch is never lost with
    orders left live: after a crash in between, the next sweep finds it again.
    """
    now = now or timezone.now()
    due = list(CancelAllTimer.objects.filter(fires_at__lte=now).select_related("account"))
    fired = 0
    for timer in due:
        try:
            _fire(timer.account, timer.fires_at)
        except Exception:  # One account's failure must not keep the others' orders live.
            logger.exception(
                "cancel-all-after: account #%s did not fire; next sweep", timer.account_id
            )
        else:
            fired += 1
    return fired


def _fire(account: Account, fires_at: datetime) -> None:
    """Cancel the account's orders that were live at ``fires_at`` (as cancel-all does), then
    disarm its switch if it still has this time (armed again meanwhile, it keeps its new time).

    Orders placed after the switch's time are the trader's, alive again: a sweep that read the
    switch due, then fired it after the trader had armed it again (which fires a late switch
    itself) and quoted anew, cancelled those new quotes too until 2026-12-07."""
    orders_cancel(
        orders=orders_selector.orders_of(account, status=orders_selector.STATUS_LIVE).filter(
            created_at__lt=fires_at
        ),
        reason=CancelReason.CANCEL_ALL_AFTER,
    )
    CancelAllTimer.objects.filter(account=account, fires_at=fires_at).delete()
