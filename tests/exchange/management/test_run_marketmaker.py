"""The demo market maker (``run_marketmaker``) against a live server on the demo market: it
quotes both sides through the REST API, takes now and then, withdraws its quotes when it stops
(Ctrl-C or SIGTERM, as ``make run`` sends), leaves its organization's other orders alone, quotes
a one-sided or empty book, and waits out a rate limit."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import exchange_client.client as client_module
from exchange import calendar
from exchange.api import throttling, trading
from exchange.management.commands import run_marketmaker
from exchange.models import (
    LIVE_STATUSES,
    CancelAllTimer,
    Instrument,
    Order,
    Organization,
    Trade,
)
from exchange.models.orders import CancelReason
from exchange.services import cancel_after
from exchange.services.api_keys import api_key_create
from exchange.services.orders import orders_cancel

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "helix"


@pytest.fixture
def demo_market():
    call_command("seed_demo", stdout=StringIO())
    return Organization.objects.get(slug=ORG)


def run(url: str, **options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("run_marketmaker", url=url, org=ORG, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_it_quotes_both_sides_through_the_api_and_withdraws_at_the_end(
    live_server, demo_market, monkeypatch
):
    armed: list[int] = []
    arm = cancel_after.cancel_all_after_set
    monkeypatch.setattr(
        cancel_after,
        "cancel_all_after_set",
        lambda **kwargs: armed.append(kwargs["timeout_seconds"]) or arm(**kwargs),
    )
    before = set(
        Order.objects.filter(account__organization=demo_market).values_list("pk", flat=True)
    )
    trades_before = Trade.objects.count()

    out, err = run(live_server.url, rounds=3, interval=0, seed=11)

    quotes = Order.objects.filter(account__organization=demo_market, post_only=True).exclude(
        pk__in=before
    )
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    placed = sum(int(line.split(": ")[1].split(" quotes")[0]) for line in rounds)
    taken = sum(int(line.split(", ")[1].split(" contracts")[0]) for line in rounds)
    assert "created API key" in err
    assert len(rounds) == 3
    assert placed > 0
    assert quotes.count() == placed
    # Both sides of every instrument it quoted, each pair a spread apart.
    for instrument_id in set(quotes.values_list("instrument_id", flat=True)):
        sides = set(quotes.filter(instrument_id=instrument_id).values_list("side", flat=True))
        assert sides == {"buy", "sell"}
    # Its takes traded against the market.
    assert taken > 0
    assert Trade.objects.count() > trades_before
    # Stopping withdrew every quote still resting, and disarmed the switch armed every round.
    assert not quotes.filter(status__in=LIVE_STATUSES).exists()
    assert not CancelAllTimer.objects.filter(account__organization=demo_market).exists()
    assert armed == [run_marketmaker.CANCEL_AFTER_SECONDS] * 3 + [0]


def live_futures_orders(organization=None):
    orders = Order.objects.filter(instrument__kind=Instrument.Kind.FUTURE, status__in=LIVE_STATUSES)
    if organization is not None:
        orders = orders.filter(account__organization=organization)
    return orders


def its_quotes(organization):
    return Order.objects.filter(
        account__organization=organization,
        client_order_id__startswith=run_marketmaker.CLIENT_ORDER_ID_PREFIX,
    )


def test_it_leaves_the_organizations_other_orders_alone(live_server, demo_market):
    """The opening quotes seed_demo placed for Helix, and its option quotes, stay live through
    its rounds and its stop: it cancels only the quotes it placed itself."""
    others = set(
        Order.objects.filter(
            account__organization=demo_market, status__in=LIVE_STATUSES
        ).values_list("pk", flat=True)
    )
    assert live_futures_orders(demo_market).filter(pk__in=others).exists()

    out, _ = run(live_server.url, rounds=3, interval=0, seed=11)

    assert "round 3:" in out
    assert its_quotes(demo_market).exists()
    still_live = Order.objects.filter(pk__in=others, status__in=LIVE_STATUSES)
    assert set(still_live.values_list("pk", flat=True)) == others
    # Its own quotes, and only those, were withdrawn.
    assert not its_quotes(demo_market).filter(status__in=LIVE_STATUSES).exists()


def test_a_second_run_quotes_again(live_server, demo_market):
    """Two runs one after the other (``make run`` twice): the second still quotes, every round."""
    run(live_server.url, rounds=2, interval=0, seed=11)

    out, _ = run(live_server.url, rounds=2, interval=0, seed=12)

    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2
    assert all(" 0 quotes" not in line for line in rounds)


def test_it_quotes_a_one_sided_book(live_server, demo_market):
    """With the organization's bids gone (the books hold only asks), it quotes both sides around
    the side there is, below the best ask and above it."""
    orders_cancel(orders=live_futures_orders(demo_market), reason=CancelReason.USER)
    assert not live_futures_orders().filter(side="buy").exists()
    best_ask = {
        instrument_id: min(
            live_futures_orders()
            .filter(instrument_id=instrument_id, side="sell")
            .values_list("price", flat=True)
        )
        for instrument_id in set(
            live_futures_orders().filter(side="sell").values_list("instrument_id", flat=True)
        )
    }

    out, _ = run(live_server.url, rounds=1, interval=0, seed=11, cancel_after=0)

    quotes = its_quotes(demo_market)
    assert int(out.split("round 1: ")[1].split(" quotes")[0]) == quotes.count() > 0
    for instrument_id in set(quotes.values_list("instrument_id", flat=True)):
        sides = dict(quotes.filter(instrument_id=instrument_id).values_list("side", "price"))
        assert set(sides) == {"buy", "sell"}
        if instrument_id in best_ask:
            assert sides["buy"] < best_ask[instrument_id]


def test_it_quotes_an_empty_book_around_the_last_trade(live_server, demo_market):
    """No order left on any future: it quotes those that traded around their last trade."""
    orders_cancel(orders=live_futures_orders(), reason=CancelReason.USER)
    traded = set(
        Trade.objects.filter(instrument__kind=Instrument.Kind.FUTURE).values_list(
            "instrument_id", flat=True
        )
    )
    assert traded

    run(live_server.url, rounds=3, interval=0, seed=11, cancel_after=0)

    quotes = its_quotes(demo_market)
    assert quotes.exists()
    for instrument_id in set(quotes.values_list("instrument_id", flat=True)):
        assert instrument_id in traded
        sides = set(quotes.filter(instrument_id=instrument_id).values_list("side", flat=True))
        assert sides == {"buy", "sell"}


def test_it_does_not_quote_a_future_whose_trading_ended(live_server, demo_market, settings):
    """On a future's last trading day, from the close on, its status is still active until the
    daily cycle expires it, but every quote on it would be refused (ORDER_INSTRUMENT_EXPIRED):
    it quotes the strip's next months instead."""
    # given every strip's front future stops trading today, and today's close has passed
    front = Instrument.objects.filter(kind=Instrument.Kind.FUTURE).order_by("delivery_start")[0]
    ended = Instrument.objects.filter(
        kind=Instrument.Kind.FUTURE, delivery_start=front.delivery_start
    )
    ended.update(last_trading_day=timezone.now().date())
    settings.EXCHANGE_SETTLEMENT_CLOSE = "00:00"

    out, err = run(live_server.url, rounds=3, interval=0, seed=11, cancel_after=0)

    # then it quoted, none of it on the ended futures, and nothing it sent was refused so
    quotes = its_quotes(demo_market)
    assert int(out.split("round 1: ")[1].split(" quotes")[0]) > 0
    assert quotes.exists()
    assert not quotes.filter(instrument__in=ended).exists()
    assert "ORDER_INSTRUMENT_EXPIRED" not in err
    assert set(ended.values_list("status", flat=True)) == {Instrument.Status.ACTIVE}


