"""``exchange.recent``: rows a process keeps for a moment, and when it reads them again."""

import pytest

from exchange import recent
from exchange.recent import Recent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(recent.time, "monotonic", fake)
    return fake


@pytest.fixture
def kept(settings) -> Recent[str, str]:
    settings.EXCHANGE_REFERENCE_CACHE_SECONDS = 1.0
    return Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")


class Reader:
    """Counts its reads; answers the value it is set to."""

    def __init__(self, value: str | None) -> None:
        self.value, self.reads = value, 0

    def __call__(self) -> str | None:
        self.reads += 1
        return self.value


def test_a_value_is_kept_for_the_configured_seconds_and_then_read_again(kept, clock):
    reader = Reader("first")
    assert kept.get("key", reader) == "first"

    reader.value = "second"
    clock.now += 0.99
    assert kept.get("key", reader) == "first"
    assert reader.reads == 1

    clock.now += 0.02
    assert kept.get("key", reader) == "second"
    assert reader.reads == 2


def test_nothing_missing_is_kept(kept, clock):
    reader = Reader(None)

    assert kept.get("key", reader) is None
    assert kept.get("key", reader) is None
    assert reader.reads == 2


def test_zero_seconds_reads_every_time(kept, clock, settings):
    settings.EXCHANGE_REFERENCE_CACHE_SECONDS = 0
    reader = Reader("value")

    kept.get("key", reader)
    kept.get("key", reader)

    assert reader.reads == 2


def test_forgetting_one_key_keeps_the_others(kept, clock):
    one, other = Reader("one"), Reader("other")
    kept.get("one", one)
    kept.get("other", other)

    kept.forget("one")
    kept.get("one", one)
    kept.get("other", other)

    assert (one.reads, other.reads) == (2, 1)


def test_forget_all_forgets_every_recent_of_the_process(kept, clock):
    another: Recent[str, str] = Recent("EXCHANGE_REFERENCE_CACHE_SECONDS")
    first, second = Reader("a"), Reader("b")
    kept.get("key", first)
    another.get("key", second)

    recent.forget_all()
    kept.get("key", first)
    another.get("key", second)

    assert (first.reads, second.reads) == (2, 2)


@pytest.mark.django_db
def test_a_change_forgets_at_once_and_again_when_its_transaction_commits(
    kept, clock, django_capture_on_commit_callbacks
):
    reader = Reader("before")
    kept.get("key", reader)

    with django_capture_on_commit_callbacks(execute=True):
        recent.changed()
        assert kept.get("key", reader) == "before"  # Read afresh (a read inside the change).
        assert reader.reads == 2
        reader.value = "after"

    assert kept.get("key", reader) == "after"  # Forgotten again at the commit.
    assert reader.reads == 3
