"""Random trading through the real services: for demos, load and invariant checks."""

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from exchange.errors import ExchangeError
from exchange.models import LIVE_STATUSES, Account, Instrument, Order
from exchange.selectors.market import quotes_for
from exchange.services.orders import order_cancel, order_place, order_replace

# Share of each action in the random flow; the rest are passive limit orders.
CANCEL_SHARE = 0.25
REPLACE_SHARE = 0.05
MARKETABLE_SHARE = 0.10
# How far from the mid passive orders rest, in ticks.
SPREAD_TICKS_MAX = 12
LIVE_ORDERS_TRACKED_MAX = 5000


@dataclass
class SimulationReport:
    actions: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)


@dataclass
class MarketSimulation:
    accounts: list[Account]
    instruments: list[Instrument]
    seed: int = 1
    rng: random.Random = field(init=False)
    mids: dict[int, int] = field(init=False)  # Mid price in ticks, a random walk per instrument.
    live: list[Order] = field(default_factory=list)
    report: SimulationReport = field(default_factory=SimulationReport)

    def __post_init__(self) -> None:
        assert self.accounts and self.instruments
        self.rng = random.Random(self.seed)
        quotes = quotes_for(self.instruments)
        self.mids = {}
        for instrument in self.instruments:
            quote = quotes[instrument.pk]
            reference = (
                quote.last_price
                or (quote.best_bid.price if quote.best_bid else None)
                or Decimal("2.5")
            )
            self.mids[instrument.pk] = max(
                SPREAD_TICKS_MAX + 1, int(reference / instrument.tick_size)
            )

    def step(self) -> None:
        roll = self.rng.random()
        try:
            if roll < CANCEL_SHARE and self.live:
                self._cancel()
            elif roll < CANCEL_SHARE + REPLACE_SHARE and self.live:
                self._replace()
            elif roll < CANCEL_SHARE + REPLACE_SHARE + MARKETABLE_SHARE:
                self._marketable()
            else:
                self._passive()
        except ExchangeError as error:
            self.report.rejections[str(error.code)] += 1

    def run(self, orders: int) -> SimulationReport:
        for _ in range(orders):
            self.step()
        return self.report

    def _instrument(self) -> Instrument:
        instrument = self.rng.choice(self.instruments)
        mid = self.mids[instrument.pk] + self.rng.choice((-1, 0, 0, 1))
        self.mids[instrument.pk] = max(SPREAD_TICKS_MAX + 1, mid)
        return instrument

    def _quantity(self, instrument: Instrument) -> int:
        return instrument.lot_size * self.rng.choice((1, 1, 2, 4, 8))

    def _track(self, order: Order) -> None:
        if order.status in LIVE_STATUSES:
            self.live.append(order)
            if len(self.live) > LIVE_ORDERS_TRACKED_MAX:
                self.live.pop(0)

    def _passive(self) -> None:
        instrument = self._instrument()
        side = self.rng.choice(("buy", "sell"))
        offset = self.rng.randint(-2, SPREAD_TICKS_MAX)
        ticks = (
            self.mids[instrument.pk] - offset
            if side == "buy"
            else self.mids[instrument.pk] + offset
        )
        order = order_place(
            account=self.rng.choice(self.accounts),
            instrument=instrument,
            side=side,
            price=instrument.tick_size * max(1, ticks),
            quantity=self._quantity(instrument),
            post_only=self.rng.random() < 0.1,
            self_trade_prevention=self.rng.choice(
                [choice.value for choice in Order.SelfTradePrevention]
            ),
        )
        self.report.actions["limit"] += 1
        self._track(order)

    def _marketable(self) -> None:
        instrument = self._instrument()
        side = self.rng.choice(("buy", "sell"))
        if self.rng.random() < 0.5:
            order_place(
                account=self.rng.choice(self.accounts),
                instrument=instrument,
                side=side,
                type=Order.Type.MARKET,
                time_in_force=Order.TimeInForce.IOC,
                quantity=self._quantity(instrument),
            )
            self.report.actions["market"] += 1
        else:
            through = SPREAD_TICKS_MAX // 2
            ticks = (
                self.mids[instrument.pk] + through
                if side == "buy"
                else self.mids[instrument.pk] - through
            )
            order_place(
                account=self.rng.choice(self.accounts),
                instrument=instrument,
                side=side,
                price=instrument.tick_size * max(1, ticks),
                time_in_force=self.rng.choice((Order.TimeInForce.IOC, Order.TimeInForce.FOK)),
                quantity=self._quantity(instrument),
            )
            self.report.actions["ioc_fok"] += 1

    def _pop_live(self) -> Order:
        order = self.live.pop(self.rng.randrange(len(self.live)))
        order.refresh_from_db()
        return order

    def _cancel(self) -> None:
        order = self._pop_live()
        order_cancel(order=order)
        self.report.actions["cancel"] += 1

    def _replace(self) -> None:
        order = self._pop_live()
        instrument = order.instrument
        assert order.price is not None  # Only limit orders are tracked: market orders never rest.
        new_price = max(
            instrument.tick_size, order.price + instrument.tick_size * self.rng.choice((-1, 0, 1))
        )
        order = order_replace(order=order, price=new_price, quantity=self._quantity(instrument))
        self.report.actions["replace"] += 1
        self._track(order)
