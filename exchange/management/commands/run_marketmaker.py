"""The demo market maker: quotes both sides of the demo market through the REST API.

It is an API client like any automated trader's (``exchange_client``); it touches the database
only to create its API key when none is given. It names its quotes (``client_order_id`` with a
prefix of its own per run) and cancels only those, so the organization's other orders (the
opening quotes ``seed_demo`` placed, option quotes, a trader's orders) stay where they are.

It quotes the front months of each strip that still trade: a future stops trading at the close
of its last trading day (the instrument's ``trading_ends_at``), while its status stays active
until the daily cycle expires it, so from then on it is dropped and the next month takes its
place. Whether the close has passed is read on the exchange's clock, not this machine's: the
offset between them is measured at the start and again with every read of the statuses
(``ExchangeClient.sync_clock``), so a machine whose clock runs behind does not quote a future
past its close (every quote refused ``ORDER_INSTRUMENT_EXPIRED``) and one ahead does not drop
it early. Its quotes resting there cannot trade any more; they go when it stops, or when the daily
cycle expires the future and cancels what rests on it.

A future staff halt is skipped while it is halted, and quoted again once it resumes: the run
reads the futures' statuses again every ``STATUS_READ_ROUNDS`` rounds, and a quote refused as
halted (``ORDER_INSTRUMENT_HALTED``) skips the future at once until that read says it resumed.
"""

import itertools
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from types import FrameType
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.models import Organization
from exchange.services.api_keys import api_key_create
from exchange_client import ApiError, Book, ExchangeClient, Instrument

SERVER_WAIT_SECONDS_MAX = 120
QUOTED_PER_ROUND = 6
FRONT_MONTHS = 2
# Every this many rounds it reads the futures (their statuses) again: one request.
STATUS_READ_ROUNDS = 5
ACTIVE = "active"
EXPIRED = "expired"
HALTED_CODE = "ORDER_INSTRUMENT_HALTED"
SPREAD_TICKS = (2, 3, 4)
DRIFT = 0.002  # Standard deviation of the fair price's move per round, as a fraction.
TAKE_PROBABILITY = 0.35  # How often a round also takes the best price somewhere.
CANCEL_AFTER_SECONDS = 15  # The dead man's switch, armed again every round.
CLIENT_ORDER_ID_PREFIX = "mm-"  # Its quotes' client order ids: mm-<run>-<n>.
CANCEL_BATCH_MAX = 100  # Ids per batch cancel (the API's limit).
# A request refused for the key's rate is sent again after the answer's Retry-After, at most
# RATE_LIMIT_WAIT_MAX seconds each time, RATE_LIMIT_RETRIES times (the client does it).
RATE_LIMIT_RETRIES = 2
RATE_LIMIT_WAIT_MAX = 5

# What signal.signal returns and takes: a Python handler, SIG_DFL or SIG_IGN, or None for a
# handler not installed from Python.
SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def on_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick


def still_trades(instrument: Instrument, now: datetime) -> bool:
    """Before the close of its last trading day: an order from then on is refused
    (``ORDER_INSTRUMENT_EXPIRED``), whatever its status says until the daily cycle."""
    return now < instrument.trading_ends_at


