"""Helpers shared by the exchange tests."""

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from itertools import pairwise

import pytest
from django.db import connection
from django.utils import timezone

from exchange import calendar
from exchange.models import Order, OrderCommand, OrderRejection, OrderTransition, Trade
from exchange.services.orders import order_place


def staff_user(username: str, *roles):
    """An active staff user with these back-office roles (none: staff without a role)."""
    from django.contrib.auth import get_user_model

    from exchange.services.staff import staff_roles_grant

    user = get_user_model().objects.create_user(username=username, is_staff=True)
    if roles:
        staff_roles_grant(user=user, roles=roles, actor=None)
    return user


def place(account, instrument, side, quantity, price=None, **options) -> Order:
    """``order_place`` with the price given as a string ("2.45") or None for market orders."""
    return order_place(
        account=account,
        instrument=instrument,
        side=side,
        quantity=quantity,
        price=Decimal(price) if price is not None else None,
        **options,
    )


def listing_month() -> date:
    """A delivery month whose future trades for weeks yet, whatever today's date.

    The month after next: next month's future stops trading on the last business day of this
    month, which may already have passed at a month's end.
    """
    return calendar.add_months(calendar.month_start(timezone.now().date()), 2)


def resale_month_after(now: datetime) -> datetime:
    """The first month start a resale listing made at ``now`` could sell from during a term:
    more than a day ahead (``listing.resale_next_term``)."""
    month = calendar.add_months(calendar.month_start(now.astimezone(UTC).date()), 1)
    starts_at = datetime.combine(month, dtime.min, tzinfo=UTC)
    if starts_at - timedelta(days=1) <= now:
        starts_at = datetime.combine(calendar.add_months(month, 1), dtime.min, tzinfo=UTC)
    return starts_at


def resale_start_after(now: datetime, term_starts_at: datetime | None = None) -> datetime:
    """The first hour a resale listing made at ``now`` could sell from during a term (begun, or
    beginning at ``term_starts_at`` within a day): a day's start (00:00 UTC) more than a day
    ahead in the month under way (``now``'s, or the term's first), else the first month's start
    more than a day ahead (``listing.resale_next_term``)."""
    after = max(now, term_starts_at or now).astimezone(UTC).date()
    day = after + timedelta(days=1)
    while day.month == after.month:
        starts_at = datetime.combine(day, dtime.min, tzinfo=UTC)
        if starts_at - timedelta(days=1) > now:
            return starts_at
        day += timedelta(days=1)
    return resale_month_after(now)


def ending_before_any_resale_start(
    now: datetime, ends_at: datetime, term_starts_at: datetime | None = None
) -> datetime:
    """``ends_at``, or earlier if the first hour a resale listing made at ``now`` could sell
    from comes before it: a block started (or starting within a day, at ``term_starts_at``) and
    ending then has nothing left to list, whatever the day of the month the test runs on."""
    return min(ends_at, resale_start_after(now, term_starts_at))


@dataclass(frozen=True)
class RowCounts:
    orders: int
    commands: int
    transitions: int
    trades: int
    rejections: int

    @classmethod
    def now(cls) -> "RowCounts":
        return cls(
            orders=Order.objects.count(),
            commands=OrderCommand.objects.count(),
            transitions=OrderTransition.objects.count(),
            trades=Trade.objects.count(),
            rejections=OrderRejection.objects.count(),
        )


ORDER_STATE_FIELDS = (
    "status",
    "reject_code",
    "price",
    "quantity",
    "filled_quantity",
    "cancelled_quantity",
    "filled_notional",
    "priority_sequence",
)


def order_state(order: Order) -> dict:
    return {name: getattr(order, name) for name in ORDER_STATE_FIELDS}


def assert_as_stored(order: Order) -> None:
    """What a service returned is what the database holds."""
    assert order_state(order) == order_state(Order.objects.get(pk=order.pk))


def status_path(order: Order) -> list[str]:
    """The statuses an order went through, from its recorded transitions.

    Starts with the status the matcher found (NEW); the creation record, if any, is checked on
    its own.
    """
    rows = list(OrderTransition.objects.filter(order=order).exclude(from_status="").order_by("id"))
    for previous, current in pairwise(rows):
        assert current.from_status == previous.to_status, f"broken chain {previous} / {current}"
    return [rows[0].from_status, *(row.to_status for row in rows)] if rows else []


def book_key(resting) -> tuple:
    return (
        resting.order_id,
        resting.account,
        str(resting.side),
        resting.price,
        resting.qty,
        str(resting.tif),
        str(resting.stp),
        resting.expires_at,
        resting.post_only,
        resting.stp_group,
    )


def database_book(instrument_id: int) -> list[tuple]:
    """The book as a freshly started matcher rebuilds it from the database, in priority order."""
    from exchange.matcher.runtime import Matcher
    from exchange.models import Instrument

    matcher = Matcher()
    matcher.rebuild(Instrument.objects.get(pk=instrument_id))
    return matcher_book(matcher, instrument_id)


def matcher_book(matcher, instrument_id: int) -> list[tuple]:
    """The book a matcher holds in memory, in priority order."""
    return [book_key(resting) for resting in matcher.engine.book(instrument_id).orders()]


def assert_consistent(*instrument_ids: int) -> None:
    """Orders and trades agree, and the inline matcher's books are the database's books."""
    from exchange.matcher import inline
    from exchange.selectors.integrity import order_book_problems

    assert order_book_problems() == []
    for instrument_id in instrument_ids:
        assert matcher_book(inline._matcher, instrument_id) == database_book(instrument_id)


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL the default connection runs inside the block. Unlike Django's
    ``CaptureQueriesContext`` it does not read the debug log, which stops growing once it holds
    9,000 queries (a long test's fixtures can fill it) and then captures nothing."""
    run: list[str] = []

    def record(execute, sql, params, many, context):
        run.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server of the test's own, on a free port; its URL (skipped without Redis)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=5)


@contextmanager
def matching_in_thread(matcher, *, delay_seconds: float = 0.0) -> Iterator[None]:
    """Run ``matcher``'s production step in a thread of its own (as ``run_matcher`` would in
    its process) while the body waits for outcomes; stop it after. ``delay_seconds``: the
    matcher starts that late, as a busy one would, so the body has to wait for it."""
    stop = threading.Event()

    def match() -> None:
        try:
            stop.wait(delay_seconds)
            while not stop.is_set():
                matcher.process_pending()
                stop.wait(0.01)
        finally:
            connection.close()  # This thread's own connection.

    worker = threading.Thread(target=match)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(5)
