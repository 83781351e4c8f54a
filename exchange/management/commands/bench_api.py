"""Orders per second through the REST API, as production runs it (PostgreSQL only).

The command builds a scratch database beside the configured one (name prefixed
``bench_api_``), lists a futures strip, funds four trading firms and gives each an API key;
then it starts, on loopback, ``--workers`` gunicorn worker processes serving the API and
``--shards`` ``run_matcher`` processes, and runs ``--clients`` client processes that place
limit orders (about 15% marketable IOC) through ``POST /api/v1/orders/`` for ``--seconds``,
each over one keep-alive connection (with ``--batch N``, N orders of one account per request
to ``POST /api/v1/orders/batch/``). It reports what the clients measured: accepted orders
per second, and the latency of each placement (request sent to response read), then waits
until the matchers have processed every order and checks the books. With Redis
(``--redis``, by default ``REDIS_URL``) the servers use it as production does: the cache behind
the API keys' rate limits, and the channel layer the matchers publish the feed to.

The last line is ``orders_per_second=<n> p99_ms=<n>``.
"""

import http.client
import json
import multiprocessing
import multiprocessing.queues
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections

from exchange.management.commands.bench_orders import Command as BenchOrders
from exchange.management.commands.bench_orders import order_generator, percentiles
from exchange.services.orders import BATCH_ORDERS_MAX

SERVER_START_SECONDS_MAX = 60
DRAIN_TIMEOUT_SECONDS = 300
ORDERS_PER_CLIENT_MAX = 200_000

