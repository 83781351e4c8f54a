"""How a pool shares what it bought: pure functions on whole lots and integer amounts.

- ``price_tiers``: a pool buys each instrument with a few orders, one per tier of limit prices;
  a tier's price is the lowest limit in it, so no member ever pays above its limit.
- ``allocate``: the lots a tier filled, shared among the tier's requests pro rata by requested
  quantity (largest remainder) or in priority order; never above a request, and exactly the
  lots filled, no more and no fewer.
- ``split``: an integer amount (micro-USD of cost or fees) shared by weights, largest remainder,
  so the parts always sum to the whole.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


class AllocationError(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    key: int  # The demand's id: ties are broken by it, so allocation is deterministic.
    lots: int
    limit: Decimal
    priority: int = 0


PRO_RATA = "pro_rata"
PRIORITY = "priority"


def price_tiers(requests: Sequence[Request], tiers_max: int) -> list[tuple[Decimal, list[Request]]]:
    """The requests grouped into at most ``tiers_max`` tiers of neighbouring limits, highest
    first; each tier is priced at the lowest limit in it."""
    if tiers_max < 1:
        raise AllocationError("At least one price tier is needed.")
    limits = sorted({request.limit for request in requests}, reverse=True)
    if not limits:
        return []
    # Split the distinct limits into tiers_max contiguous groups as even as possible.
    groups = min(tiers_max, len(limits))
    size, extra = divmod(len(limits), groups)
    tiers: list[tuple[Decimal, list[Request]]] = []
    start = 0
    for index in range(groups):
        end = start + size + (1 if index < extra else 0)
        members = set(limits[start:end])
        tier_requests = sorted(
            (r for r in requests if r.limit in members), key=lambda r: (r.priority, r.key)
        )
        tiers.append((min(members), tier_requests))
        start = end
    return tiers


def allocate(requests: Sequence[Request], filled: int, rule: str) -> dict[int, int]:
    """Lots per request key; the values sum to ``filled``."""
    total = sum(request.lots for request in requests)
    if filled < 0 or filled > total:
        raise AllocationError(f"{filled} lots filled against {total} requested.")
    if len({request.key for request in requests}) != len(requests):
        raise AllocationError("Request keys must be unique.")
    if any(request.lots < 0 for request in requests):
        raise AllocationError("A request cannot ask for fewer than zero lots.")
    if rule == PRIORITY:
        shares: dict[int, int] = {}
        left = filled
        for request in sorted(requests, key=lambda r: (r.priority, r.key)):
            shares[request.key] = min(request.lots, left)
            left -= shares[request.key]
        return shares
    if rule != PRO_RATA:
        raise AllocationError(f"Unknown allocation rule {rule!r}.")
    if total == 0:
        return {request.key: 0 for request in requests}
    # Ties between equal remainders go to the lower key, whatever order the requests came in.
    by_key = sorted(requests, key=lambda r: r.key)
    keys = [request.key for request in by_key]
    return dict(zip(keys, split(filled, [r.lots for r in by_key]), strict=True))


def split(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` in parts proportional to ``weights``: each part is its floor, and what the
    floors leave goes one unit each to the largest remainders (earlier first on ties). A part
    never exceeds its exact share rounded up, so with ``amount <= sum(weights)`` no part
    exceeds its weight."""
    if any(weight < 0 for weight in weights):
        raise AllocationError("Weights are not negative.")
    total = sum(weights)
    if total == 0:
        if amount:
            raise AllocationError("Nothing to share an amount by.")
        return [0] * len(weights)
    floors = [amount * weight // total for weight in weights]
    remainders = [amount * weight % total for weight in weights]
    left = amount - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in order[:left]:
        floors[index] += 1
    return floors
