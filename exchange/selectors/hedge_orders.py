"""The listed options that carry out a hedge recommendation's cap and collar, priced to stage
in the instrument page's ticket.

``hedging.hedge_recommendation`` strikes the cap's calls and the collar's puts off each month's
forward (10% over and under); listed options trade only on the strikes of each future's chain.
A leg is staged on the listed option of its type nearest its strike, the tie going out of the
money (the higher call, the lower put), at the price a limit order would meet now: the best
ask to buy, the best bid to sell, else the chain's fair value (Black-76, ``risk.option_chain``)
on the option's tick. Nothing here writes.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from exchange.models import Instrument
from exchange.selectors.market import instrument_by_symbol
from exchange.selectors.risk import Chain, ChainSide, option_chain
from exchange.services.hedging import Hedge, OptionLeg
from exchange.services.settlement_prices import on_tick

BUY = "buy"
SELL = "sell"


@dataclass(frozen=True)
class StagedOption:
    leg: OptionLeg
    side: str  # BUY for the cap's and the collar's calls, SELL for the collar's puts.
    option: Instrument | None  # None: the future's chain lists no option of the leg's type.
    price: Decimal | None  # $/GPU-hr; None while the chain has no price for it.
    price_source: str | None  # "ask", "bid" or "model".


def _nearest(chain: Chain, leg: OptionLeg, on: date) -> ChainSide | None:
    sides = [
        side
        for row in chain.rows
        if (side := row.call if leg.option_type == Instrument.OptionType.CALL else row.put)
        is not None
        and side.option.last_trading_day >= on
        and side.option.status == Instrument.Status.ACTIVE
    ]
    if not sides:
        return None
    out_of_the_money = 1 if leg.option_type == Instrument.OptionType.CALL else -1

    def distance(side: ChainSide) -> tuple[Decimal, Decimal]:
        strike = side.option.strike
        assert strike is not None, "a listed option has a strike"
        return abs(strike - leg.strike), -out_of_the_money * strike

    return min(sides, key=distance)


def _price(side: ChainSide, order_side: str) -> tuple[Decimal | None, str | None]:
    level = side.quote.best_ask if order_side == BUY else side.quote.best_bid
    if level is not None:
        return level.price, "ask" if order_side == BUY else "bid"
    if side.fair_value is None:
        return None, None
    tick = side.option.tick_size
    return max(on_tick(side.fair_value, tick), tick), "model"


def hedge_option_orders(hedge: Hedge, *, on: date) -> list[StagedOption]:
    """The cap's calls (bought), then the collar's puts (sold), each on its listed option."""
    chains: dict[str, Chain | None] = {}
    staged = []
    for legs, order_side in ((hedge.calls, BUY), (hedge.puts, SELL)):
        for leg in legs:
            if leg.underlying not in chains:
                future = instrument_by_symbol(leg.underlying)
                chains[leg.underlying] = option_chain(future, on=on) if future else None
            chain = chains[leg.underlying]
            side = _nearest(chain, leg, on) if chain is not None else None
            if side is None:
                staged.append(StagedOption(leg, order_side, None, None, None))
                continue
            price, source = _price(side, order_side)
            staged.append(StagedOption(leg, order_side, side.option, price, source))
    return staged
