"""Orders per second through ``order_place`` (accept, match, persist) on the configured database.

Two pipelines, as the two modes run:
- ``inline`` (the embedded mode): one client accepts and matches each order in turn;
- ``external`` (production, PostgreSQL): ``--clients`` processes accept orders concurrently, as
  web processes do, and one matcher process (the ``run_matcher`` loop) matches them, woken by
  NOTIFY. The clock stops when the last command has been matched and committed.

The benchmark runs in a scratch database created beside the configured one (as Django's test
runner does: same engine and server, name prefixed ``bench_orders_``), so it never touches
real data.
"""

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import random
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections
from django.utils import timezone

PRICE_MID_TICKS = 490  # $2.45 at a $0.005 tick: an H100 month in late 2026.
MARKETABLE_SHARE = 0.15
ACCOUNTS = 4
DRAIN_TIMEOUT_SECONDS = 300

BENCH_FUNDS_USD = Decimal("50000000")

# One order of the stream: (account id, instrument id, side, price in ticks, quantity, time in
# force).
BenchOrder = tuple[int, int, str, int, int, str]


def order_stream(
    seed: int, count: int, instrument_ids: list[int], account_ids: list[int]
) -> list[BenchOrder]:
    """Limit orders around a random-walk mid, some of them marketable IOC.

    Each is (account, instrument, side, ticks, quantity, time in force).
    """
    return list(islice(order_generator(seed, instrument_ids, account_ids), count))


def order_generator(
    seed: int, instrument_ids: list[int], account_ids: list[int]
) -> Iterator[BenchOrder]:
    """``order_stream``'s orders one at a time, without end: for a load that runs for a time
    rather than a count, and should not spend the time building orders it will not send."""
    rng = random.Random(seed)
    mid = PRICE_MID_TICKS
    while True:
        mid = max(20, mid + rng.choice((-1, 0, 0, 1)))
        side = rng.choice(("buy", "sell"))
        marketable = rng.random() < MARKETABLE_SHARE
        offset = -3 if marketable else rng.randint(1, 10)
        ticks = mid - offset if side == "buy" else mid + offset
        yield (
            rng.choice(account_ids),
            rng.choice(instrument_ids),
            side,
            ticks,
            rng.choice((1, 2, 5, 10)),
            "ioc" if marketable else "gtc",
        )


def place_stream(stream: list[BenchOrder]) -> list[float]:
    """Place every order of ``stream`` through ``order_place``; return latencies in milliseconds."""
    from exchange.models import Account, Instrument
    from exchange.services.orders import order_place

    accounts = Account.objects.in_bulk()
    instruments = Instrument.objects.in_bulk()
    latencies_ms = []
    for account_id, instrument_id, side, ticks, quantity, time_in_force in stream:
        instrument = instruments[instrument_id]
        before = time.perf_counter()
        order_place(
            account=accounts[account_id],
            instrument=instrument,
            side=side,
            price=instrument.tick_size * ticks,
            quantity=quantity,
            time_in_force=time_in_force,
        )
        latencies_ms.append((time.perf_counter() - before) * 1000)
    return latencies_ms


def _client_process(
    stream: list[BenchOrder],
    # Quoted: the standard library's Queue class is generic only to the type checker.
    results: "multiprocessing.queues.Queue[list[float]]",
) -> None:
    settings.EXCHANGE_MATCHER_MODE = "external"
    try:
        results.put(place_stream(stream))
    finally:
        connections.close_all()


def _matcher_process(
    stop: multiprocessing.synchronize.Event, ready: multiprocessing.synchronize.Event
) -> None:
    from exchange.matcher.process import MatcherLoop

    loop = MatcherLoop(shard=0, shards=1, wait_seconds_max=0.05)

    def stop_when_told() -> None:
        stop.wait()
        loop.stop()

    threading.Thread(target=stop_when_told, daemon=True).start()
    ready.set()
    try:
        loop.run()
    finally:
        connections.close_all()


def percentiles(latencies_ms: list[float]) -> list[float]:
    """The 1st to 99th percentiles of one or more latencies (``statistics.quantiles``); one
    latency has no spread to cut into percentiles: it is each of them."""
    if len(latencies_ms) == 1:
        return latencies_ms * 99
    return statistics.quantiles(latencies_ms, n=100)