def test_when_a_quoted_futures_trading_ends_the_next_month_takes_its_place(
    live_server, demo_market, monkeypatch
):
    """A run that goes past a front future's close: from its next round it quotes the strip's
    next months, not the ended future (its clock is moved past the close after round 1)."""
    front = Instrument.objects.filter(kind=Instrument.Kind.FUTURE).order_by("delivery_start")[0]
    ended = Instrument.objects.filter(
        kind=Instrument.Kind.FUTURE, delivery_start=front.delivery_start
    )
    # (a second after it: the offset the run measures with its clock is a few ms either way)
    after_the_close = calendar.trading_ends_at(front.last_trading_day).timestamp() + 1
    first_round: list[int] = []

    def sleep(seconds: float) -> None:
        if not first_round:
            first_round.append(Order.objects.order_by("-pk").values_list("pk", flat=True)[0])

    # The client's clock (the exchange's time as it reads it) is past the close from round 2.
    clock = SimpleNamespace(time=lambda: after_the_close if first_round else time.time())
    monkeypatch.setattr(client_module, "time", clock)
    monkeypatch.setattr(run_marketmaker.time, "sleep", sleep)

    run(live_server.url, rounds=4, interval=0.01, seed=11, cancel_after=0)

    later = its_quotes(demo_market).filter(pk__gt=first_round[0])
    assert later.exists()
    assert not later.filter(instrument__in=ended).exists()


