"""The demo market maker: quotes both sides of the demo market through the REST API.

It is an API client like any automated trader's (``exchange_client``); it touches the database
only to create its API key when none is given.
"""

import random
import time
from decimal import ROUND_HALF_UP, Decimal

import requests
from django.core.management.base import BaseCommand, CommandError

from exchange.models import Organization
from exchange.services.api_keys import api_key_create
from exchange_client import ApiError, ExchangeClient, Instrument

SERVER_WAIT_SECONDS_MAX = 120
QUOTED_PER_ROUND = 6
FRONT_MONTHS = 2
SPREAD_TICKS = (2, 3, 4)
DRIFT = 0.002  # Standard deviation of the fair price's move per round, as a fraction.
TAKE_PROBABILITY = 0.35  # How often a round also takes the best price somewhere.
CANCEL_AFTER_SECONDS = 15  # The dead man's switch, armed again every round.


def on_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick


class Command(BaseCommand):
    help = (
        "Quote both sides of the demo market through the REST API, and take now and then, so "
        "the market lives while the server runs. Creates an API key for --org unless --key."
    )

    def add_arguments(self, parser):
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

    def handle(self, *args, **options):
        rng = random.Random(options["seed"])
        cancel_after = options["cancel_after"]
        if cancel_after and cancel_after < 3 * options["interval"]:
            raise CommandError("--cancel-after must be 0 or at least three rounds' --interval.")
        client = ExchangeClient(options["url"], options["key"] or self._key(options["org"]))
        self._wait_for(client)
        futures = self._futures(client)
        if not futures:
            raise CommandError("No futures to quote: load the demo market (seed_demo).")
        self.stdout.write(f"quoting {len(futures)} futures at {options['url']} as {options['org']}")
        fair: dict[str, Decimal] = {}
        rounds = 0
        try:
            while options["rounds"] == 0 or rounds < options["rounds"]:
                rounds += 1
                if cancel_after:
                    self._arm(client, cancel_after)
                placed, traded = self._round(client, rng, futures, fair)
                self.stdout.write(f"round {rounds}: {placed} quotes, {traded} contracts taken")
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            pass
        finally:
            try:
                for future in futures:
                    client.cancel_all(future.symbol)
                if cancel_after:
                    client.cancel_all_after(0)
            except (ApiError, requests.RequestException):
                pass  # The switch, when armed, withdraws what is left.

    def _arm(self, client: ExchangeClient, timeout_seconds: int) -> None:
        """Arm the switch again: if this process stops without withdrawing its quotes, the
        exchange cancels them ``timeout_seconds`` after the last round."""
        try:
            client.cancel_all_after(timeout_seconds)
        except ApiError as error:
            self.stderr.write(f"cancel-all-after: {error.code}: {error.message}")
            if error.retry_after_seconds is not None:
                time.sleep(error.retry_after_seconds)

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
        by_strip: dict[tuple[str, str], list[Instrument]] = {}
        for instrument in client.instruments(kind="future", status="active"):
            by_strip.setdefault((instrument.sku, instrument.region), []).append(instrument)
        chosen = []
        for strip in by_strip.values():
            chosen += sorted(strip, key=lambda i: i.delivery_start)[:FRONT_MONTHS]
        return chosen

    def _round(
        self,
        client: ExchangeClient,
        rng: random.Random,
        futures: list[Instrument],
        fair: dict[str, Decimal],
    ) -> tuple[int, int]:
        placed = traded = 0
        for future in rng.sample(futures, min(QUOTED_PER_ROUND, len(futures))):
            try:
                book = client.book(future.symbol, depth=1)
                reference = fair.get(future.symbol)
                if reference is None and book.best_bid and book.best_ask:
                    reference = (book.best_bid + book.best_ask) / 2
                if reference is None:
                    continue
                moved = reference * Decimal(str(1 + rng.gauss(0, DRIFT)))
                fair[future.symbol] = price = on_tick(moved, future.tick_size)
                client.cancel_all(future.symbol)
                spread = future.tick_size * rng.choice(SPREAD_TICKS)
                size = rng.choice([4, 8, 16])
                # Both sides in one request: each quote is placed or refused on its own.
                quotes = client.place_orders(
                    [
                        {
                            "instrument": future.symbol,
                            "side": side,
                            "quantity": size,
                            "price": quote,
                            "post_only": True,
                        }
                        for side, quote in (("buy", price - spread), ("sell", price + spread))
                    ]
                )
                for quote in quotes:
                    if isinstance(quote, ApiError):
                        self.stderr.write(f"{future.symbol}: {quote.code}: {quote.message}")
                    else:
                        placed += 1
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
                # A refused quote (post-only crossing, risk) is part of trading; say so and go on.
                self.stderr.write(f"{future.symbol}: {error.code}: {error.message}")
                if error.retry_after_seconds is not None:
                    # Rate limited: the next request would be refused too until the window ends.
                    time.sleep(error.retry_after_seconds)
        return placed, traded