# The API keys' tokens and the instruments' (symbol, tick size), by account and instrument id.
Tokens = dict[int, str]
Symbols = dict[int, tuple[str, Decimal]]
# What a client reports: request latencies (ms), orders by HTTP status, and the monotonic
# clock at its first request and after its last answer.
ClientResult = tuple[list[float], dict[int, int], float, float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(
    base_url: str,
    tokens: Tokens,
    symbols: Symbols,
    seed: int,
    seconds: float,
    batch: int,
    # Quoted: the standard library's Queue class is generic only to the type checker.
    results: "multiprocessing.queues.Queue[ClientResult]",
) -> None:
    """One client: one keep-alive HTTP connection, orders from the shared stream's shape.

    With ``batch`` 1 each order is its own ``POST /api/v1/orders/``; with more, the client
    gathers each account's next ``batch`` orders of the stream into one
    ``POST /api/v1/orders/batch/``. Statuses are counted per order (a batch's results say each
    order's), latencies per request.

    It uses the standard library's ``http.client`` rather than ``requests``: the clients share
    the server's two cores, and a lighter client leaves more of them to what is measured.
    """
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {
        account_id: {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for account_id, token in tokens.items()
    }
    stream = islice(order_generator(seed, list(symbols), list(tokens)), ORDERS_PER_CLIENT_MAX)
    latencies_ms: list[float] = []
    statuses: dict[int, int] = {}
    pending: dict[int, list[dict[str, object]]] = {account_id: [] for account_id in tokens}
    started = time.monotonic()
    deadline = time.perf_counter() + seconds
    for account_id, instrument_id, side, ticks, quantity, time_in_force in stream:
        if time.perf_counter() > deadline:
            break
        symbol, tick = symbols[instrument_id]
        order = {
            "instrument": symbol,
            "side": side,
            "quantity": quantity,
            "price": str(tick * ticks),
            "time_in_force": time_in_force,
        }
        if batch == 1:
            path, body = "/api/v1/orders/", json.dumps(order)
        else:
            gathered = pending[account_id]
            gathered.append(order)
            if len(gathered) < batch:
                continue
            pending[account_id] = []
            path, body = "/api/v1/orders/batch/", json.dumps({"orders": gathered})
        before = time.perf_counter()
        try:
            connection.request("POST", path, body, headers[account_id])
            response = connection.getresponse()
            content = response.read()
            status = response.status
            if response.getheader("Connection", "").lower() == "close":
                connection.close()  # The next request opens a new one.
        except (http.client.HTTPException, OSError):
            connection.close()
            status = 0
        latencies_ms.append((time.perf_counter() - before) * 1000)
        if batch == 1 or status != 200:
            statuses[status] = statuses.get(status, 0) + (1 if batch == 1 else batch)
        else:
            for result in json.loads(content)["results"]:
                statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    connection.close()
    results.put((latencies_ms, statuses, started, time.monotonic()))


def _check_redis(url: str) -> None:
    """Refuse to start against a Redis that does not answer (every request would fail)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        raise CommandError(f"Redis at {url} does not answer: {error}") from error
    finally:
        client.close()


class Command(BaseCommand):
    help = (
        "Benchmark order placement through the REST API with gunicorn and external matchers "
        "on PostgreSQL; the last line is orders_per_second=<n> p99_ms=<n>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clients", type=int, default=8)
        parser.add_argument("--seconds", type=float, default=20.0)
        parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes.")
        parser.add_argument(
            "--threads",
            type=int,
            default=2,
            help="Threads per worker (more than one: gunicorn's gthread worker, which keeps "
            "connections alive).",
        )
        parser.add_argument("--shards", type=int, default=1, help="run_matcher processes.")
        parser.add_argument("--instruments", type=int, default=4)
        parser.add_argument(
            "--batch",
            type=int,
            default=1,
            help="Orders per request: 1 places each with POST /api/v1/orders/; more (up to "
            f"{BATCH_ORDERS_MAX}) sends each account's next orders together to "
            "/api/v1/orders/batch/. Latencies are then of a batch's request.",
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--redis",
            default=None,
            metavar="URL",
            help="Redis for the servers' cache (API keys' rate limits) and the feed's channel "
            "layer, as production runs them (default: REDIS_URL). Empty: each process keeps "
            "its own, and the feed's messages reach no other process.",
        )
        parser.add_argument("--keep-database", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["batch"] <= BATCH_ORDERS_MAX:
            raise CommandError(f"--batch is 1 to {BATCH_ORDERS_MAX} orders per request.")
        if connection.vendor != "postgresql":
            raise CommandError("bench_api measures the production setup: set DATABASE_URL.")
        settings.DEBUG = False
        redis_url = settings.REDIS_URL if options["redis"] is None else options["redis"]
        if redis_url:
            _check_redis(redis_url)
        else:
            self.stderr.write(
                "No Redis (REDIS_URL or --redis): the servers' cache and the feed stay in each "
                "process, which production does not do; the figures leave out their cost."
            )
        options["feed"] = "redis" if redis_url else "in-process"
        database = settings.DATABASES["default"]
        old_name = database["NAME"]
        database.setdefault("TEST", {})["NAME"] = f"bench_api_{old_name}"
        scratch = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            instrument_ids, account_ids = BenchOrders()._market(options["instruments"])
            tokens, symbols = self._keys_and_symbols(instrument_ids, account_ids)
            connections.close_all()
            port = _free_port()
            environment = self._environment(scratch, redis_url)
            processes += self._start(environment, port, options)
            base_url = f"http://127.0.0.1:{port}"
            self._wait_for(base_url, processes)
            latencies_ms, statuses, elapsed = self._load(base_url, tokens, symbols, options)
            drained = self._drain()
            self._report(options, latencies_ms, statuses, elapsed, drained)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
            connections.close_all()
            if not options["keep_database"]:
                connection.creation.destroy_test_db(old_name, verbosity=0)

    def _keys_and_symbols(
        self, instrument_ids: list[int], account_ids: list[int]
    ) -> tuple[Tokens, Symbols]:
        from exchange.models import Account, Instrument
        from exchange.services.api_keys import api_key_create

        tokens = {
            account.pk: api_key_create(
                organization=account.organization, name="bench", scopes=["read", "trade"]
            ).token
            for account in Account.objects.filter(pk__in=account_ids).select_related("organization")
        }
        symbols = {
            instrument.pk: (instrument.symbol, instrument.tick_size)
            for instrument in Instrument.objects.filter(pk__in=instrument_ids)
        }
        return tokens, symbols

    def _environment(self, database_name: str, redis_url: str) -> dict[str, str]:
        database = settings.DATABASES["default"]
        user = database.get("USER") or "postgres"
        password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
        host = database.get("HOST") or "127.0.0.1"
        port = database.get("PORT") or 5432
        return {
            **os.environ,
            "DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{database_name}",
            "EXCHANGE_MATCHER_MODE": "external",
            "REDIS_URL": redis_url,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # The keys' signing keys are sealed with it.
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "EXCHANGE_API_RATE": "1000000/s",
            "DJANGO_LOG_LEVEL": "WARNING",
        }

    def _start(
        self, environment: dict[str, str], port: int, options: dict[str, Any]
    ) -> list[subprocess.Popen[bytes]]:
        bin_dir = Path(sys.executable).parent
        # The benchmark serves only the API, so nothing is collected; without the directory
        # WhiteNoise would warn in every worker that it has none to serve from.
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    manage,
                    "run_matcher",
                    "--shard",
                    str(shard),
                    "--shards",
                    str(options["shards"]),
                ],
                env=environment,
                stdout=subprocess.DEVNULL,
            )
            for shard in range(options["shards"])
        ]
        processes.append(
            subprocess.Popen(
                [
                    str(bin_dir / "gunicorn"),
                    "exchange.wsgi",
                    "--workers",
                    str(options["workers"]),
                    "--threads",
                    str(options["threads"]),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--log-level",
                    "warning",
                    "--keep-alive",
                    "30",
                ],
                env=environment,
                cwd=settings.BASE_DIR,
            )
        )
        return processes

    def _wait_for(self, base_url: str, processes: list[subprocess.Popen[bytes]]) -> None:
        import requests

        deadline = time.monotonic() + SERVER_START_SECONDS_MAX
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in processes):
                raise CommandError("A server or matcher process exited while starting.")
            try:
                if requests.get(f"{base_url}/api/v1/instruments/", timeout=2).ok:
                    time.sleep(1.0)  # Let the matchers take their leases.
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise CommandError("The API server did not start.")

    def _load(
        self, base_url: str, tokens: Tokens, symbols: Symbols, options: dict[str, Any]
    ) -> tuple[list[float], dict[int, int], float]:
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        clients = [
            context.Process(
                target=_client,
                args=(
                    base_url,
                    tokens,
                    symbols,
                    options["seed"] + index,
                    options["seconds"],
                    options["batch"],
                    results,
                ),
            )
            for index in range(options["clients"])
        ]
        for client in clients:
            client.start()
        latencies_ms: list[float] = []
        statuses: dict[int, int] = {}
        starts, ends = [], []
        for _ in clients:
            client_latencies, client_statuses, start, end = results.get(
                timeout=options["seconds"] + 120
            )
            latencies_ms += client_latencies
            for status, count in client_statuses.items():
                statuses[status] = statuses.get(status, 0) + count
            starts.append(start)
            ends.append(end)
        # From the first client's first request to the last client's last answer (the
        # monotonic clock is the machine's, shared by the processes): not the clients' start.
        elapsed = max(ends) - min(starts)
        for client in clients:
            client.join(30)
        return latencies_ms, statuses, elapsed

    def _drain(self) -> float:
        from exchange.models import OrderCommand

        started = time.monotonic()
        while OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).exists():
            if time.monotonic() - started > DRAIN_TIMEOUT_SECONDS:
                raise CommandError("The matchers did not drain the queue in time.")
            time.sleep(0.1)
        return time.monotonic() - started

    def _report(
        self,
        options: dict[str, Any],
        latencies_ms: list[float],
        statuses: dict[int, int],
        elapsed: float,
        drained: float,
    ) -> None:
        from exchange.models import Order, Trade
        from exchange.selectors.integrity import collateral_problems, order_book_problems

        problems = order_book_problems() + collateral_problems()
        if problems or Order.objects.filter(status=Order.Status.NEW).exists():
            raise CommandError(f"Inconsistent after the run: {problems[:5]}")
        accepted = statuses.get(201, 0) + statuses.get(200, 0)
        if not latencies_ms:
            raise CommandError("No order was sent.")
        quantiles = percentiles(latencies_ms)
        self.stdout.write(
            f"clients={options['clients']} workers={options['workers']}x{options['threads']} "
            f"matchers={options['shards']} instruments={options['instruments']} "
            f"feed={options['feed']} batch={options['batch']} "
            f"seconds={elapsed:.1f} requests={len(latencies_ms)} statuses={statuses} "
            f"trades={Trade.objects.count()} matcher_lag_s={drained:.1f}"
        )
        self.stdout.write(
            f"latency_ms p50={quantiles[49]:.1f} p90={quantiles[89]:.1f} p99={quantiles[98]:.1f}"
        )
        self.stdout.write(f"orders_per_second={accepted / elapsed:.0f} p99_ms={quantiles[98]:.1f}")
