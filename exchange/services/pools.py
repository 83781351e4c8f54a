"""Portfolio pools: a sponsor buys for its startups as one big buyer and allocates the fills.

The cycle (``docs/ARCHITECTURE.md``, "Portfolio pools"):

1. A sponsor creates a pool (``pool_create``): its rule, subsidy and credit line, and a trading
   account of its own, funded from the sponsor's main account (``pool_fund``).
2. Members submit demand per delivery month (``demand_submit``): GPU-hours and a limit price;
   they amend or withdraw it until the cut-off.
3. At the cut-off (``pool_cut_off``: the Celery task ``pools_run_due`` when ``cutoff_at`` has
   passed, or the sponsor's button) the open demand of each instrument is grouped into at most
   ``EXCHANGE_POOL_PRICE_TIERS`` tiers of limit prices, and the pool account places one GTC
   limit buy per tier at the tier's lowest limit. Its fills earn the block fee tier once the
   combined order has filled that much (``collateral.block_fee_share``); a tier above the
   largest order is several orders (``order_sizes``), each earning it on its own fills.
4. When the round closes (``pool_round_close``: at ``closes_at`` or by the sponsor) what still
   works is cancelled, and each tier's fills are allocated to its demand by the pool's rule in
   whole lots (``exchange.allocation``). Each allocation posts one balanced entry: the
   contracts and their cost memo move from the pool to the member at the tier's traded value;
   the member sets aside its initial margin and pays its share of the pool's fees; the pool's
   margin for those contracts returns to its cash; the sponsor pays the subsidy (its percentage
   of the cost) to the member; and if the member's cash is short, the pool lends the rest up to
   the credit line (memo accounts record the loan). A member that cannot pay even then leaves
   its lots with the pool (``unfunded``), for the sponsor to reallocate or sell.
5. A member that graduates (``pool_member_graduate``) has its demand not yet allocated
   withdrawn, open or in a working round (whose tier orders stop buying its share); the
   sponsor can take its contracts back (``pool_take_back``), reallocate the pool's contracts
   to other members (``pool_reallocate``), both at the instrument's latest mark, or sell them
   in the market from the pool account (``pool_offer``).

Allocation moves positions outside the matcher, so it locks the instruments' rows and bumps
their risk version, as the daily risk cycle does: the matchers reload what they keep in memory.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from exchange import allocation, calendar
from exchange.backoffice.roles import ORDER_STAFF
from exchange.errors import OrderRejectCode, OrderRejected, PoolError, PoolErrorCode
from exchange.matcher.settlement import split_fill
from exchange.models import (
    LIVE_STATUSES,
    Account,
    ApiKey,
    CancelReason,
    Instrument,
    Membership,
    Order,
    OrderCommand,
    Organization,
    Region,
    Side,
    Sku,
    Trade,
)
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
from exchange.selectors import pools as pool_selectors
from exchange.selectors.marks import mark_price
from exchange.selectors.risk import cash_out_refusal, margin_call_of
from exchange.services import collateral, notices
from exchange.services.audit import audit_record
from exchange.services.ledger_accounts import (
    MICROS_PER_USD,
    cash_account,
    cost_account,
    margin_account,
    micros_to_usd,
    owner_of,
    position_account,
    usd,
    usd_text,
    usd_to_micros,
)
from exchange.services.margin import order_margin_per_contract
from exchange.services.orders import (
    order_cancel,
    order_place,
    order_replace,
    orders_cancel,
    position_limit_room,
    price_limits,
)
from exchange.services.participants import account_main
from exchange.services.risk_cycle import instruments_lock
from exchange.units import usd_figure
from ledger.errors import LedgerError
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from ledger.services import account_open, entry_post

logger = logging.getLogger(__name__)

Actor = User | AnonymousUser | None

# The pool's account is named "pool <name>": within the account name's 100 characters.
NAME_LENGTH_MAX = 80
FINAL_STATUSES = (Order.Status.FILLED, Order.Status.CANCELLED, Order.Status.EXPIRED)
# Counts of a round's tiers after a graduation: a fill between a count and its replace is
# caught by the next count (``_tiers_fit``).
TIER_FIT_PASSES_MAX = 3
# Working rounds one call closes on their futures' expiry; the next call (the scheduler runs
# every minute) takes any left.
ROUNDS_CLOSED_MAX = 500


def _user(actor: Actor) -> User | None:
    return actor if actor is not None and actor.is_authenticated else None


def _refuse(code: PoolErrorCode, message: str, field: str = "") -> PoolError:
    return PoolError(code, message, field=field)


# Ledger accounts of the credit line: what the pool lent a member, and what the member owes.


def lent_account(pool: Pool, member: PoolMember) -> LedgerAccount:
    return account_open(
        code=f"trading:{pool.account_id}:pool-lent:{member.account_id}:USD",
        owner=owner_of(pool.account),
        commodity=usd(),
        type=LedgerAccount.Type.ASSET,
        limit=LedgerAccount.Limit.CREDITS_MUST_NOT_EXCEED_DEBITS,
    )


def borrowed_account(pool: Pool, member: PoolMember) -> LedgerAccount:
    return account_open(
        code=f"trading:{member.account_id}:pool-borrowed:{pool.account_id}:USD",
        owner=owner_of(member.account),
        commodity=usd(),
        type=LedgerAccount.Type.LIABILITY,
        limit=LedgerAccount.Limit.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )


def credit_outstanding(member: PoolMember) -> int:
    """What the member owes the pool under the credit line, micro-USD."""
    return -borrowed_account(member.pool, member).balance


# Pools and members -------------------------------------------------------------------------


def _check_settings(
    rule: str,
    subsidy_percent: Decimal,
    credit_line: Decimal,
    cutoff_at: datetime | None,
    current_cutoff: datetime | None = None,
) -> int:
    """The credit line in micro-USD, once every setting is valid. A cut-off must be in the
    future when it is set; one already set that has passed (nothing to cut off then) may stay
    while other settings change."""
    if rule not in Pool.Rule.values:
        raise _refuse(
            PoolErrorCode.RULE_INVALID,
            f"The allocation rule is one of {', '.join(Pool.Rule.values)}.",
            "rule",
        )
    if (
        not isinstance(subsidy_percent, Decimal)
        or not subsidy_percent.is_finite()
        or not (0 <= subsidy_percent <= 100)
        or (subsidy_percent != subsidy_percent.quantize(Decimal("0.01")))
    ):
        raise _refuse(
            PoolErrorCode.SUBSIDY_INVALID,
            "The subsidy is a percentage from 0 to 100, with at most two decimals.",
            "subsidy_percent",
        )
    try:
        credit_micros = usd_to_micros(credit_line)
    except (ValueError, InvalidOperation, TypeError, OverflowError) as error:
        raise _refuse(
            PoolErrorCode.CREDIT_LINE_INVALID,
            "The credit line is an amount of USD with at most 6 decimals.",
            "credit_line",
        ) from error
    if credit_micros < 0 or credit_line > Decimal(settings.EXCHANGE_POOL_CREDIT_LINE_MAX):
        raise _refuse(
            PoolErrorCode.CREDIT_LINE_INVALID,
            f"The credit line is from 0 to "
            f"{usd_figure(Decimal(settings.EXCHANGE_POOL_CREDIT_LINE_MAX))} USD per member.",
            "credit_line",
        )
    if cutoff_at is not None and cutoff_at != current_cutoff and cutoff_at <= timezone.now():
        raise _refuse(
            PoolErrorCode.CUTOFF_INVALID, "The cut-off must be in the future.", "cutoff_at"
        )
    return credit_micros


def pool_create(
    *,
    sponsor: Organization,
    name: str,
    rule: str = Pool.Rule.PRO_RATA,
    subsidy_percent: Decimal = Decimal("0"),
    credit_line: Decimal = Decimal("0"),
    cutoff_at: datetime | None = None,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> Pool:
    """A pool of ``sponsor`` (a portfolio program sponsor) with a trading account of its own."""
    name = (name or "").strip()
    if not name or len(name) > NAME_LENGTH_MAX:
        raise _refuse(
            PoolErrorCode.NAME_INVALID,
            f"A pool's name is 1 to {NAME_LENGTH_MAX} characters.",
            "name",
        )
    if sponsor.kind != Organization.Kind.SPONSOR:
        raise _refuse(
            PoolErrorCode.SPONSOR_REQUIRED,
            "Only a portfolio program sponsor creates pools.",
            "sponsor",
        )
    credit_micros = _check_settings(rule, subsidy_percent, credit_line, cutoff_at)
    try:
        with transaction.atomic():
            account = Account.objects.create(organization=sponsor, name=f"pool {name}")
            pool = Pool.objects.create(
                sponsor=sponsor,
                name=name,
                account=account,
                rule=rule,
                subsidy_percent=subsidy_percent,
                credit_line=credit_micros,
                cutoff_at=cutoff_at,
            )
            cash_account(account)
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.create",
                target=pool,
                after=_settings_of(pool),
            )
    except IntegrityError as error:
        raise _refuse(
            PoolErrorCode.NAME_TAKEN, f"{sponsor.name} already has a pool named {name!r}.", "name"
        ) from error
    return pool


def _settings_of(pool: Pool) -> dict[str, Any]:
    return {
        "rule": pool.rule,
        "subsidy_percent": str(pool.subsidy_percent),
        "credit_line": str(micros_to_usd(pool.credit_line)),
        "cutoff_at": pool.cutoff_at.isoformat() if pool.cutoff_at else None,
        "status": pool.status,
    }


def pool_settings_set(
    *,
    pool: Pool,
    rule: str,
    subsidy_percent: Decimal,
    credit_line: Decimal,
    cutoff_at: datetime | None,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> Pool:
    """Change the rule, subsidy, credit line and next cut-off; a round already working keeps
    the terms it was cut off with only for its orders: allocation uses the pool's terms when it
    runs."""
    with transaction.atomic():
        locked = Pool.objects.select_for_update().get(pk=pool.pk)
        credit_micros = _check_settings(
            rule, subsidy_percent, credit_line, cutoff_at, current_cutoff=locked.cutoff_at
        )
        if locked.status == Pool.Status.CLOSED:
            raise _refuse(PoolErrorCode.CLOSED, "The pool is closed.")
        before = _settings_of(locked)
        locked.rule, locked.subsidy_percent = rule, subsidy_percent
        locked.credit_line, locked.cutoff_at = credit_micros, cutoff_at
        locked.save(update_fields=["rule", "subsidy_percent", "credit_line", "cutoff_at"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.settings",
            target=locked,
            before=before,
            after=_settings_of(locked),
        )
    return locked


def pool_member_add(
    *,
    pool: Pool,
    organization: Organization,
    priority: int = 100,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> PoolMember:
    """``organization`` joins the pool with its main account. Only startups
    (``Organization.Kind.STARTUP``) are members: anything else is ``POOL_MEMBER_NOT_STARTUP``."""
    if pool.status == Pool.Status.CLOSED:
        raise _refuse(PoolErrorCode.CLOSED, "The pool is closed.")
    if organization.kind != Organization.Kind.STARTUP:
        # A pool buys for the sponsor's startups: a trading firm, a provider, a sponsor (the
        # pool's own included) or the exchange never joins, so never receives its capacity.
        raise _refuse(
            PoolErrorCode.MEMBER_NOT_STARTUP,
            f"Only startups join a pool; {organization.name} is not one "
            f"({organization.get_kind_display()}).",
            "organization",
        )
    _check_priority(priority)
    try:
        account = account_main(organization)
    except Account.DoesNotExist as error:
        raise _refuse(
            PoolErrorCode.MEMBER_INVALID,
            f"{organization.name} has no main account.",
            "organization",
        ) from error
    try:
        with transaction.atomic():
            member = PoolMember.objects.create(
                pool=pool, organization=organization, account=account, priority=priority
            )
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.member_add",
                target=member,
                after={"organization": organization.slug, "priority": priority},
            )
    except IntegrityError as error:
        raise _refuse(
            PoolErrorCode.ALREADY_MEMBER,
            f"{organization.name} is already a member of this pool.",
            "organization",
        ) from error
    return member


def _check_priority(priority: int) -> None:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 10_000:
        raise _refuse(
            PoolErrorCode.PRIORITY_INVALID,
            "Priority is a whole number from 0 to 10000.",
            "priority",
        )


def pool_member_priority_set(
    *, member: PoolMember, priority: int, actor: Actor, api_key: ApiKey | None = None
) -> PoolMember:
    _check_priority(priority)
    with transaction.atomic():
        locked = PoolMember.objects.select_for_update().get(pk=member.pk)
        before = locked.priority
        locked.priority = priority
        locked.save(update_fields=["priority"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.member_priority",
            target=locked,
            before={"priority": before},
            after={"priority": priority},
        )
    return locked


def pool_member_graduate(
    *, member: PoolMember, actor: Actor, api_key: ApiKey | None = None
) -> PoolMember:
    """The member leaves the pool: its demand not yet allocated is withdrawn, the open demand
    and the demand in a working round's tiers. A graduate receives nothing from a round that
    allocates after it left, so the tier orders of that round then shrink to what the tier's
    remaining demand still asks (``_tiers_fit``): the pool does not go on buying the
    graduate's share. What a tier filled beyond the remaining demand before that stays with
    the pool, for the sponsor to reallocate or offer. What it was allocated before stays its
    own until the sponsor takes it back (``pool_take_back``)."""
    with transaction.atomic():
        locked = PoolMember.objects.select_for_update().get(pk=member.pk)
        if locked.status == PoolMember.Status.GRADUATED:
            raise _refuse(PoolErrorCode.MEMBER_GRADUATED, "The member has already graduated.")
        working = sorted(
            set(
                PoolDemand.objects.filter(
                    member=locked,
                    status=PoolDemand.Status.SUBMITTED,
                    pool_order__round__status=PoolRound.Status.WORKING,
                ).values_list("pool_order__round_id", flat=True)
            )
        )
        # Submitted demand keeps its tier (``pool_order``): the round's record of what it
        # ordered for whom. The allocation serves only the tier's submitted demand.
        withdrawn = PoolDemand.objects.filter(
            member=locked, status__in=(PoolDemand.Status.OPEN, PoolDemand.Status.SUBMITTED)
        ).update(status=PoolDemand.Status.WITHDRAWN, updated_at=timezone.now())
        locked.status, locked.left_at = PoolMember.Status.GRADUATED, timezone.now()
        locked.save(update_fields=["status", "left_at"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.member_graduate",
            target=locked,
            before={"status": PoolMember.Status.ACTIVE},
            after={"status": locked.status, "demand_withdrawn": withdrawn},
        )
    # Order commands commit on their own (``order_replace``), after the demand is withdrawn:
    # from then on the allocation no longer counts it, whatever the tier orders still buy.
    for round_ in PoolRound.objects.filter(pk__in=working).order_by("pk"):
        _tiers_fit(round_, actor, api_key)
    return locked


# Demand ------------------------------------------------------------------------------------


def _check_limit(limit_price: Decimal, instrument: Instrument) -> None:
    if (
        not isinstance(limit_price, Decimal)
        or not limit_price.is_finite()
        or limit_price <= 0
        or limit_price > instrument.price_max
    ):
        raise _refuse(
            PoolErrorCode.PRICE_INVALID,
            f"The limit price is above 0 and at most {instrument.price_max} $/GPU-hr.",
            "limit_price",
        )
    if limit_price % instrument.tick_size:
        raise _refuse(
            PoolErrorCode.PRICE_INVALID,
            f"The limit price is a multiple of the tick, {instrument.tick_size} $/GPU-hr.",
            "limit_price",
        )


def _contracts(instrument: Instrument, gpu_hours: int | None, gpus: int | None) -> int:
    """Contracts of a demand given in GPU-hours or in GPUs for the month (exactly one)."""
    if (gpu_hours is None) == (gpus is None):
        raise _refuse(
            PoolErrorCode.QUANTITY_INVALID,
            "Give the demand either in GPU-hours or in GPUs for the month.",
            "gpu_hours",
        )
    field = "gpu_hours" if gpu_hours is not None else "gpus"
    value = gpu_hours if gpu_hours is not None else gpus
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _refuse(
            PoolErrorCode.QUANTITY_INVALID, "The quantity is a positive whole number.", field
        )
    hours = instrument.gpu_hours_per_contract
    contracts = value if gpus is not None else value // hours
    if gpu_hours is not None and gpu_hours % hours:
        raise _refuse(
            PoolErrorCode.NOT_WHOLE_CONTRACTS,
            f"{gpu_hours} GPU-hours is not a whole number of contracts of {instrument.symbol}: "
            f"one contract is {hours} GPU-hours (one GPU for the month).",
            field,
        )
    if contracts % instrument.lot_size or contracts > instrument.quantity_max:
        raise _refuse(
            PoolErrorCode.QUANTITY_INVALID,
            f"{instrument.symbol} trades in lots of {instrument.lot_size} contracts, at most "
            f"{instrument.quantity_max}.",
            field,
        )
    return contracts


def _active_member(member: PoolMember) -> PoolMember:
    locked = PoolMember.objects.select_for_update().select_related("pool").get(pk=member.pk)
    if locked.status != PoolMember.Status.ACTIVE:
        raise _refuse(PoolErrorCode.MEMBER_GRADUATED, "A graduated member submits no demand.")
    if locked.pool.status != Pool.Status.OPEN:
        raise _refuse(PoolErrorCode.CLOSED, "The pool is closed.")
    _check_before_cutoff(locked.pool)
    return locked


def _check_before_cutoff(pool: Pool) -> None:
    """Demand changes until the cut-off's time, by the clock: not until the scheduler
    (``pools_run_due``, every minute) gets to the cut-off, which a member could otherwise race
    with a change the sponsor's cut-off time had ruled out. ``POOL_CUTOFF_PASSED`` from then
    until the cut-off has run (it clears ``cutoff_at``); the demand then goes to the next."""
    if pool.cutoff_at is not None and pool.cutoff_at <= timezone.now():
        raise _refuse(
            PoolErrorCode.CUTOFF_PASSED,
            f"The pool's cut-off was at {pool.cutoff_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
            "demand is not submitted, amended or withdrawn until the round is cut off (within "
            "a minute, or once the round still working closes); new demand then goes to the "
            "next cut-off.",
        )


def futures_for(sku: Sku, region: Region, months: list[date]) -> list[Instrument]:
    """The listed, trading futures of ``sku`` in ``region`` for each month, in month order:
    active and before the close of their last trading day (``trading_at``), since one that
    ended but that the daily cycle has not yet expired refuses the cut-off's order."""
    if not months:
        raise _refuse(PoolErrorCode.MONTHS_INVALID, "Choose at least one delivery month.", "months")
    wanted = sorted({date(month.year, month.month, 1) for month in months})
    futures = {
        future.delivery_start: future
        for future in Instrument.objects.trading_at(timezone.now())
        .filter(
            kind=Instrument.Kind.FUTURE,
            status=Instrument.Status.ACTIVE,
            sku=sku,
            region=region,
            delivery_start__in=wanted,
        )
        .select_related("sku", "region")
    }
    missing = [month for month in wanted if month not in futures]
    if missing:
        raise _refuse(
            PoolErrorCode.MONTHS_INVALID,
            f"No {sku.code} future in {region.code} trades for "
            f"{', '.join(f'{m:%b %Y}' for m in missing)}.",
            "months",
        )
    return [futures[month] for month in wanted]


