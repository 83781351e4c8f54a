"""The demo market maker (``run_marketmaker``) against a live server on the demo market: it
quotes both sides through the REST API, takes now and then, withdraws its quotes when it stops,
and waits out a rate limit."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from exchange.api import throttling
from exchange.management.commands import run_marketmaker
from exchange.models import LIVE_STATUSES, CancelAllTimer, Order, Organization, Trade
from exchange.services import cancel_after

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


def test_it_waits_out_a_rate_limit(live_server, demo_market, monkeypatch):
    monkeypatch.setitem(throttling.PerKeyRateThrottle.THROTTLE_RATES, "key", "6/minute")
    waits: list[float] = []
    monkeypatch.setattr(run_marketmaker.time, "sleep", waits.append)

    _, err = run(live_server.url, rounds=1, interval=0, seed=11)

    assert "RATE_LIMITED" in err
    assert any(0 < wait <= 60 for wait in waits)  # The refusal's Retry-After, not the interval.


def test_it_refuses_an_organization_that_does_not_exist(live_server, db):
    with pytest.raises(CommandError, match="load the demo market"):
        call_command("run_marketmaker", url=live_server.url, org="nobody", rounds=1)


def test_it_refuses_a_switch_that_would_fire_between_two_rounds(db):
    """Refused before it connects: a switch shorter than three rounds would pull the quotes of a
    market maker that is only waiting for its next round."""
    with pytest.raises(CommandError, match="--cancel-after"):
        run("http://127.0.0.1:9", rounds=1, interval=5, cancel_after=10)
