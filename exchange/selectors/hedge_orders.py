"""The listed options of a hedge recommendation's strategies (a buyer's cap and collar, a
seller's floor and collar), priced to stage in the instrument page's ticket.

``hedging.hedge_recommendation`` already puts each option leg on a listed option (or marks it
unavailable with the reason); this stages that option, and no other, at the price a limit
order would meet now: the best ask to buy, the best bid to sell, else the chain's fair value
(Black-76, ``risk.option_chain``) on the option's tick. That market price can differ from the
leg's model value (its ``value`` and ``premium``), which the page shows beside it. Nothing
here writes.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from exchange.models import Instrument
from exchange.selectors.market import instrument_by_symbol
from exchange.selectors.risk import Chain, ChainSide, option_chain
from exchange.services.hedging import Hedge, OptionLeg, SellHedge
from exchange.services.settlement_prices import on_tick

BUY = "buy"
SELL = "sell"


@dataclass(frozen=True)
class StagedOption:
    leg: OptionLeg
    # BUY for the option the side buys (a buyer's calls, a seller's puts), SELL for the one its
    # collar sells (a buyer's puts, a seller's calls).
    side: str
    option: Instrument | None  # None: the leg is unavailable (``unstaged`` says why).
    price: Decimal | None  # $/GPU-hr; None while the chain has no price for it.
    price_source: str | None  # "ask", "bid" or "model".
    unstaged: str = ""  # Why no option is staged, for the page; empty when one is.


def _side_of(chain: Chain, option: Instrument) -> ChainSide | None:
    for row in chain.rows:
        side = row.call if option.option_type == Instrument.OptionType.CALL else row.put
        if side is not None and side.option.pk == option.pk:
            return side
    return None


def _price(side: ChainSide, order_side: str) -> tuple[Decimal | None, str | None]:
    level = side.quote.best_ask if order_side == BUY else side.quote.best_bid
    if level is not None:
        return level.price, "ask" if order_side == BUY else "bid"
    if side.fair_value is None:
        return None, None
    tick = side.option.tick_size
    return max(on_tick(side.fair_value, tick), tick), "model"


def hedge_option_orders(hedge: Hedge | SellHedge, *, at: datetime) -> list[StagedOption]:
    """The options bought (a buyer's cap's calls, a seller's floor's puts), then those the
    collar sells (a buyer's puts, a seller's calls), each on its leg's option, priced at
    ``at``."""
    chains: dict[str, Chain] = {}
    staged = []
    bought, sold = (
        (hedge.calls, hedge.puts) if isinstance(hedge, Hedge) else (hedge.puts, hedge.calls)
    )
    for legs, order_side in ((bought, BUY), (sold, SELL)):
        for leg in legs:
            option = instrument_by_symbol(leg.symbol) if leg.symbol else None
            if option is None or option.underlying is None:
                staged.append(StagedOption(leg, order_side, None, None, None, leg.reason))
                continue
            if leg.underlying not in chains:
                chains[leg.underlying] = option_chain(option.underlying, at=at)
            side = _side_of(chains[leg.underlying], option)
            price, source = _price(side, order_side) if side is not None else (None, None)
            staged.append(StagedOption(leg, order_side, option, price, source))
    return staged
