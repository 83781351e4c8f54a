"""Benchmark the ledger service: two-posting entries per second, one per call and in batches.

Runs in a scratch database created beside the configured one (as Django's test runner does) and
dropped at the end. The last line is ``entries_per_second=<number>`` (the batched figure).
"""

import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections

from ledger.models import Account, Commodity
from ledger.services import (
    ENTRIES_PER_BATCH_MAX,
    EntrySpec,
    account_open,
    commodity_define,
    entries_post,
    entry_post,
)

FUNDING = 10**12  # One million dollars in micro-dollars per customer.
TRANSFER_MAX = 10**6  # At most one dollar per transfer: no customer can run short.


@dataclass
class BenchLedger:
    usd: Commodity
    bank: Account
    customers: list[Account]


def bench_setup(customers: int, *, prefix: str = "bench") -> BenchLedger:
    """A USD commodity, a bank asset account and funded customer cash accounts."""
    usd = commodity_define(code="USD", name="US dollar", kind=Commodity.Kind.CURRENCY, scale=6)
    bank = account_open(
        code=f"{prefix}:bank", owner="exchange", commodity=usd, type=Account.Type.ASSET
    )
    accounts = [
        account_open(
            code=f"{prefix}:customer:{index}:cash",
            owner=f"customer-{index}",
            commodity=usd,
            type=Account.Type.LIABILITY,
            limit=Account.Limit.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )
        for index in range(customers)
    ]
    entries_post(
        [
            EntrySpec(
                key=f"{prefix}:fund:{account.pk}",
                description=f"Deposit to {account.code}",
                postings=((bank, FUNDING), (account, -FUNDING)),
            )
            for account in accounts
        ]
    )
    return BenchLedger(usd, bank, [Account.objects.get(pk=a.pk) for a in accounts])


def transfer_specs(
    customers: list[Account], count: int, *, seed: int, prefix: str
) -> list[EntrySpec]:
    """``count`` random transfers between two distinct customers."""
    rng = random.Random(seed)
    specs = []
    for index in range(count):
        payer, payee = rng.sample(customers, 2)
        amount = rng.randint(1, TRANSFER_MAX)
        specs.append(
            EntrySpec(
                key=f"{prefix}:transfer:{index}",
                description=f"Transfer {index}",
                postings=((payer, amount), (payee, -amount)),
            )
        )
    return specs


def post_single(specs: list[EntrySpec]) -> list[float]:
    """Post one entry per call; returns the latency of each call in milliseconds."""
    latencies = []
    for spec in specs:
        started = time.perf_counter()
        entry_post(key=spec.key, description=spec.description, postings=spec.postings)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def post_batched(specs: list[EntrySpec], batch: int) -> list[float]:
    """Post ``batch`` entries per call; returns the latency of each call in milliseconds."""
    latencies = []
    for start in range(0, len(specs), batch):
        started = time.perf_counter()
        entries_post(specs[start : start + batch])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def expected_balances(ledger: BenchLedger, specs: list[EntrySpec]) -> dict[int, int]:
    """Posted balance (debits - credits) of each account after funding and ``specs``."""
    balances = {account.pk: -FUNDING for account in ledger.customers}
    balances[ledger.bank.pk] = FUNDING * len(ledger.customers)
    for spec in specs:
        for account, amount in spec.postings:
            balances[account.pk] += amount
    return balances


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class Command(BaseCommand):
    help = "Benchmark ledger entries; the last line is entries_per_second=<number> (batched)."

    def add_arguments(self, parser):
        parser.add_argument("--entries", type=int, default=10_000)
        parser.add_argument("--batch", type=int, default=100)
        parser.add_argument("--customers", type=int, default=100)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, entries, batch, customers, seed, **options):
        if entries < 1 or customers < 2 or not 1 <= batch <= ENTRIES_PER_BATCH_MAX:
            raise CommandError(
                f"Need --entries >= 1, --customers >= 2, 1 <= --batch <= {ENTRIES_PER_BATCH_MAX}."
            )
        # Measure what production runs: DEBUG off, so no per-query logging in the cursor.
        settings.DEBUG = False
        database = settings.DATABASES["default"]
        database.setdefault("TEST", {})
        database["TEST"]["NAME"] = (
            str(settings.VAR_DIR / "bench-ledger.sqlite3")
            if connection.vendor == "sqlite"
            else f"bench_ledger_{database['NAME']}"
        )
        old_name = database["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        try:
            ledger = bench_setup(customers)
            single = transfer_specs(ledger.customers, entries, seed=seed, prefix="single")
            batched = transfer_specs(ledger.customers, entries, seed=seed + 1, prefix="batched")

            started = time.perf_counter()
            single_latencies = post_single(single)
            single_elapsed = time.perf_counter() - started

            started = time.perf_counter()
            batch_latencies = post_batched(batched, batch)
            batch_elapsed = time.perf_counter() - started

            want = expected_balances(ledger, single + batched)
            have = {a.pk: a.balance for a in Account.objects.filter(pk__in=want)}
            if have != want:
                raise CommandError("Balances after the benchmark differ from the expected ones.")

            self.stdout.write(f"database: {connection.vendor}, {customers} customer accounts")
            self.stdout.write(
                f"single:  {entries} entries in {single_elapsed:.2f}s, "
                f"{entries / single_elapsed:.0f} entries/s, per call "
                f"p50 {percentile(single_latencies, 0.5):.2f} ms, "
                f"p99 {percentile(single_latencies, 0.99):.2f} ms"
            )
            self.stdout.write(
                f"batched: {entries} entries in {batch_elapsed:.2f}s ({batch} per call), "
                f"{entries / batch_elapsed:.0f} entries/s, per call "
                f"p50 {percentile(batch_latencies, 0.5):.2f} ms, "
                f"p99 {percentile(batch_latencies, 0.99):.2f} ms"
            )
            self.stdout.write(f"entries_per_second={entries / batch_elapsed:.0f}")
        finally:
            connections.close_all()
            connection.creation.destroy_test_db(old_name, verbosity=0)
