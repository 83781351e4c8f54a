"""The price an instrument is marked at, and the forward its options are valued at.

One rule for both, so that the portfolio, the option chain and the option-quote calculator see
the same price of a future at the same moment:

- the **mark** (``marks_for``) is the most recent of the instrument's latest settlement price
  and its last trade. A settlement price stands for the close of its trading day (the end of
  the closing window its price comes from: ``RiskCycle.close_at``, else
  ``EXCHANGE_SETTLEMENT_CLOSE`` of that day), so a trade executed at or after that close is
  newer and wins; otherwise the settlement price wins, even over a trade on the same day (its
  closing-window VWAP, mid, model or staff override already took that trade into account).
  With neither there is no mark.
- the **forward** (``forward_of``) an option on a future is valued at is the future's mark,
  else, while the future has neither a settlement nor a trade, the mid of its best bid and
  best ask. A position is never marked at a quote: a position exists only through a trade or
  a settlement, so it always has a mark.

Why the latest observation and not always the settlement: after the daily cycle posts
variation margin it resets each futures position's cost memo to the settlement value, so a
mark older than the settlement (the day's earlier last trade) shows a profit or loss that was
already paid. Why a trade before the mid: a trade is an executed price, and settlement prices
prefer trades (closing-window VWAP) to the mid for the same reason; the mid of a wide or
one-lot market says little about the price.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import models
from django.db.models import OuterRef, Subquery

from exchange.calendar import close_at
from exchange.models import Instrument, RiskCycle, SettlementPrice, Trade
from exchange.selectors.market import Quote, quotes_for

PRICE_QUANTUM = Decimal("0.000001")  # $/GPU-hr: a mid of two prices is rounded to it.


class MarkSource(models.TextChoices):
    SETTLEMENT = "settlement", "Latest settlement price"
    TRADE = "trade", "Last trade"
    MID = "mid", "Mid of best bid and ask"


@dataclass(frozen=True)
class Mark:
    """A price ($/GPU-hr) and where it comes from."""

    price: Decimal
    source: MarkSource


def mark_price(instrument: Instrument) -> Decimal | None:
    """``instrument``'s mark price (``marks_for``), None when it has none."""
    mark = marks_for([instrument]).get(instrument.pk)
    return mark.price if mark is not None else None


def marks_for(instruments: Sequence[Instrument]) -> dict[int, Mark]:
    """Each instrument's mark (see the module docstring), by primary key; an instrument with
    neither a settlement price nor a trade is left out. Two queries, whatever the number of
    instruments (one when none has a settlement price)."""
    latest_settlement = SettlementPrice.objects.filter(instrument_id=OuterRef("pk")).order_by(
        "-trading_date"
    )
    last_trade = Trade.objects.filter(instrument_id=OuterRef("pk")).order_by("-sequence")
    rows = list(
        Instrument.objects.filter(pk__in=[instrument.pk for instrument in instruments])
        .annotate(
            settled_price=Subquery(latest_settlement.values("price")[:1]),
            settled_on=Subquery(latest_settlement.values("trading_date")[:1]),
            traded_price=Subquery(last_trade.values("price")[:1]),
            traded_at=Subquery(last_trade.values("executed_at")[:1]),
        )
        .values("pk", "settled_price", "settled_on", "traded_price", "traded_at")
    )
    days = {row["settled_on"] for row in rows if row["settled_on"] is not None}
    closes = _closes(days)
    marks: dict[int, Mark] = {}
    for row in rows:
        settled, traded = _price(row["settled_price"]), _price(row["traded_price"])
        if settled is not None and (traded is None or row["traded_at"] < closes[row["settled_on"]]):
            marks[row["pk"]] = Mark(settled, MarkSource.SETTLEMENT)
        elif traded is not None:
            marks[row["pk"]] = Mark(traded, MarkSource.TRADE)
    return marks


def _price(value: Decimal | None) -> Decimal | None:
    """A price read through a subquery, at the places of the price columns: SQLite hands it
    back as a float's digits (2.60000000000000), which would then show and be recorded so."""
    return None if value is None else value.quantize(PRICE_QUANTUM)


def _closes(days: set[date]) -> dict[date, datetime]:
    """The close each settled day's prices stand for: its cycle's, else the standard close (a
    price written without a cycle, as by hand)."""
    if not days:
        return {}
    cycles = dict(
        RiskCycle.objects.filter(trading_date__in=days).values_list("trading_date", "close_at")
    )
    return {day: cycles.get(day) or close_at(day) for day in days}


def forward_of(future: Instrument, *, quote: Quote | None = None) -> Mark | None:
    """The price options on ``future`` are valued at: its mark, else the mid of its best bid
    and best ask (``quote``, read when not given), else None. The option chain and the
    option-quote calculator both take their forward from here."""
    mark = marks_for([future]).get(future.pk)
    if mark is not None:
        return mark
    if quote is None:
        quote = quotes_for([future])[future.pk]
    if quote.best_bid is None or quote.best_ask is None:
        return None
    mid = (quote.best_bid.price + quote.best_ask.price) / 2
    return Mark(mid.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN), MarkSource.MID)
