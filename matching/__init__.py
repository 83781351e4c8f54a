"""Pure-Python price-time priority matching engine for the GPU-capacity exchange.

Commands go in, frozen dataclass events come out. Prices are integers in ticks, quantities
integers in lots; the package does no I/O, keeps no balances and imports nothing from the
rest of the project. `Engine` is the fast engine; `matching.reference.ReferenceEngine` is a
slow, obviously correct one that must emit identical events.

Decisions
---------
- Validation order of a new order: quantity <= 0, limit price <= 0, duplicate id, post-only
  market order, post-only IOC or FOK order, post-only that would cross, GTD without expiry,
  GTD already expired. A
  rejected command emits one `Rejected` and changes nothing; in particular a rejected order's
  id is not recorded and may be sent again. Replace checks quantity < 0, then price (None or
  <= 0), then unknown order.
- Order ids are unique per instrument: every id a book ever accepted (live, filled, cancelled
  or expired) is rejected as a duplicate. The set lives as long as the book (`Engine.drop`
  forgets it; `Engine.restore` records the restored ids).
- Cancel or Replace naming an order that is not resting in that instrument's book (never
  seen, already filled/cancelled, or resting in another instrument) is MATCHING_UNKNOWN_ORDER;
  it does not create a book.
- A market order (price None) trades against any price and never rests; its remainder is
  cancelled with reason MARKET_REMAINDER whatever its tif (FOK still applies).
- FOK: executes only if it would trade its full quantity now. The check walks the book as
  matching would under the taker's self-trade mode: only other groups' quantity counts;
  under CANCEL_OLDEST own orders are skipped (and cancelled only if the FOK executes); under
  the other modes reaching an own order before the quantity is covered makes it not
  fillable. So a FOK order either trades its whole quantity or emits Accepted + Cancelled
  (FOK_NOT_FILLABLE) with no trades and no self-trade side effects.
- Post-only crossing is judged on price alone (also against its own group's orders).
  A post-only order must rest, which IOC and FOK orders never do: a post-only IOC or FOK
  order is rejected with MATCHING_POST_ONLY_TIME_IN_FORCE (it could never trade nor rest).
- GTD: `Tick(now)` cancels resting GTD orders with expires_at <= now, per book in ascending
  instrument order, within a book by (expires_at, order_id). A GTD order arriving with
  expires_at <= the last tick's now (engine-wide ticks, or that book's own ticks) is
  rejected with MATCHING_ALREADY_EXPIRED. ``expires_at`` of non-GTD orders is stored but
  ignored. A Tick for an instrument without a book does nothing.
- Self-trade prevention applies between two orders of the same ``stp_group`` (`NewOrder`,
  `RestingOrder`): by default each account is its own group; the exchange passes the
  account's organization, so two accounts of one firm (its main account, a further one, a
  portfolio pool's) never trade with each other, as with CME's firm-level self-match
  prevention ID. An "own" order in these notes is one of the taker's group; trades still
  name the accounts. It uses the taker's mode; when both orders get a `Cancelled` event
  (CANCEL_BOTH, DECREMENT) the resting order's comes first.
- Replace with the same price and a quantity <= the open quantity keeps time priority
  (an unchanged replace is a no-op that still emits Replaced with priority_kept=True). Any
  other change loses priority and is matched like a new arrival after its Replaced event,
  keeping account, stp group, side, stp, tif, expiry and post-only. A post-only order whose
  new price would cross is rejected (MATCHING_POST_ONLY_WOULD_CROSS) and left untouched.
  Quantity 0 cancels with reason REPLACED_TO_ZERO (no Replaced event).
- `RestingOrder` has extra trailing fields ``post_only: bool = False`` and ``stp_group`` so
  that `restore` keeps post-only orders post-only and every order in its group.
"""

from matching.book import OrderBook
from matching.engine import Engine
from matching.model import (
    Accepted,
    Cancel,
    Cancelled,
    CancelReason,
    Command,
    Event,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    Replaced,
    RestingOrder,
    SelfTradePrevention,
    Side,
    Tick,
    TimeInForce,
    Trade,
)

__all__ = [
    "Accepted",
    "Cancel",
    "CancelReason",
    "Cancelled",
    "Command",
    "Engine",
    "Event",
    "NewOrder",
    "OrderBook",
    "RejectReason",
    "Rejected",
    "Replace",
    "Replaced",
    "RestingOrder",
    "SelfTradePrevention",
    "Side",
    "Tick",
    "TimeInForce",
    "Trade",
]
