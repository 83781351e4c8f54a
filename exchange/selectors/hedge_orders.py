"""The listed options that carry out a hedge recommendation's cap and collar, priced to stage
in the instrument page's ticket.

``hedging.hedge_recommendation`` strikes the cap's calls and the collar's puts off each month's
forward (10% over and under); listed options trade only on the strikes of each future's chain.
A cap bought below its level would be a different, dearer hedge (an in-the-money call), and a
floor sold above its level gives away more of the fall, so a call is staged on the lowest
listed strike at or above the leg's strike and a put on the highest listed strike at or below
it; when the chain lists none, the leg is shown unstaged with the reason, never on a strike on
the wrong side. The price is the one a limit order would meet now: the best ask to buy, the
best bid to sell, else the chain's fair value (Black-76, ``risk.option_chain``) on the
option's tick. Nothing here writes.
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
    option: Instrument | None  # None: nothing listed carries out the leg (``unstaged`` says why).
    price: Decimal | None  # $/GPU-hr; None while the chain has no price for it.
    price_source: str | None  # "ask", "bid" or "model".
    unstaged: str = ""  # Why no option is staged, for the page; empty when one is.


def _tradable(chain: Chain, option_type: str, on: date) -> list[ChainSide]:
    """The chain's options of ``option_type`` that can still be traded ``on`` that day."""
    return [
        side
        for row in chain.rows
        if (side := row.call if option_type == Instrument.OptionType.CALL else row.put) is not None
        and side.option.last_trading_day >= on
        and side.option.status == Instrument.Status.ACTIVE
    ]


def _strike(side: ChainSide) -> Decimal:
    strike = side.option.strike
    assert strike is not None, "a listed option has a strike"
    return strike


def _listed_for(sides: list[ChainSide], leg: OptionLeg) -> ChainSide | None:
    """The call at the lowest strike at or above the leg's (a cap never starts below its level),
    the put at the highest strike at or below it (a floor never starts above its level)."""
    if leg.option_type == Instrument.OptionType.CALL:
        above = [side for side in sides if _strike(side) >= leg.strike]
        return min(above, key=_strike) if above else None
    below = [side for side in sides if _strike(side) <= leg.strike]
    return max(below, key=_strike) if below else None


def _unstaged_reason(chain: Chain | None, sides: list[ChainSide], leg: OptionLeg) -> str:
    kind = "call" if leg.option_type == Instrument.OptionType.CALL else "put"
    if chain is None or not sides:
        return f"no {kind}s listed on {leg.underlying}"
    bound = "at or above" if leg.option_type == Instrument.OptionType.CALL else "at or below"
    return f"no listed {kind} struck {bound} {leg.strike:.3f}"


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
            sides = _tradable(chain, leg.option_type, on) if chain is not None else []
            side = _listed_for(sides, leg)
            if side is None:
                reason = _unstaged_reason(chain, sides, leg)
                staged.append(StagedOption(leg, order_side, None, None, None, reason))
                continue
            price, source = _price(side, order_side)
            staged.append(StagedOption(leg, order_side, side.option, price, source))
    return staged