def test_it_reads_the_close_on_the_exchanges_clock_not_its_machines(
    live_server, demo_market, settings, monkeypatch
):
    """Its machine's clock an hour behind the exchange's: the front futures' close has passed on
    the exchange's clock and not yet on the machine's. It measures the offset at the start and
    quotes the next months, where quoting by its own clock every quote on the front months
    would be refused (ORDER_INSTRUMENT_EXPIRED)."""
    # given the front futures' trading ended a minute ago
    front = Instrument.objects.filter(kind=Instrument.Kind.FUTURE).order_by("delivery_start")[0]
    ended = Instrument.objects.filter(
        kind=Instrument.Kind.FUTURE, delivery_start=front.delivery_start
    )
    a_minute_ago = (timezone.now() - timedelta(minutes=1)).astimezone(UTC)
    ended.update(last_trading_day=a_minute_ago.date())
    settings.EXCHANGE_SETTLEMENT_CLOSE = a_minute_ago.strftime("%H:%M")
    close = calendar.trading_ends_at(a_minute_ago.date())
    assert close < timezone.now() < close + timedelta(minutes=2)
    # and the machine's clock an hour behind (as the client and the command would read it)
    behind = SimpleNamespace(time=lambda: time.time() - 3600)
    monkeypatch.setattr(client_module, "time", behind)

    class Behind(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) - timedelta(hours=1)

    monkeypatch.setattr(run_marketmaker, "datetime", Behind)

    _, err = run(live_server.url, rounds=2, interval=0, seed=11, cancel_after=0)

    quotes = its_quotes(demo_market)
    assert quotes.exists()
    assert not quotes.filter(instrument__in=ended).exists()
    assert "ORDER_INSTRUMENT_EXPIRED" not in err


