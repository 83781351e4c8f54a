"""Celery tasks. Each is a thin wrapper over a service, also reachable as a command."""

from datetime import date

from celery import shared_task
from django.conf import settings

from exchange.errors import RiskError, RiskErrorCode
from exchange.services.cancel_after import cancel_all_after_fire_due
from exchange.services.capacity import entitlements_retire
from exchange.services.listing import listings_roll
from exchange.services.notices import notice_email as notice_email_service
from exchange.services.notices import notices_email_unsent as notices_email_unsent_service
from exchange.services.pools import pools_run_due as pools_run_due_service
from exchange.services.risk_cycle import daily_settlement_run, margin_calls_review
from exchange.services.settlement_prices import last_closed_day
from ledger.services import holds_expire


@shared_task
def orders_expire_due() -> int:
    """Apply GTD expiries on books nobody is trading (the inline matcher expires lazily)."""
    if settings.EXCHANGE_MATCHER_MODE != "inline":
        return 0  # External matchers expire orders in their own loop.
    from exchange.matcher import inline

    return inline.process_pending()


@shared_task
def orders_cancel_all_after_due() -> int:
    """Fire the cancel-all-after switches whose time has come; return how many fired."""
    return cancel_all_after_fire_due()


@shared_task
def instruments_list_upcoming() -> int:
    """Roll the listings forward (``listings_roll``); return how many instruments were listed."""
    return len(listings_roll())


@shared_task
def entitlements_retire_ended() -> dict[str, int]:
    """Retire the GPU-hours of months that have ended (``entitlements_retire``); return the
    GPU-hours retired by commodity."""
    return {retired.commodity: retired.gpu_hours for retired in entitlements_retire()}


@shared_task
def ledger_holds_expire() -> int:
    """Release ledger holds whose expiry has passed."""
    return holds_expire()


@shared_task
def risk_daily_settlement(trading_date: str | None = None) -> dict[str, str]:
    """Settle a trading day (default: the latest business day whose close has passed, today
    after the close), after its close; idempotent."""
    day = date.fromisoformat(trading_date) if trading_date else last_closed_day()
    try:
        cycle = daily_settlement_run(trading_date=day)
    except RiskError as error:
        # The schedule's own day on an exchange that has listed nothing yet (or only since):
        # there is nothing to settle, which is not a failure to log every business day. A day
        # asked for by name is refused as the command and the admin refuse it.
        if trading_date or error.code != RiskErrorCode.DAY_BEFORE_LISTING:
            raise
        return {"trading_date": day.isoformat(), "status": "before_listing"}
    return {"trading_date": day.isoformat(), "status": cycle.status}


@shared_task
def risk_margin_calls_review() -> int:
    """Top up accounts under a margin call from their cash; return how many were cured."""
    return margin_calls_review()


@shared_task
def pools_run_due() -> dict[str, int]:
    """Pool cut-offs whose time has come, rounds to close and allocate (``pools_run_due``)."""
    return pools_run_due_service()


# A mail server that refuses or does not answer (smtplib's errors are OSErrors): tried again,
# waiting longer each time, for about a day; the notice stays unsent (``emailed_at`` null)
# meanwhile and ``notices_email_unsent`` sweeps up any whose task was lost.
@shared_task(
    autoretry_for=(OSError,),
    retry_backoff=30,
    retry_backoff_max=60 * 60,
    retry_jitter=True,
    max_retries=30,
)
def notice_email(notice_id: int) -> int:
    """Email one notice to its organization's members; return how many were sent."""
    return notice_email_service(notice_id)


@shared_task
def notices_email_unsent() -> int:
    """Email the notices whose task was lost (the broker down at their commit); return how
    many notices were emailed."""
    return notices_email_unsent_service()
