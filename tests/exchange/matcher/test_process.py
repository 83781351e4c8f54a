"""The external matcher loop (``run_matcher``)."""

import signal
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from exchange.matcher.lease import ShardTaken, shard_lease
from exchange.matcher.process import MatcherLoop
from exchange.models import Order, OrderCommand, Trade
from exchange.services.orders import order_place


@pytest.mark.django_db(transaction=True)
def test_matcher_loop_owns_its_shard_and_processes_pending_commands(
    var_dir, external_matcher, future, buyer, seller
):
    # given orders accepted while no matcher runs
    bid = order_place(
        account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5
    )
    order_place(account=seller, instrument=future, side="sell", price=Decimal("2.45"), quantity=3)

    # when
    processed = MatcherLoop(shard=0, shards=1).run(passes_max=2)

    # then
    assert processed == 2
    assert not OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).exists()
    assert Order.objects.get(pk=bid.pk).status == Order.Status.PARTIALLY_FILLED
    assert Trade.objects.get().quantity == 3
    # and the lease was released
    lease = shard_lease(0, 1)
    lease.acquire()
    lease.release()


@pytest.mark.django_db(transaction=True)
def test_matcher_loop_does_not_start_on_a_taken_shard(
    _signal_handlers, var_dir, external_matcher, future, buyer
):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5)
    held = shard_lease(0, 1)
    held.acquire()
    try:
        with pytest.raises(ShardTaken):
            MatcherLoop(shard=0, shards=1).run(passes_max=1)
        with pytest.raises(CommandError, match="owned by another matcher"):
            call_command("run_matcher", "--seconds", "0.1")
    finally:
        held.release()

    assert OrderCommand.objects.get().status == OrderCommand.Status.PENDING


@pytest.fixture
def _signal_handlers():
    """``run_matcher`` installs SIGTERM/SIGINT handlers; give pytest its own back."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.django_db(transaction=True)
def test_run_matcher_command_matches_and_stops(
    _signal_handlers, var_dir, external_matcher, future, buyer, capsys
):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5)

    call_command("run_matcher", "--seconds", "0.2", "--wait", "0.05")

    assert Order.objects.get().status == Order.Status.OPEN
    assert "matcher 0/1 stopped after 1 commands" in capsys.readouterr().out


def test_run_matcher_refuses_a_shard_outside_the_count():
    with pytest.raises(CommandError):
        call_command("run_matcher", "--shard", "2", "--shards", "2")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--wait", "-1"], "--wait must be more than 0 seconds, not -1.0."),
        (["--wait", "0"], "--wait must be more than 0 seconds, not 0.0."),
        (["--wait", "nan"], "--wait must be more than 0 seconds, not nan."),
        (["--seconds", "-1"], "--seconds must be 0 or more, not -1.0."),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_run_matcher_refuses_a_wait_or_run_time_out_of_range_before_matching(
    _signal_handlers, var_dir, external_matcher, future, buyer, arguments, message
):
    order_place(account=buyer, instrument=future, side="buy", price=Decimal("2.45"), quantity=5)

    with pytest.raises(CommandError) as raised:
        call_command("run_matcher", "--seconds", "0.2", *arguments)

    assert str(raised.value) == message
    assert OrderCommand.objects.get().status == OrderCommand.Status.PENDING