class Command(BaseCommand):
    help = "Benchmark order_place end to end; the last line is orders_per_second=<number>."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=5000)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--mode",
            choices=["inline", "external"],
            help="Default: external on PostgreSQL, else inline.",
        )
        parser.add_argument(
            "--clients", type=int, default=4, help="Accepting processes in the external mode."
        )
        parser.add_argument("--instruments", type=int, default=1)
        parser.add_argument(
            "--keep-database", action="store_true", help="Keep the scratch database afterwards."
        )

    def handle(
        self,
        *args: Any,
        orders: int,
        seed: int,
        mode: str | None,
        clients: int,
        instruments: int,
        keep_database: bool,
        **options: Any,
    ) -> None:
        mode = mode or ("external" if connection.vendor == "postgresql" else "inline")
        if mode == "external" and connection.vendor != "postgresql":
            raise CommandError("The external mode needs PostgreSQL.")
        # Measure what production runs: DEBUG off, so no per-query logging in the cursor.
        settings.DEBUG = False
        database = settings.DATABASES["default"]
        database.setdefault("TEST", {})
        database["TEST"]["NAME"] = (
            str(settings.VAR_DIR / "bench-exchange.sqlite3")
            if connection.vendor == "sqlite"
            else f"bench_orders_{database['NAME']}"
        )
        old_name = database["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            instrument_ids, account_ids = self._market(instruments)
            if mode == "inline":
                settings.EXCHANGE_MATCHER_MODE = "inline"
                stream = order_stream(seed, orders, instrument_ids, account_ids)
                started = time.perf_counter()
                latencies_ms = place_stream(stream)
                elapsed = time.perf_counter() - started
            else:
                latencies_ms, elapsed = self._run_external(
                    seed, orders, clients, instrument_ids, account_ids
                )
            self._report(mode, clients if mode == "external" else 1, orders, elapsed, latencies_ms)
        finally:
            connections.close_all()
            if not keep_database:
                connection.creation.destroy_test_db(old_name, verbosity=0)

    def _market(self, count: int) -> tuple[list[int], list[int]]:
        from exchange.demo import ensure_region, ensure_sku
        from exchange.models import Organization
        from exchange.services.funding import deposit_test_funds
        from exchange.services.listing import futures_list_strip
        from exchange.services.participants import account_main, organization_create

        sku, region = ensure_sku("H100SXM"), ensure_region("USEAST")
        strip = futures_list_strip(
            sku=sku, region=region, first_month=date(timezone.now().year + 1, 1, 1), months=count
        )
        accounts = [
            account_main(
                organization_create(
                    slug=f"bench-{index}",
                    name=f"Bench {index}",
                    kind=Organization.Kind.TRADING_FIRM,
                )
            )
            for index in range(ACCOUNTS)
        ]
        for account in accounts:  # Every order is collateralized; a rejection fails the run.
            deposit_test_funds(account=account, amount=BENCH_FUNDS_USD, actor=None)
        return [instrument.pk for instrument in strip], [account.pk for account in accounts]

    def _run_external(
        self,
        seed: int,
        orders: int,
        clients: int,
        instrument_ids: list[int],
        account_ids: list[int],
    ) -> tuple[list[float], float]:
        from exchange.models import OrderCommand

        context = multiprocessing.get_context("fork")
        streams = [
            order_stream(seed + index, orders // clients, instrument_ids, account_ids)
            for index in range(clients)
        ]
        connections.close_all()  # A forked child must not share its parent's connection.
        stop, ready, results = context.Event(), context.Event(), context.Queue()
        matcher = context.Process(target=_matcher_process, args=(stop, ready))
        matcher.start()
        ready.wait(30)
        time.sleep(0.5)  # Let the matcher take its lease and rebuild (empty) books first.
        workers = [
            context.Process(target=_client_process, args=(stream, results)) for stream in streams
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        latencies_ms = []
        for _ in workers:
            latencies_ms += results.get(timeout=DRAIN_TIMEOUT_SECONDS)
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).exists():
            if time.monotonic() > deadline:
                raise CommandError("The matcher did not drain the queue in time.")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop.set()
        for process in [*workers, matcher]:
            process.join(30)
        return latencies_ms, elapsed

    def _report(
        self, mode: str, clients: int, orders: int, elapsed: float, latencies_ms: list[float]
    ) -> None:
        from exchange.models import Order, Trade
        from exchange.selectors.integrity import order_book_problems

        placed = len(latencies_ms)
        problems = order_book_problems()
        if problems or Order.objects.filter(status=Order.Status.NEW).exists():
            raise CommandError(f"Inconsistent after the run: {problems[:5]}")
        if not latencies_ms:
            raise CommandError("No order was placed.")
        quantiles = percentiles(latencies_ms)
        self.stdout.write(
            f"database={connection.vendor} mode={mode} clients={clients} orders={placed} "
            f"trades={Trade.objects.count()} seconds={elapsed:.2f}"
        )
        self.stdout.write(f"order_place latency_ms p50={quantiles[49]:.3f} p99={quantiles[98]:.3f}")
        self.stdout.write(f"orders_per_second={placed / elapsed:.0f}")
