"""Reads of portfolio pools for the sponsor's and the members' pages, the API and the admin.

Isolation is decided here, not in the views: ``pools_visible_to`` and ``member_of`` answer
what an organization may see. A sponsor sees its pools whole; a member sees its own demand,
allocations and report, and of the pool only its name, rule, subsidy and cut-off.

Reports compare what each allocation cost with two prices, per GPU-hour:
- the market's average: the volume-weighted price of the instrument's trades by others than
  the pool over ``EXCHANGE_POOL_MARKET_WINDOW_DAYS`` up to the allocation;
- the on-demand benchmark: the SKU's ``on_demand_price`` (the large clouds' list price).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Q, QuerySet, Sum

from exchange.models import Instrument, Order, Organization, Side, Trade
from exchange.models.pools import (
    Pool,
    PoolAllocation,
    PoolDemand,
    PoolMember,
    PoolOrder,
    PoolRound,
    PoolTransfer,
)
from exchange.selectors import orders as orders_selector
from exchange.services.ledger_accounts import micros_to_usd, position_account_code
from ledger.models import Account as LedgerAccount

PRICE_PLACES = Decimal("0.000001")
CENTS = Decimal("0.01")


def pools_sponsored_by(organization: Organization) -> QuerySet[Pool]:
    return Pool.objects.filter(sponsor=organization).select_related("account", "sponsor")


def memberships_of(organization: Organization) -> QuerySet[PoolMember]:
    return PoolMember.objects.filter(organization=organization).select_related(
        "pool__sponsor", "account"
    )


def pool_of_sponsor(organization: Organization, pool_id: int) -> Pool | None:
    return pools_sponsored_by(organization).filter(pk=pool_id).first()


def member_of(organization: Organization, pool_id: int) -> PoolMember | None:
    """``organization``'s membership of pool ``pool_id`` (None: not a member, or an id no row
    can have: the database cannot compare it, as a page's path may give it)."""
    if not 0 < pool_id <= orders_selector.ID_MAX:
        return None
    return memberships_of(organization).filter(pool_id=pool_id).first()


def pools_visible_to(organization: Organization) -> QuerySet[Pool]:
    return Pool.objects.filter(
        Q(sponsor=organization) | Q(members__organization=organization)
    ).distinct()


def members_of(pool: Pool) -> QuerySet[PoolMember]:
    return pool.members.select_related("organization", "account").order_by("priority", "id")


def demands(
    pool: Pool, *, member: PoolMember | None = None, status: str = ""
) -> QuerySet[PoolDemand]:
    rows = PoolDemand.objects.filter(pool=pool).select_related(
        "member__organization", "instrument__sku", "instrument__region"
    )
    if member is not None:
        rows = rows.filter(member=member)
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("instrument__delivery_start", "instrument__symbol", "id")


def demand_of(member: PoolMember, demand_id: int) -> PoolDemand | None:
    return demands(member.pool, member=member).filter(pk=demand_id).first()


@dataclass(frozen=True)
class DemandTotal:
    instrument: Instrument
    members: int
    quantity: int
    gpu_hours: int
    lowest_limit: Decimal
    highest_limit: Decimal


def open_demand_by_instrument(pool: Pool) -> list[DemandTotal]:
    """What the next cut-off would aggregate, per instrument (sponsor only)."""
    grouped: dict[int, list[PoolDemand]] = defaultdict(list)
    for demand in demands(pool, status=PoolDemand.Status.OPEN).filter(member__status="active"):
        grouped[demand.instrument_id].append(demand)
    return [
        DemandTotal(
            instrument=rows[0].instrument,
            members=len({d.member_id for d in rows}),
            quantity=sum(d.quantity for d in rows),
            gpu_hours=sum(d.gpu_hours for d in rows),
            lowest_limit=min(d.limit_price for d in rows),
            highest_limit=max(d.limit_price for d in rows),
        )
        for rows in grouped.values()
    ]


def rounds(pool: Pool) -> QuerySet[PoolRound]:
    return pool.rounds.order_by("-number")


def round_of(pool: Pool, round_id: int) -> PoolRound | None:
    return rounds(pool).filter(pk=round_id).first()