class Command(BaseCommand):
    help = (
        "Quote both sides of the demo market through the REST API, and take now and then, so "
        "the market lives while the server runs. Creates an API key for --org unless --key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--org", default="helix", help="Organization quoting (its key).")
        parser.add_argument("--key", help="An API key (read,trade); made for --org if absent.")
        parser.add_argument("--interval", type=float, default=2.0, help="Seconds between rounds.")
        parser.add_argument("--rounds", type=int, default=0, help="Stop after N rounds (0: never).")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument(
            "--cancel-after",
            type=int,
            default=CANCEL_AFTER_SECONDS,
            help="Arm the dead man's switch with this timeout every round, so the quotes go "
            "if this process dies (0: no switch).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])
        cancel_after = options["cancel_after"]
        if cancel_after and cancel_after < 3 * options["interval"]:
            raise CommandError("--cancel-after must be 0 or at least three rounds' --interval.")
        client = ExchangeClient(
            options["url"],
            options["key"] or self._key(options["org"]),
            rate_limit_retries=RATE_LIMIT_RETRIES,
            rate_limit_wait_max_seconds=RATE_LIMIT_WAIT_MAX,
            sleep=time.sleep,  # Looked up now: a test may have replaced it.
        )
        self._wait_for(client)
        client.sync_clock()
        futures = self._futures(client)
        if not futures:
            raise CommandError("No futures to quote: load the demo market (seed_demo).")
        self.stdout.write(f"quoting {len(futures)} futures at {options['url']} as {options['org']}")
        fair: dict[str, Decimal] = {}
        # Its quotes resting (or maybe resting) per future, by client order id; a fresh prefix
        # per run, since client order ids stay taken within the organization's account.
        self._quotes: dict[str, list[str]] = {}
        run = f"{CLIENT_ORDER_ID_PREFIX}{secrets.token_hex(4)}"
        self._ids = (f"{run}-{n}" for n in itertools.count(1))
        # SIGTERM (``make run``'s trap, ``kill``) asks it to stop: the request in flight is
        # answered first, so each quote it sent is either known to it or never placed, and
        # the withdrawal cancels them all. Stopping in the middle of a request instead could
        # leave a quote the server places after the withdrawal has looked for it.
        self._stop_asked = False
        self._withdrawing = False
        # Futures refused as halted since the statuses were last read: skipped until then.
        self._halted: set[str] = set()
        skipped: set[str] = set()
        rounds = 0
        previous = self._on_sigterm_install()
        try:
            while (options["rounds"] == 0 or rounds < options["rounds"]) and not self._stop_asked:
                rounds += 1
                statuses_due = rounds > 1 and (rounds - 1) % STATUS_READ_ROUNDS == 0
                if statuses_due:
                    client.sync_clock()
                now = client.now()
                if statuses_due or not all(still_trades(future, now) for future in futures):
                    # The statuses again (a halt, a resume), or a quoted future's trading ended:
                    # the strip's next month takes its place.
                    futures = self._futures(client)
                    self._halted.clear()
                if cancel_after:
                    self._arm(client, cancel_after)
                skipped = self._say_skipped(futures, skipped)
                quoted = [future for future in futures if future.symbol not in skipped]
                placed, traded = self._round(client, rng, quoted, fair)
                self.stdout.write(f"round {rounds}: {placed} quotes, {traded} contracts taken")
                self._pause(options["interval"])
            if self._stop_asked:
                self.stdout.write("stopping: withdrawing its quotes")
        except KeyboardInterrupt:
            self.stdout.write("stopping: withdrawing its quotes")
        finally:
            self._withdrawing = True
            try:
                self._withdraw(client, cancel_after)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

    def _say_skipped(self, futures: list[Instrument], skipped: set[str]) -> set[str]:
        """The futures not to quote this round (halted: by their status, or a refusal since),
        saying which stopped or started again being quoted since the last round."""
        now_skipped = {
            future.symbol
            for future in futures
            if future.status != ACTIVE or future.symbol in self._halted
        }
        for symbol in sorted(now_skipped - skipped):
            self.stdout.write(f"{symbol}: halted, not quoted until it resumes")
        for symbol in sorted(skipped - now_skipped):
            if any(future.symbol == symbol for future in futures):
                self.stdout.write(f"{symbol}: trading again, quoted")
        return now_skipped

    def _on_sigterm_install(self) -> SignalHandler:
        """Stop on SIGTERM as on Ctrl-C (the withdrawal runs); the previous handler, or None
        off the main thread, where Python cannot install one."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag (a handler must not take a lock its thread may hold); once withdrawing,
        # a second SIGTERM does not cut the withdrawal short.
        if not self._withdrawing:
            self._stop_asked = True

    def _pause(self, seconds: float) -> None:
        """Wait between rounds, a tenth of a second at a time, so a stop asked meanwhile
        does not wait out the interval."""
        deadline = time.monotonic() + seconds
        while not self._stop_asked and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def _withdraw(self, client: ExchangeClient, cancel_after: int) -> None:
        """Cancel its own quotes, then disarm the switch; if cancelling failed, the switch stays
        armed and withdraws what is left (with the organization's other orders)."""
        ids = [cid for cids in self._quotes.values() for cid in cids]
        try:
            for start in range(0, len(ids), CANCEL_BATCH_MAX):
                self._cancel_quotes(client, ids[start : start + CANCEL_BATCH_MAX])
            self._quotes.clear()
            if cancel_after:
                client.cancel_all_after(0)
        except (ApiError, requests.RequestException) as error:
            self.stderr.write(f"withdrawing its quotes: {error}")

    def _cancel_quotes(self, client: ExchangeClient, ids: list[str]) -> None:
        """Cancel these quotes of its own by client order id; one filled or cancelled already
        (409), or never placed (404), is no longer its concern."""
        if ids:
            client.cancel_orders(client_order_ids=ids)

    def _arm(self, client: ExchangeClient, timeout_seconds: int) -> None:
        """Arm the switch again: if this process stops without withdrawing its quotes, the
        exchange cancels them ``timeout_seconds`` after the last round."""
        try:
            client.cancel_all_after(timeout_seconds)
        except ApiError as error:
            self.stderr.write(f"cancel-all-after: {error.code}: {error.message}")

    def _key(self, slug: str) -> str:
        organization = Organization.objects.filter(slug=slug).first()
        if organization is None:
            raise CommandError(f"No organization {slug!r}: load the demo market first.")
        created = api_key_create(
            organization=organization, name="demo market maker", scopes=["read", "trade"]
        )
        self.stderr.write(f"created API key {created.key.prefix} for {slug}")
        return created.token

    def _wait_for(self, client: ExchangeClient) -> None:
        deadline = time.monotonic() + SERVER_WAIT_SECONDS_MAX
        while True:
            try:
                client.me()
                return
            except requests.RequestException as error:
                if time.monotonic() > deadline:
                    raise CommandError(f"The server did not answer: {error}") from error
                time.sleep(1)

    def _futures(self, client: ExchangeClient) -> list[Instrument]:
        """The front ``FRONT_MONTHS`` of each strip among the futures that still trade, with
        their statuses: a halted one keeps its place (it is skipped while halted), so the run
        quotes it again when it resumes."""
        by_strip: dict[tuple[str, str], list[Instrument]] = {}
        now = client.now()
        for instrument in client.instruments(kind="future"):
            if instrument.status == EXPIRED or not still_trades(instrument, now):
                continue
            by_strip.setdefault((instrument.sku, instrument.region), []).append(instrument)
        chosen = []
        for strip in by_strip.values():
            chosen += sorted(strip, key=lambda i: i.delivery_start)[:FRONT_MONTHS]
        return chosen

    def _reference(self, client: ExchangeClient, symbol: str, book: Book) -> Decimal | None:
        """The price to quote around when it has none yet: the book's mid; on a one-sided book
        the side there is (its quotes then stand a spread either side, so neither crosses it);
        on an empty book the last trade, else the latest settlement price."""
        if book.best_bid is not None and book.best_ask is not None:
            return (book.best_bid + book.best_ask) / 2
        if book.best_bid is not None or book.best_ask is not None:
            return book.best_bid if book.best_bid is not None else book.best_ask
        trades = client.trades(symbol, limit=1)
        if trades:
            return trades[0].price
        settlements = client.settlements(symbol, limit=1)
        return settlements[0].price if settlements else None

    def _round(
        self,
        client: ExchangeClient,
        rng: random.Random,
        futures: list[Instrument],
        fair: dict[str, Decimal],
    ) -> tuple[int, int]:
        placed = traded = 0
        for future in rng.sample(futures, min(QUOTED_PER_ROUND, len(futures))):
            if self._stop_asked:
                break
            try:
                book = client.book(future.symbol, depth=1)
                reference = fair.get(future.symbol)
                if reference is None:
                    reference = self._reference(client, future.symbol, book)
                if reference is None:
                    self.stderr.write(f"{future.symbol}: no price to quote around")
                    continue
                moved = reference * Decimal(str(1 + rng.gauss(0, DRIFT)))
                fair[future.symbol] = price = on_tick(moved, future.tick_size)
                # Its own quotes only: the organization's other orders stay.
                self._cancel_quotes(client, self._quotes.get(future.symbol, []))
                self._quotes[future.symbol] = []
                spread = future.tick_size * rng.choice(SPREAD_TICKS)
                size = rng.choice([4, 8, 16])
                sides = (("buy", price - spread), ("sell", price + spread))
                ids = [next(self._ids) for _ in sides]
                # Tracked before they are sent: if the answer is lost, they are cancelled anyway.
                self._quotes[future.symbol] = ids
                # Both sides in one request: each quote is placed or refused on its own.
                quotes = client.place_orders(
                    [
                        {
                            "instrument": future.symbol,
                            "side": side,
                            "quantity": size,
                            "price": quote,
                            "post_only": True,
                            "client_order_id": client_order_id,
                        }
                        for (side, quote), client_order_id in zip(sides, ids, strict=True)
                    ]
                )
                for quote in quotes:
                    if isinstance(quote, ApiError):
                        self._refused(future, quote)
                    else:
                        placed += 1
                if future.symbol in self._halted:
                    continue  # Halted since the statuses were read: a take would be refused too.
                if rng.random() < TAKE_PROBABILITY and (book.best_bid or book.best_ask):
                    side = rng.choice(["buy", "sell"])
                    best = book.best_ask if side == "buy" else book.best_bid
                    if best is not None:
                        taken = client.place_order(
                            instrument=future.symbol,
                            side=side,
                            quantity=rng.choice([1, 2, 4]),
                            price=best,
                            time_in_force="ioc",
                        )
                        traded += taken.order.filled_quantity
            except ApiError as error:
                # A refused quote (post-only crossing, risk) is part of trading, as is a rate
                # limit the client's retries did not outwait: say so and go on.
                self._refused(future, error)
        return placed, traded

    def _refused(self, future: Instrument, error: ApiError) -> None:
        """Say why; a future halted since the statuses were read is skipped from the next
        round until they are read again."""
        self.stderr.write(f"{future.symbol}: {error.code}: {error.message}")
        if error.code == HALTED_CODE:
            self._halted.add(future.symbol)
