"""Concurrent transfers on PostgreSQL: no deadlock, exact totals, conserved money."""

import random
import threading
import time

import pytest
from django.db import OperationalError, connection, transaction
from django.db.models import Sum

from ledger import services
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account, Entry, Hold, Posting
from tests.ledger import support
from tests.ledger.support import DEBIT, move, unique

THREADS = 8
TRANSFERS = 200
FUNDING = 1_000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_transfers(usd):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers; row locks need PostgreSQL")
    bank = support.account(usd)
    accounts = [support.cash(usd) for _ in range(6)]
    for account in accounts:
        move(bank, account, FUNDING)
    entries_before = Entry.objects.count()
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    outcome = {"posted": 0, "refused": 0, "holds": 0}
    unexpected: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(TRANSFERS):
                source, target = rng.sample(accounts, 2)
                roll = rng.random()
                amount = rng.randint(FUNDING, 10 * FUNDING) if roll < 0.1 else rng.randint(1, 60)
                try:
                    if roll > 0.9:
                        # Reserve then consume part of it, releasing the rest.
                        hold = services.hold_create(
                            key=unique("h"),
                            account=source,
                            side=DEBIT,
                            amount=amount,
                            description="c",
                        )
                        services.entry_post(
                            key=unique("c"),
                            description="c",
                            postings=[(source, amount // 2 + 1), (target, -(amount // 2 + 1))],
                            holds=[(hold, amount // 2 + 1)],
                            release_holds=True,
                        )
                        kind = "holds"
                    else:
                        # Debit the payer, credit the payee; several accounts per entry
                        # sometimes, listed in random order, to mix the lock sets.
                        third = rng.choice(accounts)
                        postings = [(source, amount), (target, -amount)]
                        if third not in (source, target):
                            postings += [(third, 1), (target, -1)]
                        rng.shuffle(postings)
                        services.entry_post(key=unique("t"), description="t", postings=postings)
                        kind = "posted"
                except LedgerError as error:
                    if error.code != LedgerErrorCode.INSUFFICIENT_FUNDS:
                        raise
                    kind = "refused"
                with lock:
                    outcome[kind] += 1
        except BaseException as error:  # Collected, so the main thread reports it.
            with lock:
                unexpected.append(error)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "transfers did not finish"
    assert unexpected == [], unexpected
    assert time.monotonic() - started < 60
    assert sum(outcome.values()) == THREADS * TRANSFERS
    assert outcome["refused"] > 0 and outcome["posted"] > 0 and outcome["holds"] > 0, outcome
    assert Entry.objects.count() == entries_before + outcome["posted"] + outcome["holds"]
    assert not Hold.objects.filter(status=Hold.Status.PENDING).exists()
    support.assert_consistent([bank, *accounts])
    balances = [support.totals(a) for a in (bank, *accounts)]
    assert sum(dp - cp for dp, cp, _, _ in balances) == 0
    assert balances[0][:2] == (6 * FUNDING, 0)
    assert Posting.objects.aggregate(s=Sum("amount"))["s"] == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_account_lock_timeout_raises_djangos_error(usd):
    """The UPDATE of several accounts' totals runs on psycopg's own cursor; an error there
    still reaches the caller as Django's exception (as every other statement's does), with
    nothing written."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    bank = support.account(usd)
    alice, bob = support.cash(usd), support.cash(usd)
    move(bank, alice, FUNDING)
    before = support.snapshot()
    locked = threading.Event()
    release = threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                Account.objects.select_for_update().get(pk=bob.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10)
        with pytest.raises(OperationalError) as info, transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '50ms'")
            services.entry_post(key=unique("t"), description="t", postings=[(alice, 5), (bob, -5)])
    finally:
        release.set()
        thread.join(10)
    assert "lock" in str(info.value)
    assert support.snapshot() == before