def pool_orders(round_: PoolRound) -> QuerySet[PoolOrder]:
    """A round's tier orders; a tier above the instrument's largest order is several, at its
    price, in the order they were placed."""
    return round_.orders.select_related("instrument", "order").order_by(
        "instrument__symbol", "-price", "pk"
    )


def allocations(
    pool: Pool, *, member: PoolMember | None = None, round_: PoolRound | None = None
) -> QuerySet[PoolAllocation]:
    rows = PoolAllocation.objects.filter(round__pool=pool).select_related(
        "member__organization", "instrument__sku", "round", "demand"
    )
    if member is not None:
        rows = rows.filter(member=member)
    if round_ is not None:
        rows = rows.filter(round=round_)
    return rows.order_by("-round__number", "instrument__symbol", "member__priority", "id")


def transfers(pool: Pool, *, member: PoolMember | None = None) -> QuerySet[PoolTransfer]:
    rows = pool.transfers.select_related("member__organization", "instrument", "actor")
    return rows.filter(member=member) if member is not None else rows


def pool_offer_of(pool: Pool, order_id: int) -> Order | None:
    """One of the pool's offers (``services.pools.pool_offer``): a sell of the pool's account,
    live or not; None for a tier buy of a round, another account's order or no order."""
    order = orders_selector.order_of(pool.account, order_id)
    return order if order is not None and order.side == Side.SELL else None


@dataclass(frozen=True)
class Holding:
    instrument: Instrument
    contracts: int


def pool_holdings(pool: Pool) -> list[Holding]:
    """The contracts the pool's account holds (unfunded allocations, capacity taken back)."""
    prefix = position_account_code(pool.account, "")
    held = {
        code[len(prefix) :]: debits - credits
        for code, debits, credits in LedgerAccount.objects.filter(code__startswith=prefix)
        .exclude(debits_posted=F("credits_posted"))
        .values_list("code", "debits_posted", "credits_posted")
    }
    instruments = Instrument.objects.filter(symbol__in=held).order_by("delivery_start", "symbol")
    return [Holding(i, held[i.symbol]) for i in instruments if held[i.symbol]]


def member_holdings(member: PoolMember) -> list[Holding]:
    """The member's contracts from the pool: per instrument the pool allocated or reallocated
    to it, what it received and has not given back (``contracts_from_pool``), at most its
    position. Contracts it bought in the market itself are its own business, not the sponsor's,
    and not the pool's to take back."""
    symbols = set(
        allocations(member.pool, member=member)
        .filter(status=PoolAllocation.Status.SETTLED)
        .values_list("instrument__symbol", flat=True)
    ) | set(transfers(member.pool, member=member).values_list("instrument__symbol", flat=True))
    codes = {position_account_code(member.account, symbol): symbol for symbol in symbols}
    held = {
        codes[code]: debits - credits
        for code, debits, credits in LedgerAccount.objects.filter(code__in=codes).values_list(
            "code", "debits_posted", "credits_posted"
        )
    }
    instruments = Instrument.objects.filter(symbol__in=held).order_by("delivery_start", "symbol")
    holdings = (
        Holding(i, min(held[i.symbol], contracts_from_pool(member, i))) for i in instruments
    )
    return [holding for holding in holdings if holding.contracts > 0]


def contracts_from_pool(member: PoolMember, instrument: Instrument) -> int:
    """Contracts of ``instrument`` the member received from this pool and has not given back:
    its settled allocations and the reallocations to it, less what was taken back. The most
    ``services.pools.pool_take_back`` may take: contracts the member bought in the market with
    its own cash are not the pool's to take."""
    allocated: int = (
        PoolAllocation.objects.filter(
            member=member, instrument=instrument, status=PoolAllocation.Status.SETTLED
        ).aggregate(total=Sum("quantity"))["total"]
        or 0
    )
    moved: dict[str, int] = dict(
        PoolTransfer.objects.filter(member=member, instrument=instrument)
        .values("kind")
        .annotate(total=Sum("quantity"))
        .values_list("kind", "total")
    )
    reallocated = moved.get(PoolTransfer.Kind.REALLOCATE, 0)
    taken_back = moved.get(PoolTransfer.Kind.TAKE_BACK, 0)
    return allocated + reallocated - taken_back