def demand_submit(
    *,
    member: PoolMember,
    sku: Sku,
    region: Region,
    months: list[date],
    limit_price: Decimal,
    gpu_hours: int | None = None,
    gpus: int | None = None,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> list[PoolDemand]:
    """One demand per delivery month, each for ``gpu_hours`` (or ``gpus`` for the month)."""
    instruments = futures_for(sku, region, months)
    quantities = []
    for instrument in instruments:
        _check_limit(limit_price, instrument)
        quantities.append(_contracts(instrument, gpu_hours, gpus))
    with transaction.atomic():
        locked = _active_member(member)
        demands = [
            PoolDemand.objects.create(
                pool=locked.pool,
                member=locked,
                instrument=instrument,
                quantity=quantity,
                gpu_hours=quantity * instrument.gpu_hours_per_contract,
                limit_price=limit_price,
                submitted_by=_user(actor),
            )
            for instrument, quantity in zip(instruments, quantities, strict=True)
        ]
        for demand in demands:
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.demand_submit",
                target=demand,
                after=_demand_terms(demand),
            )
    return demands


def _demand_terms(demand: PoolDemand) -> dict[str, Any]:
    return {
        "instrument": demand.instrument.symbol,
        "quantity": demand.quantity,
        "gpu_hours": demand.gpu_hours,
        "limit_price": str(demand.limit_price),
        "status": demand.status,
    }