def test_sigterm_withdraws_its_quotes_and_disarms_the_switch(live_server, demo_market, monkeypatch):
    """SIGTERM (``make run``'s trap) stops it as Ctrl-C does: its quotes are cancelled, the
    switch disarmed, the organization's other orders left, and the previous handler restored."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    handler = signal.getsignal(signal.SIGTERM)
    others = set(
        Order.objects.filter(
            account__organization=demo_market, status__in=LIVE_STATUSES
        ).values_list("pk", flat=True)
    )
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            # Quoting and armed: as `kill <pid>` between two rounds.
            assert its_quotes(demo_market).filter(status__in=LIVE_STATUSES).exists()
            assert CancelAllTimer.objects.filter(account__organization=demo_market).exists()
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run_marketmaker.time, "sleep", sleep)
    try:
        out, _ = run(live_server.url, rounds=5, interval=0.05, seed=11)
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert received == []  # Its handler took the signal, and stopped the rounds.
    assert [line for line in out.splitlines() if line.startswith("round ")] == [
        line for line in out.splitlines() if line.startswith("round 1:")
    ]
    assert "stopping" in out
    assert not its_quotes(demo_market).filter(status__in=LIVE_STATUSES).exists()
    assert not CancelAllTimer.objects.filter(account__organization=demo_market).exists()
    still_live = Order.objects.filter(pk__in=others, status__in=LIVE_STATUSES)
    assert set(still_live.values_list("pk", flat=True)) == others


def test_sigterm_during_a_placement_waits_for_its_answer_then_withdraws_the_quotes(
    live_server, demo_market, monkeypatch
):
    """SIGTERM while a request placing its quotes is in flight: it takes the answer, then
    withdraws. Stopping in the middle of the request instead cancelled quotes the server had
    not placed yet (not found), and the server then placed them: they stayed live."""
    submit = trading.orders_submit
    answered = threading.Event()

    def slow_submit(**kwargs):
        if not answered.is_set():
            # The first quotes: the signal reaches the market maker while it waits for them.
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
            time.sleep(0.5)
        try:
            return submit(**kwargs)
        finally:
            answered.set()

    monkeypatch.setattr(trading, "orders_submit", slow_submit)

    out, _ = run(live_server.url, rounds=5, interval=0, seed=11, cancel_after=0)

    assert answered.wait(10)
    assert "stopping" in out
    assert [line for line in out.splitlines() if line.startswith("round ")] == [
        line for line in out.splitlines() if line.startswith("round 1:")
    ]
    time.sleep(0.5)  # Long enough for a placement still running in the server to commit.
    assert its_quotes(demo_market).exists()
    assert not its_quotes(demo_market).filter(status__in=LIVE_STATUSES).exists()


def test_sigterm_to_its_process_withdraws_its_quotes_and_disarms_the_switch(
    live_server, demo_market
):
    """As ``make run`` runs it: its own process, stopped by the trap's ``kill``."""
    token = api_key_create(organization=demo_market, name="test", scopes=["read", "trade"]).token
    root = Path(run_marketmaker.__file__).resolve().parents[3]
    process = subprocess.Popen(
        [
            *(sys.executable, str(root / "manage.py"), "run_marketmaker"),
            *("--url", live_server.url, "--key", token, "--interval", "0.2", "--seed", "11"),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (
            its_quotes(demo_market).filter(status__in=LIVE_STATUSES).exists()
            and CancelAllTimer.objects.filter(account__organization=demo_market).exists()
        ):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert "stopping" in out
    assert not its_quotes(demo_market).filter(status__in=LIVE_STATUSES).exists()
    assert not CancelAllTimer.objects.filter(account__organization=demo_market).exists()


def test_it_waits_out_a_rate_limit(live_server, demo_market, monkeypatch):
    monkeypatch.setitem(throttling.PerKeyRateThrottle.THROTTLE_RATES, "key", "6/minute")
    waits: list[float] = []
    monkeypatch.setattr(run_marketmaker.time, "sleep", waits.append)

    _, err = run(live_server.url, rounds=1, interval=0, seed=11)

    assert "RATE_LIMITED" in err
    # The client waited out the refusal's Retry-After (up to a minute here), as long as the
    # market maker lets it each time, then tried again; not the rounds' interval (0).
    retries = [wait for wait in waits if wait > 0]
    assert retries
    assert all(wait == run_marketmaker.RATE_LIMIT_WAIT_MAX for wait in retries)


def test_it_refuses_an_organization_that_does_not_exist(live_server, db):
    with pytest.raises(CommandError, match="load the demo market"):
        call_command("run_marketmaker", url=live_server.url, org="nobody", rounds=1)


def test_it_refuses_a_switch_that_would_fire_between_two_rounds(db):
    """Refused before it connects: a switch shorter than three rounds would pull the quotes of a
    market maker that is only waiting for its next round."""
    with pytest.raises(CommandError, match="--cancel-after"):
        run("http://127.0.0.1:9", rounds=1, interval=5, cancel_after=10)


def test_it_skips_a_future_while_staff_halt_it_and_quotes_it_again_once_resumed(
    live_server, demo_market, monkeypatch
):
    """Staff halt a front future after round 1 and resume it after round 4; the run reads the
    statuses every 2 rounds here (rounds 3, 5, 7), and quotes every front month each round. It
    stops quoting the future at once (refused at most in round 2, before it read the halt: both
    sides of one request), and quotes it again once it reads the resume."""
    from exchange.services.instruments import instrument_halt, instrument_resume

    front = Instrument.objects.filter(kind=Instrument.Kind.FUTURE).order_by("delivery_start")[0]
    marks: dict[str, int] = {}
    pause = run_marketmaker.Command._pause
    rounds: list[int] = []

    def latest_order() -> int:
        return Order.objects.order_by("-pk").values_list("pk", flat=True)[0]

    def pause_then_staff_act(command, seconds: float) -> None:
        rounds.append(len(rounds) + 1)
        if rounds[-1] == 1:
            marks["halted"] = latest_order()
            instrument_halt(instrument=front, actor=None, reason="incident 7")
        if rounds[-1] == 4:
            marks["resumed"] = latest_order()
            instrument_resume(instrument=front, actor=None, reason="fixed")
        pause(command, seconds)

    monkeypatch.setattr(run_marketmaker, "STATUS_READ_ROUNDS", 2)
    monkeypatch.setattr(run_marketmaker, "FRONT_MONTHS", 1)
    monkeypatch.setattr(run_marketmaker, "QUOTED_PER_ROUND", 100)  # Each future every round.
    monkeypatch.setattr(run_marketmaker.Command, "_pause", pause_then_staff_act)

    # when it runs 7 rounds
    out, err = run(live_server.url, rounds=7, interval=0, seed=11, cancel_after=0)

    # then it quoted the future before the halt, said when it stopped and started again, was
    # refused as halted in one round at most, and quoted it again after the resume
    assert len(rounds) == 7
    quotes = its_quotes(demo_market).filter(instrument=front)
    assert quotes.filter(pk__lte=marks["halted"]).exists()
    refusals = [line for line in err.splitlines() if "ORDER_INSTRUMENT_HALTED" in line]
    assert len(refusals) <= 2 and all(front.symbol in line for line in refusals), err
    assert f"{front.symbol}: halted, not quoted until it resumes" in out
    assert f"{front.symbol}: trading again, quoted" in out
    assert quotes.filter(pk__gt=marks["resumed"]).exists()