def demand_uncovered(member: PoolMember, instrument: Instrument) -> int:
    """Contracts of ``instrument`` (one delivery month) the member asked this pool for and has
    not received from it: the most ``services.pools.pool_reallocate`` may give it.

    - Asked: the quantity of the member's demand for the instrument whose round has allocated
      (status ``allocated``, whatever the allocation's outcome). Open demand waits for the next
      cut-off and submitted demand for its working round, which will serve it; withdrawn demand
      asks for nothing. Counting them would serve the same demand twice.
    - Received: the contracts of its ``settled`` allocations plus every reallocation to it. An
      ``unfunded`` allocation (the member could not pay, the lots stayed with the pool) and a
      ``none`` one (nothing filled) received nothing, so their demand stays uncovered.
    - Take-backs give nothing back: contracts taken back from a member never make room for
      new ones, so what a member ever receives from the pool stays within what it asked for;
      to get capacity again it enters new demand.
    """
    return sum(quantity for _, quantity in demand_uncovered_by_limit(member, instrument))


def demand_uncovered_by_limit(
    member: PoolMember, instrument: Instrument
) -> list[tuple[Decimal, int]]:
    """``demand_uncovered`` by the limit price the member gave it: (limit, contracts), highest
    limit first. Each allocated demand is uncovered by what its own settled allocation did not
    give it. Reallocations name no demand, so each is counted against demand by the price it
    moved at (``covered_by_reallocations``): a reallocation at a price covers demand whose limit
    is at least that price, the lowest such limit first, leaving the highest limits for a mark
    that may rise. A reallocation at a price above a limit would make the member pay more than
    it agreed to."""
    demands = PoolDemand.objects.filter(
        member=member, instrument=instrument, status=PoolDemand.Status.ALLOCATED
    ).values_list("pk", "quantity", "limit_price")
    settled = dict(
        PoolAllocation.objects.filter(
            member=member, instrument=instrument, status=PoolAllocation.Status.SETTLED
        ).values_list("demand_id", "quantity")
    )
    reallocations = list(
        PoolTransfer.objects.filter(
            member=member, instrument=instrument, kind=PoolTransfer.Kind.REALLOCATE
        ).values_list("price", "quantity")
    )
    uncovered = [(limit, quantity - settled.get(pk, 0)) for pk, quantity, limit in demands]
    return covered_by_reallocations(uncovered, reallocations)


def covered_by_reallocations(
    uncovered: list[tuple[Decimal, int]], reallocations: list[tuple[Decimal, int]]
) -> list[tuple[Decimal, int]]:
    """What ``uncovered`` demand, (limit, contracts), leaves once ``reallocations``, (price,
    contracts), are counted against it: (limit, contracts) still uncovered, highest limit
    first, rows with nothing left dropped.

    Reallocations are taken by price, highest first, each covering the uncovered demand of the
    lowest limit at least its price. For constraints "limit >= price" that greedy leaves the
    highest limits uncovered that any assignment could, so a later reallocation at a higher
    mark finds them. What of a reallocation no such demand covers (one made before
    reallocations had to be within a limit) covers the highest limits left, as a round's tiers
    fill the highest limits first.

    >>> covered_by_reallocations(
    ...     [(Decimal("2.70"), 5), (Decimal("2.50"), 10)], [(Decimal("2.40"), 5)]
    ... )
    [(Decimal('2.70'), 5), (Decimal('2.50'), 5)]
    """
    ranked = sorted(uncovered, key=lambda row: row[0], reverse=True)  # Highest limit first.
    limits = [limit for limit, _ in ranked]
    left = [max(quantity, 0) for _, quantity in ranked]
    unmatched = 0
    for price, quantity in sorted(reallocations, key=lambda row: row[0], reverse=True):
        for index in reversed(range(len(limits))):  # Lowest limit first.
            if limits[index] >= price:
                covered = min(left[index], quantity)
                left[index] -= covered
                quantity -= covered
        unmatched += quantity
    for index in range(len(limits)):
        covered = min(left[index], unmatched)
        left[index] -= covered
        unmatched -= covered
    return [(limit, contracts) for limit, contracts in zip(limits, left, strict=True) if contracts]


def credit_owed(member: PoolMember) -> Decimal:
    """What the member owes the pool under the credit line, USD, read without opening the
    ledger account (``services.pools.credit_outstanding`` opens it on first use; its code is
    the one ``services.pools.borrowed_account`` opens)."""
    code = f"trading:{member.account_id}:pool-borrowed:{member.pool.account_id}:USD"
    borrowed = LedgerAccount.objects.filter(code=code).first()
    return micros_to_usd(-borrowed.balance) if borrowed is not None else Decimal(0)