def _open_demand(demand: PoolDemand) -> PoolDemand:
    locked = (
        PoolDemand.objects.select_for_update(of=("self",))
        .select_related("instrument")
        .get(pk=demand.pk)
    )
    if locked.status != PoolDemand.Status.OPEN:
        raise _refuse(
            PoolErrorCode.DEMAND_LOCKED,
            f"This demand is {locked.get_status_display().lower()}: it changes only before the "
            "cut-off.",
        )
    return locked


def demand_amend(
    *,
    demand: PoolDemand,
    limit_price: Decimal,
    gpu_hours: int | None = None,
    gpus: int | None = None,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> PoolDemand:
    with transaction.atomic():
        _active_member(demand.member)
        locked = _open_demand(demand)
        _check_limit(limit_price, locked.instrument)
        quantity = _contracts(locked.instrument, gpu_hours, gpus)
        before = _demand_terms(locked)
        locked.quantity, locked.limit_price = quantity, limit_price
        locked.gpu_hours = quantity * locked.instrument.gpu_hours_per_contract
        locked.save(update_fields=["quantity", "gpu_hours", "limit_price", "updated_at"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.demand_amend",
            target=locked,
            before=before,
            after=_demand_terms(locked),
        )
    return locked


def demand_withdraw(
    *, demand: PoolDemand, actor: Actor, api_key: ApiKey | None = None
) -> PoolDemand:
    with transaction.atomic():
        locked = _open_demand(demand)
        _check_before_cutoff(Pool.objects.get(pk=locked.pool_id))
        locked.status = PoolDemand.Status.WITHDRAWN
        locked.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.demand_withdraw",
            target=locked,
            before={"status": PoolDemand.Status.OPEN},
            after={"status": locked.status},
        )
    return locked


# The cut-off -------------------------------------------------------------------------------


def pool_cut_off(
    *,
    pool: Pool,
    actor: Actor,
    api_key: ApiKey | None = None,
    now: datetime | None = None,
    scheduled: bool = False,
) -> PoolRound:
    """Aggregate the open demand into tier orders and place them from the pool account.

    ``scheduled``: the scheduler's cut-off (``pools_run_due``), made only if the pool's
    ``cutoff_at`` has still come by ``now`` under the pool's lock, else ``POOL_CUTOFF_INVALID``
    and nothing is written: the sponsor may have moved or cleared it since the run listed the
    pool as due (until 2026-12-07 the run cut it off all the same, and cleared the new time).

    The round, its tiers and the demand's new status commit first; each order is then placed
    in its own transaction (as every order is). A tier the exchange refuses (the pool account
    lacks the collateral, the instrument halted) keeps the refusal's code and message, and its
    demand is allocated nothing when the round closes.

    While the pool's account is under a margin call it may only reduce its positions, and a
    round only buys: no tier is placed, each records ``POOL_MARGIN_CALL_OPEN`` with the amount
    due, and the round allocates nothing (the order service would refuse each buy
    ``RISK_REDUCE_ONLY``, in terms of positions the sponsor never asked about).
    """
    with transaction.atomic():
        locked = Pool.objects.select_for_update().get(pk=pool.pk)
        if locked.status != Pool.Status.OPEN:
            raise _refuse(PoolErrorCode.CLOSED, "The pool is closed.")
        now = now or timezone.now()
        if scheduled and (locked.cutoff_at is None or locked.cutoff_at > now):
            raise _refuse(
                PoolErrorCode.CUTOFF_INVALID,
                "The pool's cut-off was moved or cleared: it is not due yet.",
                "cutoff_at",
            )
        if locked.rounds.filter(status=PoolRound.Status.WORKING).exists():
            raise _refuse(
                PoolErrorCode.ROUND_WORKING,
                "The previous round is still working; close it before the next cut-off.",
            )
        # The demand rows only (``of``): locking the members and instruments joined to them
        # too deadlocked with a member's demand submitted meanwhile (it locks its member row,
        # then waits for the pool's, which this holds).
        demands = list(
            PoolDemand.objects.select_for_update(of=("self",))
            .filter(pool=locked, status=PoolDemand.Status.OPEN, member__status="active")
            .select_related("instrument", "member")
            .order_by("instrument_id", "id")
        )
        if not demands:
            raise _refuse(PoolErrorCode.NO_DEMAND, "No member has open demand to aggregate.")
        refusal = _pool_margin_call_refusal(locked)
        number = (locked.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
        round_ = PoolRound.objects.create(
            pool=locked,
            number=number,
            cut_off_at=now,
            closes_at=now + timedelta(minutes=settings.EXCHANGE_POOL_ROUND_MINUTES),
            cut_off_by=_user(actor),
        )
        tiers_placed = []
        by_instrument: dict[int, list[PoolDemand]] = {}
        for demand in demands:
            by_instrument.setdefault(demand.instrument_id, []).append(demand)
        for instrument_demands in by_instrument.values():
            instrument = instrument_demands[0].instrument
            requests = [
                allocation.Request(d.pk, d.quantity, d.limit_price, d.member.priority)
                for d in instrument_demands
            ]
            for price, tier in allocation.price_tiers(requests, settings.EXCHANGE_POOL_PRICE_TIERS):
                parts = [
                    PoolOrder.objects.create(
                        round=round_,
                        instrument=instrument,
                        price=price,
                        quantity=quantity,
                        refusal_code=PoolErrorCode.MARGIN_CALL_OPEN if refusal else "",
                        refusal_message=refusal,
                    )
                    for quantity in order_sizes(sum(r.lots for r in tier), instrument)
                ]
                # The tier's demand goes with its first order; allocation takes the tier's
                # orders together (``_tiers``).
                PoolDemand.objects.filter(pk__in=[r.key for r in tier]).update(
                    status=PoolDemand.Status.SUBMITTED, pool_order=parts[0], updated_at=now
                )
                tiers_placed.extend(parts)
        locked.cutoff_at = None
        locked.save(update_fields=["cutoff_at"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.cut_off",
            target=round_,
            after={
                "demands": len(demands),
                "orders": [
                    {
                        "instrument": o.instrument.symbol,
                        "price": str(o.price),
                        "quantity": o.quantity,
                    }
                    for o in tiers_placed
                ],
                **({"refused": PoolErrorCode.MARGIN_CALL_OPEN.value} if refusal else {}),
            },
        )
    for pool_order in tiers_placed:
        if not pool_order.refusal_code:
            _place(pool_order, actor)
    # A member that graduated while the orders were placed found them not placed yet.
    _tiers_fit(round_, actor, api_key)
    return round_


def _tiers_fit(round_: PoolRound, actor: Actor, api_key: ApiKey | None = None) -> None:
    """Shrink the live orders of each of a working round's tiers so that what the tier has
    filled plus what still works is at most its remaining (submitted) demand.

    The allocation gives a tier's fills to its submitted demand first and leaves the rest with
    the pool (``_allocate_tier``): once a member's demand is withdrawn (it graduated), buying
    its share would only leave the pool holding it. What the tier already filled counts
    against the demand left, so the orders shrink by the graduate's share the others do not
    take up. Each shrink is a replace of the order at its price to a smaller open quantity,
    which keeps its place in the queue (0 cancels it), through the order service as any
    program's; the tier's earliest orders keep their quantity first. The matcher may fill an
    order between the count and the replace: the count is taken again (at most
    ``TIER_FIT_PASSES_MAX`` times) until the tier fits, or a replace still waits for an
    external matcher. A replace the exchange refuses (a halted instrument) leaves the order as
    it is; what it buys beyond the demand then stays with the pool, as before the shrink."""
    for _ in range(TIER_FIT_PASSES_MAX):
        shrinks = _tier_shrinks(round_)
        if not shrinks:
            return
        pending = False
        outcome = []
        for order, keep in shrinks:
            assert order.price is not None  # Tier orders are limit orders.
            try:
                replaced = order_replace(
                    order=order,
                    price=order.price,
                    quantity=keep,
                    requested_by=_user(actor),
                    wait_seconds=settings.EXCHANGE_API_MATCH_WAIT_SECONDS,
                )
            except OrderRejected as error:
                outcome.append({"order": order.pk, "to": keep, "refused": str(error.code)})
                continue
            pending = pending or replaced.command_pending
            outcome.append({"order": order.pk, "to": keep})
        with transaction.atomic():
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.tier_shrink",
                target=round_,
                after={"orders": outcome},
            )
        if pending or all("refused" in change for change in outcome):
            return


def _tier_shrinks(round_: PoolRound) -> list[tuple[Order, int]]:
    """The live tier orders of a working round that buy beyond their tier's submitted demand,
    each with the open quantity it keeps (``_tiers_fit``)."""
    if not PoolRound.objects.filter(pk=round_.pk, status=PoolRound.Status.WORKING).exists():
        return []
    pool_orders = list(
        PoolOrder.objects.filter(round=round_).select_related("order__instrument").order_by("pk")
    )
    demanded = dict(
        PoolDemand.objects.filter(pool_order__round=round_, status=PoolDemand.Status.SUBMITTED)
        .values("pool_order_id")
        .annotate(total=Sum("quantity"))
        .values_list("pool_order_id", "total")
    )
    shrinks = []
    for parts in _tiers(pool_orders):
        orders = [part.order for part in parts if part.order is not None]
        room = max(demanded.get(parts[0].pk, 0) - sum(o.filled_quantity for o in orders), 0)
        for order in orders:
            if order.status not in LIVE_STATUSES:
                continue
            keep = min(order.open_quantity, room)
            room -= keep
            if keep < order.open_quantity:
                shrinks.append((order, keep))
    return shrinks


def order_sizes(quantity: int, instrument: Instrument) -> list[int]:
    """A tier of ``quantity`` contracts as orders the exchange accepts: at most the
    instrument's largest order (``quantity_max``) each, in whole lots, the last one the rest.
    Each member's demand is at most ``quantity_max`` (``_contracts``), so a tier has at most
    as many orders as it has demands."""
    size_max = instrument.quantity_max - instrument.quantity_max % instrument.lot_size
    if size_max < 1:
        return [quantity]  # No order fits: the exchange refuses the tier, with its reason.
    whole, rest = divmod(quantity, size_max)
    return [size_max] * whole + ([rest] if rest else [])


def _pool_margin_call_refusal(pool: Pool) -> str:
    """Why the round's buys are not placed: the pool's account is under a margin call; or ""."""
    standing = margin_call_of(pool.account)
    if standing is None:
        return ""
    return (
        f"The pool's account is under a margin call ({usd_figure(standing.amount_due)} USD "
        "due): it may only reduce its positions, so the round's buys were not placed. A round "
        "cut off once the call is met places them: fund the pool to meet it."
    )


def _place(pool_order: PoolOrder, actor: Actor) -> None:
    """Place a tier's order as near the tier as the exchange accepts it now, saying how it
    differs (``placement_note``), rather than have it refused and buy nothing:

    - priced above the future's price limit, it buys at the limit: the most the exchange
      accepts, and within every member's limit in the tier;
    - beyond the room the sponsor's position limit leaves (``orders.position_limit_room``), it
      buys that many contracts, in whole lots, and the round allocates what they fill pro rata
      as any partly filled tier (until 2026-12-07 such a tier was refused whole). With no room
      for a lot it is placed as it is, and refused ``RISK_POSITION_LIMIT`` with the figures."""
    instrument, account = pool_order.instrument, pool_order.round.pool.account
    notes = []
    limits = price_limits(instrument)
    price = pool_order.price if limits is None else min(pool_order.price, limits[1])
    if price != pool_order.price:
        notes.append(
            f"Bought at {price}, the future's price limit, not the tier's {pool_order.price}."
        )
    quantity = pool_order.quantity
    room = position_limit_room(account, instrument, Side.BUY)
    if room is not None and room < quantity:
        whole = room - room % instrument.lot_size
        if whole > 0:
            notes.append(
                f"{whole} of the tier's {quantity} contracts placed: that is the room the "
                "sponsor's position limit leaves in the future and its options (staff may "
                "grant an exemption)."
            )
            quantity = whole
    pool_order.placement_note = " ".join(notes)[:300]
    try:
        order = order_place(
            account=account,
            instrument=instrument,
            side="buy",
            quantity=quantity,
            price=price,
            client_order_id=f"pool-{pool_order.round_id}-{pool_order.pk}",
            placed_by=_user(actor),
        )
    except OrderRejected as error:
        pool_order.refusal_code, pool_order.refusal_message = str(error.code), error.message[:300]
        pool_order.placement_note = ""
        pool_order.save(update_fields=["refusal_code", "refusal_message", "placement_note"])
        return
    pool_order.order = order
    pool_order.save(update_fields=["order", "placement_note"])


# Closing a round and allocating ------------------------------------------------------------


def pool_round_close(
    *,
    round_: PoolRound,
    actor: Actor,
    api_key: ApiKey | None = None,
    organization: Organization | None = None,
    expired: list[Instrument] | None = None,
    now: datetime | None = None,
    reason: str = "",
) -> PoolRound:
    """Cancel what still works, then allocate (at once with the inline matcher; with external
    matchers ``pools_run_due`` allocates once the cancels are processed).

    The first close records why (``close_reason``, ``close_message``): the sponsor, staff, its
    time, or ``expired``, the round's futures whose trading has ended by ``now``
    (``pool_rounds_close_expired``).

    The sponsor closes its own rounds (``organization``, the organization the request acts
    for: an API key's, the page's; the pages and the API let only the sponsor reach here), the
    system (no actor) those due; anyone else is staff closing another organization's round from
    the back office, which cancels customers' orders as ``order_staff_cancel`` does: the
    operations role (``ORDER_NOT_STAFF``, ``ORDER_ROLE_REQUIRED``) and a ``reason``
    (``ORDER_REASON_REQUIRED``), recorded in the ``pool.round_close`` audit row, both checked
    before anything is written. Until 2026-12-07 staff closed another organization's round
    early without saying why, where revoking a key or cancelling an order asked."""
    if actor is not None and not _of_sponsor(round_, actor, organization):
        ORDER_STAFF.check(actor, "close a pool's round")
        if not reason.strip():
            raise OrderRejected(
                OrderRejectCode.REASON_REQUIRED,
                "Give a reason for closing the round before its time.",
                field="reason",
            )
    if round_.status != PoolRound.Status.WORKING:
        raise _refuse(PoolErrorCode.ROUND_NOT_WORKING, "This round is already allocated.")
    now = now or timezone.now()
    close_reason, message = _close_reason(round_, actor, organization, expired or [])
    live = list(
        Order.objects.filter(pool_order__round=round_, status__in=LIVE_STATUSES).order_by("pk")
    )
    with transaction.atomic():
        # The first close's reason stays: a scheduled close that finds the sponsor's cancels
        # still waiting for an external matcher closes the same round again.
        first = PoolRound.objects.filter(
            pk=round_.pk, status=PoolRound.Status.WORKING, close_reason=PoolRound.CloseReason.OPEN
        ).update(close_reason=close_reason, close_message=message)
        if first and actor is not None:
            # Who closed it, with the close: with external matchers the allocation follows
            # once the cancels are processed, written by the schedule (the system). Until
            # 2026-12-07 this row was missing, and a round staff or the sponsor closed early
            # was recorded as allocated by the system, the person who closed it named nowhere.
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.round_close",
                target=round_,
                before={"status": PoolRound.Status.WORKING},
                after={
                    "close_reason": close_reason,
                    "orders_cancelled": [order.pk for order in live],
                },
                reason=reason.strip(),
            )
    orders_cancel(orders=live, reason=CancelReason.POOL_ROUND_CLOSED, requested_by=_user(actor))
    try:
        return pool_round_allocate(round_=round_, actor=actor, now=now, api_key=api_key)
    except PoolError as error:
        if error.code != PoolErrorCode.ORDERS_NOT_FINAL:
            raise
        return PoolRound.objects.get(pk=round_.pk)


def _close_reason(
    round_: PoolRound,
    actor: Actor,
    organization: Organization | None,
    expired: list[Instrument],
) -> tuple[str, str]:
    if expired:
        symbols = ", ".join(sorted(instrument.symbol for instrument in expired))
        return PoolRound.CloseReason.INSTRUMENT_EXPIRED, (
            f"{symbols} stopped trading (its last trading day closed) while the round worked: "
            "the round closed early, its fills were allocated and the rest cancelled."
        )[:300]
    if actor is None:
        return PoolRound.CloseReason.SCHEDULED, "Its time was up: closed by the scheduler."
    if _of_sponsor(round_, actor, organization):
        return PoolRound.CloseReason.SPONSOR, "Closed by the sponsor before its time."
    return PoolRound.CloseReason.STAFF, "Closed by exchange staff."


def _ended(instrument: Instrument, now: datetime, expiring_through: date | None) -> bool:
    """Whether ``instrument`` no longer trades at ``now``: expired, or past the close of its
    last trading day, after which the matcher matches nothing on it (its ``_refusal``); or it
    is about to expire, its last trading day ``expiring_through`` or before."""
    if instrument.status == Instrument.Status.EXPIRED:
        return True
    if expiring_through is not None and instrument.last_trading_day <= expiring_through:
        return True
    return now >= calendar.trading_ends_at(instrument.last_trading_day)


def pool_rounds_close_expired(
    *, now: datetime | None = None, expiring_through: date | None = None
) -> list[PoolRound]:
    """Close every working round buying a future whose trading has ended by ``now``: its
    fills are allocated to the members by the pool's rule, what still rests is cancelled
    (releasing the pool's collateral), and the round says why it closed.

    The daily settlement calls it before it expires the day's futures (``risk_cycle``), with
    its own clock, so the members receive their contracts before the final settlement closes
    the pool's position: allocated after it, the contracts were gone and every lot was left
    ``unfunded`` with nothing in the pool to reallocate (until 2026-12-07). The scheduler
    (``pools_run_due``) calls it every minute, so a round closes from the close on. A round
    that fails is logged and left for the next call.

    ``expiring_through``: the day the settlement runs, whose futures it expires whatever the
    clock says of the standard close (staff may settle a day with an earlier ``close``: until
    2026-12-07 a round on such a day's future was then still working at its expiry)."""
    now = now or timezone.now()
    closed = []
    working = PoolRound.objects.filter(status=PoolRound.Status.WORKING).order_by("pk")
    for round_ in working[:ROUNDS_CLOSED_MAX]:
        instruments = {
            pool_order.instrument_id: pool_order.instrument
            for pool_order in PoolOrder.objects.filter(round=round_).select_related("instrument")
        }
        expired = [i for _, i in sorted(instruments.items()) if _ended(i, now, expiring_through)]
        if not expired:
            continue
        try:
            done = pool_round_close(round_=round_, actor=None, expired=expired, now=now)
            if done.status == PoolRound.Status.WORKING:
                # Its other months' cancels still wait for an external matcher: the expiring
                # ones are allocated now, before their final settlement.
                done = pool_round_allocate_expiring(round_=done, expired=expired, now=now)
            closed.append(done)
        except Exception:
            logger.exception("pools: round #%s did not close on its expiry; next run", round_.pk)
    return closed


def _of_sponsor(
    round_: PoolRound, actor: User | AnonymousUser, organization: Organization | None
) -> bool:
    """Whether ``actor`` acts for the organization that sponsors the round's pool.

    The organization the request acts for decides when the caller gives it: an API key acts
    for its own organization, whoever made it (``api.context.caller_of``), so a key of the
    sponsor's whose maker has left the organization still closes the sponsor's rounds (until
    2026-12-07 the maker's membership decided, and such a key was refused as not staff).
    Without it (a script, a test), the actor's membership does."""
    if organization is not None:
        return organization.pk == Pool.objects.get(pk=round_.pool_id).sponsor_id
    return actor.is_authenticated and (
        Membership.objects.filter(user=actor, organization__sponsored_pools__rounds=round_).exists()
    )


@dataclass(frozen=True)
class _TierFill:
    lots: int
    cost: int  # Traded value of the fills, micro-USD.
    fee: int  # The pool's fees on them, micro-USD.


def _tier_fill(parts: list[PoolOrder]) -> _TierFill:
    """What a tier's orders filled together."""
    instrument = parts[0].instrument
    hours = instrument.gpu_hours_per_contract
    cost = fee = contracts = 0
    for order in (part.order for part in parts):
        if order is None:
            continue
        filled = 0
        for trade in Trade.objects.filter(Q(maker_order=order) | Q(taker_order=order)):
            notional = collateral.notional_micros(trade.price, trade.quantity, hours)
            cost += notional
            fee += trade.buyer_fee if order.side == Side.BUY else trade.seller_fee
            filled += trade.quantity
        assert filled == order.filled_quantity, (filled, order.filled_quantity)
        contracts += filled
    return _TierFill(contracts // instrument.lot_size, cost, fee)


def _tiers(pool_orders: list[PoolOrder]) -> list[list[PoolOrder]]:
    """A round's orders by tier, each tier's first order first: a tier above the instrument's
    largest order is several orders (``order_sizes``), at its price. Within a round an
    instrument's tiers have distinct prices (``allocation.price_tiers`` prices each at the
    lowest of its own limits), so the instrument and the price name the tier."""
    tiers: dict[tuple[int, Decimal], list[PoolOrder]] = {}
    for pool_order in sorted(pool_orders, key=lambda o: o.pk):
        tiers.setdefault((pool_order.instrument_id, pool_order.price), []).append(pool_order)
    return list(tiers.values())


def _round_orders(round_: PoolRound) -> list[PoolOrder]:
    return list(
        PoolOrder.objects.filter(round=round_)
        .select_related("order", "instrument__sku", "instrument__region", "round__pool__account")
        .order_by("pk")
    )


def _check_final(pool_orders: list[PoolOrder], now: datetime) -> None:
    """Every tier order is final, or rests on a future whose trading has ended: no fill can
    come to it any more, so its cancel (asked for, perhaps still waiting for an external
    matcher) changes nothing the allocation reads."""
    if any(
        o.order is not None
        and o.order.status in LIVE_STATUSES
        and not _ended(o.instrument, now, None)
        for o in pool_orders
    ):
        raise _refuse(
            PoolErrorCode.ORDERS_NOT_FINAL,
            "Some pool orders are still working; close the round first.",
        )


def pool_round_allocate(
    *, round_: PoolRound, actor: Actor, api_key: ApiKey | None = None, now: datetime | None = None
) -> PoolRound:
    now = now or timezone.now()
    _check_final(_round_orders(round_), now)
    return _allocate(round_, actor=actor, api_key=api_key, now=now, expiring=None)


def pool_round_allocate_expiring(
    *, round_: PoolRound, expired: list[Instrument], now: datetime
) -> PoolRound:
    """Allocate, of a round still working, the tiers on ``expired`` futures (their trading
    has ended: no fill can come to their orders any more), before the daily settlement settles
    them; the round works on for its other months, allocated once their cancels are processed
    (an external matcher's). Tiers allocated already are left alone, so a later run allocates
    nothing twice. Until 2026-12-07 the round waited whole: the final settlement settled the
    expiring month's contracts with the pool, and its members' lots were left unfunded."""
    return _allocate(round_, actor=None, api_key=None, now=now, expiring={i.pk for i in expired})


def _allocate(
    round_: PoolRound,
    *,
    actor: Actor,
    api_key: ApiKey | None,
    now: datetime,
    expiring: set[int] | None,
) -> PoolRound:
    """Allocate the round's tiers: all of them, ending the round (``expiring`` None), or
    those on the ``expiring`` instruments that still have demand to allocate."""
    with transaction.atomic():
        # Each lock of the allocation takes its own table's rows only (``of``): with the
        # accounts joined here and to the demands locked FOR UPDATE too, an order of the pool
        # or of a member committing meanwhile waited for them (its foreign key) while holding
        # the ledger accounts the allocation posts to, a deadlock on PostgreSQL.
        locked = (
            PoolRound.objects.select_for_update(of=("self",))
            .select_related("pool__account")
            .get(pk=round_.pk)
        )
        if locked.status != PoolRound.Status.WORKING:
            return locked
        pool = Pool.objects.select_for_update().get(pk=locked.pool_id)
        instrument_ids = PoolOrder.objects.filter(round=locked).values_list("instrument_id")
        instruments = instruments_lock(sorted({row[0] for row in instrument_ids}))
        # Read again under the books' locks: a matching batch that began before a future's
        # close may have filled its tier order until it committed.
        pool_orders = _round_orders(locked)
        if expiring is None:
            _check_final(pool_orders, now)
        else:
            pool_orders = [o for o in pool_orders if o.instrument_id in expiring]
        summary = []
        for pool_order in pool_orders:
            pool_order.instrument = instruments[pool_order.instrument_id]
        for parts in _tiers(pool_orders):
            if expiring is not None and not _demand_left(parts[0]):
                continue  # Allocated by an earlier run.
            summary.append(_allocate_tier(pool, locked, parts, actor))
        if expiring is not None:
            if summary:
                audit_record(
                    actor=None,
                    action="pool.allocate_expiring",
                    target=locked,
                    after={"tiers": summary, "close_reason": locked.close_reason},
                )
            return locked
        locked.status, locked.allocated_at = PoolRound.Status.ALLOCATED, timezone.now()
        locked.save(update_fields=["status", "allocated_at"])
        audit_record(
            actor=actor,
            api_key=api_key,
            action="pool.allocate",
            target=locked,
            after={"tiers": summary, "close_reason": locked.close_reason},
        )
    return locked


def _demand_left(pool_order: PoolOrder) -> bool:
    """Whether the tier of ``pool_order`` (its demand's) has submitted demand to allocate."""
    return PoolDemand.objects.filter(
        pool_order=pool_order, status=PoolDemand.Status.SUBMITTED
    ).exists()


def _allocate_tier(
    pool: Pool, round_: PoolRound, parts: list[PoolOrder], actor: Actor
) -> dict[str, Any]:
    pool_order = parts[0]  # Its demand's.
    # The tier's submitted demand only: a member that graduated while the round worked had
    # its demand withdrawn (``pool_member_graduate``) and receives nothing from it.
    demands = list(
        PoolDemand.objects.select_for_update(of=("self",))
        .filter(pool_order=pool_order, status=PoolDemand.Status.SUBMITTED)
        .select_related("member__account", "member__pool")
        .order_by("pk")
    )
    instrument = pool_order.instrument
    lot = instrument.lot_size
    fill = _tier_fill(parts)
    requests = [
        allocation.Request(d.pk, d.quantity // lot, d.limit_price, d.member.priority)
        for d in demands
    ]
    # The lots filled for withdrawn demand, beyond what the tier's remaining demand asks,
    # stay with the pool, with their share of the cost and fees.
    shared = min(fill.lots, sum(request.lots for request in requests))
    lots = allocation.allocate(requests, shared, pool.rule)
    by_demand = [lots[d.pk] * lot for d in demands]
    kept = (fill.lots - shared) * lot
    costs = allocation.split(fill.cost, [*by_demand, kept])[: len(demands)]
    fees = allocation.split(fill.fee, [*by_demand, kept])[: len(demands)]
    settled = unfunded = 0
    for demand, quantity, cost, fee in zip(demands, by_demand, costs, fees, strict=True):
        if quantity == 0:
            status = PoolAllocation.Status.NONE
            row = PoolAllocation(status=status, quantity=0)
        else:
            row = _settle(pool, round_, demand, instrument, quantity, cost, fee)
        row.round, row.pool_order, row.demand = round_, pool_order, demand
        row.member, row.instrument, row.requested = demand.member, instrument, demand.quantity
        row.save()
        notices.pool_allocated(row, pool=pool, round_number=round_.number)
        settled += row.quantity if row.status == PoolAllocation.Status.SETTLED else 0
        unfunded += row.quantity if row.status == PoolAllocation.Status.UNFUNDED else 0
        demand.status = PoolDemand.Status.ALLOCATED
        demand.save(update_fields=["status", "updated_at"])
    return {
        "instrument": instrument.symbol,
        "price": str(pool_order.price),
        "filled": fill.lots * lot,
        "settled": settled,
        "unfunded": unfunded,
    }


def _pool_margin_release(
    pool: Pool, instrument: Instrument, quantity: int
) -> tuple[LedgerAccount, int]:
    """The pool's margin account for ``instrument`` and what ``quantity`` of its contracts
    release: pro rata, rounded down; the last contract releases the rest."""
    margin = margin_account(pool.account, instrument.symbol)
    held_contracts = position_account(pool.account, instrument.symbol).balance
    held_margin = -margin.balance
    if quantity > held_contracts:
        raise _refuse(
            PoolErrorCode.NOT_ENOUGH_HELD,
            f"The pool holds {held_contracts} contracts of {instrument.symbol}, not {quantity}.",
            "quantity",
        )
    if quantity == held_contracts:
        return margin, held_margin
    return margin, held_margin * quantity // held_contracts


def _settle(
    pool: Pool,
    round_: PoolRound,
    demand: PoolDemand,
    instrument: Instrument,
    quantity: int,
    cost: int,
    fee: int,
) -> PoolAllocation:
    member = demand.member
    if margin_call_of(member.account) is not None:
        # Under a margin call the account only reduces its positions (and no cash leaves it):
        # its lots stay with the pool, to be reallocated once the call is met.
        return PoolAllocation(status=PoolAllocation.Status.UNFUNDED, quantity=quantity, cost=cost)
    average = Decimal(cost) / (quantity * instrument.gpu_hours_per_contract * MICROS_PER_USD)
    margin = _member_margin_change(
        member, instrument, quantity, order_margin_per_contract(instrument, "buy", average)
    )
    subsidy = int(
        (Decimal(cost) * pool.subsidy_percent / 100).to_integral_value(rounding=ROUND_FLOOR)
    )
    try:
        with transaction.atomic():  # A savepoint: an unfunded member leaves nothing behind.
            member_cash = LedgerAccount.objects.select_for_update().get(
                pk=cash_account(member.account).pk
            )
            need = margin + fee - subsidy
            credit = max(0, need - member_cash.available)
            room = pool.credit_line - credit_outstanding(member)
            if credit > max(room, 0):
                raise _refuse(
                    PoolErrorCode.INSUFFICIENT_FUNDS,
                    f"{member.organization.name} needs {usd_text(credit)} of credit; "
                    f"{usd_text(max(room, 0))} of the credit line is left.",
                )
            entry = _post_transfer(
                key=f"pool-allocation:{round_.pk}:{demand.pk}",
                description=(
                    f"{pool}: round {round_.number} allocates {quantity} {instrument.symbol} "
                    f"to {member.organization.slug}"
                ),
                pool=pool,
                member=member,
                instrument=instrument,
                quantity=quantity,
                cost=cost,
                member_margin=margin,
                fee=fee,
                subsidy=subsidy,
                credit=credit,
            )
    except (PoolError, LedgerError):
        return PoolAllocation(status=PoolAllocation.Status.UNFUNDED, quantity=quantity, cost=cost)
    return PoolAllocation(
        status=PoolAllocation.Status.SETTLED,
        quantity=quantity,
        cost=cost,
        fee=fee,
        subsidy=subsidy,
        margin=margin,
        credit=credit,
        entry=entry,
    )


def _post_transfer(
    *,
    key: str,
    description: str,
    pool: Pool,
    member: PoolMember,
    instrument: Instrument,
    quantity: int,
    cost: int,
    member_margin: int,
    fee: int = 0,
    subsidy: int = 0,
    credit: int = 0,
) -> Entry:
    """Contracts from the pool to the member (``quantity`` > 0) or back (< 0), with their cost
    memo, the member's margin, the pool's margin released (or set aside), the fee share, the
    subsidy and a credit draw, netted per account in one balanced entry."""
    symbol = instrument.symbol
    sign = 1 if quantity > 0 else -1
    if sign > 0:
        pool_margin, released = _pool_margin_release(pool, instrument, quantity)
        member_margin_account = margin_account(member.account, symbol)
        # Set aside by the member (negative: released, the contracts close its short).
        member_margin_delta = member_margin
    else:
        # Taken back: the member's margin on those contracts returns to it; the pool sets
        # aside margin for them.
        member_margin_account, freed = _member_margin_release(member, instrument, -quantity)
        member_margin_delta = -freed
        pool_margin = margin_account(pool.account, symbol)
        released = -member_margin
    amounts: dict[LedgerAccount, int] = {}

    def post(account: LedgerAccount, amount: int) -> None:
        amounts[account] = amounts.get(account, 0) + amount

    post(position_account(member.account, symbol), quantity)
    post(position_account(pool.account, symbol), -quantity)
    post(cost_account(member.account, symbol), sign * cost)
    post(cost_account(pool.account, symbol), -sign * cost)
    member_cash, pool_cash = cash_account(member.account), cash_account(pool.account)
    post(member_cash, member_margin_delta + fee - subsidy - credit)
    post(member_margin_account, -member_margin_delta)
    post(pool_cash, -fee + subsidy + credit - released)
    post(pool_margin, released)
    if credit:
        post(lent_account(pool, member), credit)
        post(borrowed_account(pool, member), -credit)
    postings = [(account, amount) for account, amount in amounts.items() if amount]
    return entry_post(
        key=key,
        description=description,
        postings=postings,
        metadata={"pool": pool.pk, "member": member.pk, "instrument": symbol},
    )


def _member_margin_change(
    member: PoolMember, instrument: Instrument, quantity: int, per_contract: int
) -> int:
    """What the member's margin on ``instrument`` changes by when it receives ``quantity``
    contracts at ``per_contract`` of initial margin, as a fill would change it: contracts that
    close a short position of its own release that position's margin pro rata (rounded down;
    the last contract releases the rest), only the others take margin. Negative: released.

    Until 2026-12-07 every contract took margin: a member short the month that received the
    pool's contracts set aside margin for a position they closed, its cash held as margin on
    a flat position until the next daily settlement (drawn on the pool's credit line when the
    member lacked it, or the allocation left unfunded)."""
    position = position_account(member.account, instrument.symbol).balance
    opening, closing = split_fill(position, quantity)
    released = 0
    if closing:
        held = -margin_account(member.account, instrument.symbol).balance
        released = held if closing == abs(position) else held * closing // abs(position)
    return per_contract * opening - released


def _member_margin_release(
    member: PoolMember, instrument: Instrument, quantity: int
) -> tuple[LedgerAccount, int]:
    # Contracts the member offers for sale are not taken back: once its sell filled it would
    # be short, with no margin (a sell that closes a position holds none). Counted under the
    # member account's row lock, as an acceptance counts what a reducing order may close.
    Account.objects.select_for_update(no_key=True).filter(pk=member.account_id).first()
    margin = margin_account(member.account, instrument.symbol)
    held_contracts = position_account(member.account, instrument.symbol).balance
    offered = orders_selector.live_quantity(member.account_id, instrument.pk, Side.SELL)
    # Nor contracts the member bought in the market itself: only what the pool gave it (and
    # not yet took back) returns to the pool. Under the same lock, so that two take-backs at
    # once count one after the other.
    from_pool = pool_selectors.contracts_from_pool(member, instrument)
    if quantity > from_pool:
        raise _refuse(
            PoolErrorCode.NOT_ENOUGH_HELD,
            f"{member.organization.name} holds {max(from_pool, 0)} contracts of "
            f"{instrument.symbol} from the pool: it may give back at most those, not "
            f"{quantity}; the rest of its position is its own.",
            "quantity",
        )
    if quantity > held_contracts - offered:
        expired = _past_expiry_note(member.account_id, instrument) if offered else ""
        raise _refuse(
            PoolErrorCode.NOT_ENOUGH_HELD,
            f"{member.organization.name} holds {max(held_contracts, 0)} contracts of "
            f"{instrument.symbol} and offers {offered} of them for sale{expired}: it may give "
            f"back {max(held_contracts - offered, 0)}, not {quantity}.",
            "quantity",
        )
    held_margin = -margin.balance
    if quantity == held_contracts:
        return margin, held_margin
    return margin, held_margin * quantity // held_contracts


# Capacity a member no longer needs ---------------------------------------------------------


def _mark(instrument: Instrument) -> Decimal:
    price = mark_price(instrument)
    if price is None:
        raise _refuse(
            PoolErrorCode.NO_MARK,
            f"{instrument.symbol} has no settlement or trade price to transfer at yet.",
            "instrument",
        )
    return price


def _check_transfer(pool: Pool, instrument: Instrument, quantity: int) -> None:
    if instrument.kind != Instrument.Kind.FUTURE or instrument.status != Instrument.Status.ACTIVE:
        raise _refuse(
            PoolErrorCode.INSTRUMENT_INVALID,
            "Pools move contracts of futures that still trade.",
            "instrument",
        )
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise _refuse(
            PoolErrorCode.QUANTITY_INVALID, "The quantity is a positive whole number.", "quantity"
        )
    if quantity % instrument.lot_size:
        raise _refuse(
            PoolErrorCode.QUANTITY_INVALID,
            f"{instrument.symbol} moves in lots of {instrument.lot_size} contracts.",
            "quantity",
        )


def _transfer(
    *,
    kind: str,
    member: PoolMember,
    instrument: Instrument,
    quantity: int,
    actor: Actor,
    api_key: ApiKey | None = None,
    price: Decimal | None = None,
) -> PoolTransfer:
    pool = member.pool
    _check_transfer(pool, instrument, quantity)
    price = price if price is not None else _mark(instrument)
    hours = instrument.gpu_hours_per_contract
    cost = collateral.notional_micros(price, quantity, hours)
    with transaction.atomic():
        instrument = instruments_lock([instrument.pk])[instrument.pk]
        signed = quantity if kind == PoolTransfer.Kind.REALLOCATE else -quantity
        # Whoever receives the contracts sets aside their initial margin at the mark (for a
        # member, on those that do not close a short position of its own).
        per_contract = order_margin_per_contract(instrument, "buy", price)
        margin = (
            _member_margin_change(member, instrument, quantity, per_contract)
            if signed > 0
            else per_contract * quantity
        )
        try:
            entry = _post_transfer(
                key=f"pool-transfer:{uuid.uuid4().hex}",
                description=(
                    f"{pool}: {quantity} {instrument.symbol} "
                    f"{'to' if signed > 0 else 'back from'} {member.organization.slug} at {price}"
                ),
                pool=pool,
                member=member,
                instrument=instrument,
                quantity=signed,
                cost=cost,
                member_margin=margin,
            )
        except LedgerError as error:
            payer = member.organization.name if signed > 0 else f"The pool {pool.name}"
            raise _refuse(
                PoolErrorCode.INSUFFICIENT_FUNDS,
                f"{payer} lacks the cash for the initial margin of {quantity} "
                f"{instrument.symbol} ({usd_text(margin)}).",
                "quantity",
            ) from error
        transfer = PoolTransfer.objects.create(
            pool=pool,
            member=member,
            instrument=instrument,
            kind=kind,
            quantity=quantity,
            price=price,
            entry=entry,
            actor=_user(actor),
        )
        audit_record(
            actor=actor,
            api_key=api_key,
            action=f"pool.{kind}",
            target=transfer,
            after={
                "member": member.organization.slug,
                "instrument": instrument.symbol,
                "quantity": quantity,
                "price": str(price),
            },
        )
    return transfer


def pool_take_back(
    *,
    member: PoolMember,
    instrument: Instrument,
    quantity: int,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> PoolTransfer:
    """Contracts a member no longer needs (typically a graduate's) return to the pool at the
    latest mark: the member's margin on them is freed, the pool sets aside its own. Only
    contracts the pool gave it (``selectors.pools.contracts_from_pool``) and that it does not
    offer for sale, else ``POOL_NOT_ENOUGH_HELD``: what it bought in the market is its own."""
    return _transfer(
        kind=PoolTransfer.Kind.TAKE_BACK,
        member=member,
        instrument=instrument,
        quantity=quantity,
        actor=actor,
        api_key=api_key,
    )


def _pool_account_lock(pool: Pool) -> None:
    """Lock the pool account's row before counting what it holds free (``_check_free``):
    the lock an order's acceptance takes for its ``account_check`` (``pool_offer``). Two
    actions on the pool's contracts at once (a double-clicked offer, an offer and a
    reallocation) otherwise each counted them free and together sold or moved them twice,
    leaving the pool short. NO KEY UPDATE, as the acceptance's."""
    Account.objects.select_for_update(no_key=True).filter(pk=pool.account_id).first()


def _check_free(pool: Pool, instrument: Instrument, quantity: int) -> None:
    """The pool's contracts of ``instrument`` it may still move or sell: what it holds, less
    what its live sell orders offer (selling them twice would open a short in the pool's
    account) and less what the tier orders of a working round bought, which belongs to that
    round's allocation."""
    held = position_account(pool.account, instrument.symbol).balance
    offered = orders_selector.live_quantity(pool.account_id, instrument.pk, Side.SELL)
    reserved = sum(
        pool_order.order.filled_quantity
        for pool_order in PoolOrder.objects.filter(
            round__pool=pool,
            round__status=PoolRound.Status.WORKING,
            instrument=instrument,
            order__isnull=False,
        ).select_related("order")
        if pool_order.order is not None  # Always, by the filter; says so to the type checker.
    )
    if quantity > held - offered - reserved:
        raise _refuse(
            PoolErrorCode.NOT_ENOUGH_HELD,
            f"The pool holds {max(held, 0)} contracts of {instrument.symbol}: {offered} are "
            f"offered for sale and {reserved} await a working round's allocation.",
            "quantity",
        )


def _past_expiry_note(account_id: int, instrument: Instrument) -> str:
    """How many of the account's sells of ``instrument`` counted as offered are GTD orders
    whose time has come (``orders.past_expiry_quantity``), for a refusal. (The pool's own
    offers are good till cancelled: only a member's sells can be GTD.)"""
    sells = Order.objects.filter(account_id=account_id, instrument=instrument, side=Side.SELL)
    return orders_selector.past_expiry_note(
        orders_selector.past_expiry_quantity(sells, timezone.now())
    )


def _check_demand(
    member: PoolMember, instrument: Instrument, quantity: int, price: Decimal
) -> None:
    """A member receives contracts only against its own demand that the pool has not covered
    yet (``selectors.pools.demand_uncovered``), at most that many, and only against demand
    whose limit price is at least ``price``, the mark they move at: a member never pays more
    than it agreed to (``POOL_REALLOCATION_ABOVE_LIMIT``)."""
    by_limit = pool_selectors.demand_uncovered_by_limit(member, instrument)
    uncovered = sum(contracts for _, contracts in by_limit)
    name, symbol = member.organization.name, instrument.symbol
    if quantity <= uncovered:
        within = sum(contracts for limit, contracts in by_limit if limit >= price)
        if quantity <= within:
            return
        limits = ", ".join(f"{contracts} at {limit.normalize():f}" for limit, contracts in by_limit)
        raise _refuse(
            PoolErrorCode.REALLOCATION_ABOVE_LIMIT,
            f"{name}'s demand for {symbol} not yet received is {limits} ($/GPU-hr limits); "
            f"the pool moves contracts at the mark, {price.normalize():f}: at most {within} "
            "can go to it at that price.",
            "quantity" if within else "member",
        )
    if uncovered == 0:
        raise _refuse(
            PoolErrorCode.REALLOCATION_BEYOND_DEMAND,
            f"{name} has no demand for {symbol} in this pool that it has not received: "
            "capacity goes to a member only against its own demand.",
            "member",
        )
    raise _refuse(
        PoolErrorCode.REALLOCATION_BEYOND_DEMAND,
        f"{name} asked this pool for {uncovered} more contracts of {symbol} than it "
        f"received, not {quantity}.",
        "quantity",
    )


def pool_reallocate(
    *,
    member: PoolMember,
    instrument: Instrument,
    quantity: int,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> PoolTransfer:
    """Contracts the pool holds go to an active member at the latest mark; the member sets
    aside their margin.

    Only against the member's own demand: the member must have demand in this pool for this
    instrument (its delivery month) whose round has allocated and that its settled
    allocations and earlier reallocations have not covered, and it receives at most that
    uncovered quantity (``selectors.pools.demand_uncovered`` defines it); otherwise
    ``POOL_REALLOCATION_BEYOND_DEMAND`` (field ``member`` when nothing is uncovered,
    ``quantity`` when less than asked is) and nothing is written. The mark must not be above
    the limit price of the demand it covers, or ``POOL_REALLOCATION_ABOVE_LIMIT``. The member's
    row stays locked from the check to the entry, so two reallocations cannot both use the same
    demand.
    """
    with transaction.atomic():
        # The member's row only: locking the accounts joined here too (FOR UPDATE) made an
        # order of theirs wait at its commit (its foreign key) while holding the ledger
        # accounts this transfer posts to, a deadlock.
        member = (
            PoolMember.objects.select_for_update(of=("self",))
            .select_related("pool__account", "organization", "account")
            .get(pk=member.pk)
        )
        if member.status != PoolMember.Status.ACTIVE:
            raise _refuse(
                PoolErrorCode.MEMBER_GRADUATED, "Capacity goes to active members only.", "member"
            )
        _check_transfer(member.pool, instrument, quantity)
        _pool_account_lock(member.pool)
        _check_free(member.pool, instrument, quantity)
        _margin_call_check(member.account, "it can receive the pool's contracts")
        price = _mark(instrument)
        _check_demand(member, instrument, quantity, price)
        return _transfer(
            kind=PoolTransfer.Kind.REALLOCATE,
            member=member,
            instrument=instrument,
            quantity=quantity,
            actor=actor,
            api_key=api_key,
            price=price,
        )


def pool_offer(
    *,
    pool: Pool,
    instrument: Instrument,
    quantity: int,
    price: Decimal,
    actor: Actor,
    api_key: ApiKey | None = None,
) -> Order:
    """Sell contracts the pool holds in the market: a GTC limit sell from the pool account.

    What the pool holds free is counted in the order's acceptance transaction, under the pool
    account's row lock (``_pool_account_lock``, which ``pool_reallocate`` takes too)."""
    _check_transfer(pool, instrument, quantity)
    order = order_place(
        account=pool.account,
        instrument=instrument,
        side="sell",
        quantity=quantity,
        price=price,
        placed_by=_user(actor),
        account_check=lambda: _check_free(pool, instrument, quantity),
    )
    audit_record(
        actor=actor,
        api_key=api_key,
        action="pool.offer",
        target=pool,
        after={"order": order.pk, "instrument": instrument.symbol, "quantity": quantity},
    )
    return order


def pool_offer_cancel(
    *, pool: Pool, order: Order, actor: Actor, api_key: ApiKey | None = None
) -> Order:
    """Withdraw what is left of an offer (``pool_offer``): its contracts are the pool's to
    reallocate or offer again. The pool's account is not the sponsor's main account, which the
    orders API and the order pages cancel from, so without this an offer stayed in the book
    until it filled, and its contracts could go to no member. Only the pool account's sells:
    a round's tier buys end when their round closes (``pool_round_close``). An offer that
    ended meanwhile is ``ORDER_NOT_LIVE`` (``OrderRejected``)."""
    assert order.account_id == pool.account_id and order.side == Side.SELL, order
    cancelled = order_cancel(order=order, requested_by=_user(actor), reason=CancelReason.USER)
    audit_record(
        actor=actor,
        api_key=api_key,
        action="pool.offer_cancel",
        target=pool,
        after={
            "order": order.pk,
            "instrument": cancelled.instrument.symbol,
            "cancelled": cancelled.cancelled_quantity,
        },
    )
    return cancelled


# Cash between the sponsor, the pool and members ---------------------------------------------


def _amount(amount: Decimal | int) -> int:
    if isinstance(amount, bool):  # An int to Python, but never an amount.
        raise _refuse(
            PoolErrorCode.AMOUNT_INVALID, "The amount is USD with at most 6 decimals.", "amount"
        )
    if isinstance(amount, int):
        amount = Decimal(amount)
    try:
        micros = usd_to_micros(amount)
    except (ValueError, InvalidOperation, TypeError, OverflowError) as error:
        raise _refuse(
            PoolErrorCode.AMOUNT_INVALID, "The amount is USD with at most 6 decimals.", "amount"
        ) from error
    if micros <= 0:
        raise _refuse(PoolErrorCode.AMOUNT_INVALID, "The amount is above zero.", "amount")
    return micros


def _margin_call_check(account: Account, doing: str) -> None:
    """No cash leaves an account under a margin call, into a pool or out of one: the rule
    withdrawals follow (``selectors.risk.cash_out_refusal``), as ``POOL_MARGIN_CALL_OPEN``."""
    refusal = cash_out_refusal(account, doing)
    if refusal is not None:
        raise _refuse(PoolErrorCode.MARGIN_CALL_OPEN, refusal)


def pool_fund(
    *,
    pool: Pool,
    amount: Decimal,
    actor: Actor,
    api_key: ApiKey | None = None,
    withdraw: bool = False,
) -> Entry:
    """Move cash from the sponsor's main account to the pool's (or back, ``withdraw``).

    Refused (``POOL_MARGIN_CALL_OPEN``) while the account the cash leaves, the sponsor's main
    account or, withdrawing, the pool's, is under a margin call."""
    micros = _amount(amount)
    sponsor = account_main(pool.sponsor)
    source_account, target_account = (
        (pool.account, sponsor) if withdraw else (sponsor, pool.account)
    )
    source, target = cash_account(source_account), cash_account(target_account)
    try:
        with transaction.atomic():
            _margin_call_check(source_account, "cash can leave it")
            entry = entry_post(
                key=f"pool-fund:{uuid.uuid4().hex}",
                description=f"{pool}: {'to the sponsor' if withdraw else 'from the sponsor'}",
                postings=[(source, micros), (target, -micros)],
                metadata={"pool": pool.pk},
            )
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.withdraw" if withdraw else "pool.fund",
                target=pool,
                after={"amount": str(amount), "entry": entry.pk},
            )
    except LedgerError as error:
        raise _refuse(
            PoolErrorCode.INSUFFICIENT_FUNDS,
            f"{'The pool' if withdraw else pool.sponsor.name} has less than "
            f"{usd_figure(amount)} USD available.",
            "amount",
        ) from error
    return entry


def pool_credit_repay(
    *, member: PoolMember, amount: Decimal, actor: Actor, api_key: ApiKey | None = None
) -> Entry:
    """The member pays back credit the pool lent it, from its cash. Refused
    (``POOL_MARGIN_CALL_OPEN``) while the member's account is under a margin call: its cash
    goes to meet the call first."""
    micros = _amount(amount)
    pool = member.pool
    try:
        with transaction.atomic():
            # Under the member's row lock, so that two repayments at once count one after the
            # other: the second is refused for more than is owed, not for want of cash.
            PoolMember.objects.select_for_update().filter(pk=member.pk).first()
            owed = credit_outstanding(member)
            if micros > owed:
                raise _refuse(
                    PoolErrorCode.AMOUNT_INVALID,
                    f"{member.organization.name} owes the pool {usd_text(owed)}.",
                    "amount",
                )
            _margin_call_check(member.account, "credit can be repaid from it")
            entry = entry_post(
                key=f"pool-repay:{uuid.uuid4().hex}",
                description=f"{pool}: {member.organization.slug} repays credit",
                postings=[
                    (cash_account(member.account), micros),
                    (cash_account(pool.account), -micros),
                    (borrowed_account(pool, member), micros),
                    (lent_account(pool, member), -micros),
                ],
                metadata={"pool": pool.pk, "member": member.pk},
            )
            audit_record(
                actor=actor,
                api_key=api_key,
                action="pool.credit_repay",
                target=member,
                after={"amount": str(amount), "entry": entry.pk},
            )
    except LedgerError as error:
        raise _refuse(
            PoolErrorCode.INSUFFICIENT_FUNDS,
            f"{member.organization.name} has less than {usd_figure(amount)} USD available.",
            "amount",
        ) from error
    return entry


# The scheduler -----------------------------------------------------------------------------


def pools_run_due(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic task: cut off pools whose cut-off has passed, close rounds whose time is up,
    and allocate rounds whose orders an external matcher has finished cancelling.

    A pool or round that fails unexpectedly is logged and left due for the next run; the
    others go on, so one pool's fault does not hold up every other pool's rounds."""
    now = now or timezone.now()
    done = {"cut_off": 0, "closed": 0, "allocated": 0}
    for pool in Pool.objects.filter(status=Pool.Status.OPEN, cutoff_at__lte=now).order_by("pk"):
        try:
            pool_cut_off(pool=pool, actor=None, now=now, scheduled=True)
            done["cut_off"] += 1
        except PoolError as error:
            # A round still working: the cut-off stays due until it closes. Moved or cleared
            # by the sponsor since the pool was listed: not due. Nothing to aggregate: the
            # cut-off has passed with nothing to cut off, and is cleared, or members could
            # change no demand (``POOL_CUTOFF_PASSED``) until the sponsor set another.
            if error.code == PoolErrorCode.NO_DEMAND:
                _cut_off_nothing(pool, now)
            continue
        except Exception:
            logger.exception("pools: the cut-off of pool #%s failed; next run", pool.pk)
    expired = {round_.pk for round_ in pool_rounds_close_expired(now=now)}
    done["closed"] += len(expired)
    done["allocated"] += len(
        PoolRound.objects.filter(pk__in=expired, status=PoolRound.Status.ALLOCATED)
    )
    working = PoolRound.objects.filter(status=PoolRound.Status.WORKING).exclude(pk__in=expired)
    for round_ in working.order_by("pk"):
        try:
            if round_.closes_at <= now:
                closed = pool_round_close(round_=round_, actor=None, now=now)
                done["closed"] += 1
                done["allocated"] += closed.status == PoolRound.Status.ALLOCATED
            elif _cancels_processed(round_):
                allocated = pool_round_allocate(round_=round_, actor=None, now=now)
                done["allocated"] += allocated.status == PoolRound.Status.ALLOCATED
        except Exception:
            logger.exception("pools: round #%s did not close or allocate; next run", round_.pk)
    return done


def _cut_off_nothing(pool: Pool, now: datetime) -> None:
    with transaction.atomic():
        locked = Pool.objects.select_for_update().get(pk=pool.pk)
        if locked.cutoff_at is None or locked.cutoff_at > now:
            return  # The sponsor set another meanwhile.
        before = _settings_of(locked)
        locked.cutoff_at = None
        locked.save(update_fields=["cutoff_at"])
        audit_record(
            actor=None,
            action="pool.cut_off_empty",
            target=locked,
            before=before,
            after=_settings_of(locked),
        )


def _cancels_processed(round_: PoolRound) -> bool:
    """The sponsor closed the round before its time (cancels were asked for its orders) and
    an external matcher has processed them: none of its orders works any more."""
    orders = Order.objects.filter(pool_order__round=round_)
    return (
        OrderCommand.objects.filter(order__in=orders, kind=OrderCommand.Kind.CANCEL).exists()
        and not orders.filter(status__in=LIVE_STATUSES).exists()
    )