# Reports -----------------------------------------------------------------------------------


def market_average(instrument: Instrument, round_: PoolRound, pool: Pool) -> Decimal | None:
    """Volume-weighted price of the instrument's trades by others than the pool, over the
    window up to the round's allocation."""
    end = round_.allocated_at or round_.closes_at
    start = round_.cut_off_at - timedelta(days=settings.EXCHANGE_POOL_MARKET_WINDOW_DAYS)
    trades = (
        Trade.objects.filter(instrument=instrument, executed_at__gte=start, executed_at__lte=end)
        .exclude(buyer_account=pool.account_id)
        .exclude(seller_account=pool.account_id)
        .aggregate(value=Sum(F("price") * F("quantity")), quantity=Sum("quantity"))
    )
    quantity: int | None = trades["quantity"]
    if not quantity:
        return None
    return (Decimal(trades["value"]) / quantity).quantize(PRICE_PLACES)


@dataclass
class ReportLine:
    """One allocation as a report shows it; USD amounts are Decimal, prices $/GPU-hr."""

    allocation: PoolAllocation
    gpu_hours_requested: int
    gpu_hours_filled: int
    average_price: Decimal | None
    market_price: Decimal | None
    on_demand_price: Decimal | None
    cost: Decimal
    subsidy: Decimal
    fee: Decimal
    savings_vs_market: Decimal | None
    savings_vs_on_demand: Decimal | None


@dataclass
class Report:
    lines: list[ReportLine] = field(default_factory=list)
    gpu_hours_requested: int = 0
    gpu_hours_filled: int = 0
    cost: Decimal = Decimal(0)
    subsidy: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    savings_vs_market: Decimal = Decimal(0)
    savings_vs_on_demand: Decimal = Decimal(0)

    @property
    def average_price(self) -> Decimal | None:
        if not self.gpu_hours_filled:
            return None
        return (self.cost / self.gpu_hours_filled).quantize(PRICE_PLACES)

    @property
    def fill_ratio(self) -> Decimal | None:
        if not self.gpu_hours_requested:
            return None
        return (Decimal(self.gpu_hours_filled) / self.gpu_hours_requested * 100).quantize(CENTS)


def report(pool: Pool, *, member: PoolMember | None = None) -> Report:
    """Demand against fills, prices, savings and subsidy of every allocated demand (of one
    member, if given), newest round first. Only settled lots count as filled for a member;
    lots left with the pool (unfunded) count as requested, not filled."""
    result = Report()
    markets: dict[tuple[int, int], Decimal | None] = {}
    for allocation in allocations(pool, member=member):
        instrument, hours = allocation.instrument, allocation.instrument.gpu_hours_per_contract
        settled = allocation.status == PoolAllocation.Status.SETTLED
        filled = allocation.quantity * hours if settled else 0
        key = (allocation.round_id, instrument.pk)
        if key not in markets:
            markets[key] = market_average(instrument, allocation.round, pool)
        market = markets[key]
        on_demand = instrument.sku.on_demand_price
        cost = micros_to_usd(allocation.cost) if settled else Decimal(0)
        average = (cost / filled).quantize(PRICE_PLACES) if filled else None
        line = ReportLine(
            allocation=allocation,
            gpu_hours_requested=allocation.requested * hours,
            gpu_hours_filled=filled,
            average_price=average,
            market_price=market,
            on_demand_price=on_demand,
            cost=cost,
            subsidy=micros_to_usd(allocation.subsidy),
            fee=micros_to_usd(allocation.fee),
            savings_vs_market=(market * filled - cost).quantize(CENTS)
            if market is not None and filled
            else None,
            savings_vs_on_demand=(on_demand * filled - cost).quantize(CENTS)
            if on_demand is not None and filled
            else None,
        )
        result.lines.append(line)
        result.gpu_hours_requested += line.gpu_hours_requested
        result.gpu_hours_filled += filled
        result.cost += cost
        result.subsidy += line.subsidy
        result.fee += line.fee
        result.savings_vs_market += line.savings_vs_market or 0
        result.savings_vs_on_demand += line.savings_vs_on_demand or 0
    return result
