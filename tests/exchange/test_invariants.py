"""Money invariants of the whole exchange under random trading, end to end.

A small market (two cash-settled futures, a call and a put on the first, a physically
settled future of the first one's month in a second region, a resale listing of a provider's
block), four funded organizations holding GPU-hours of the physical future's month and a
sponsor's pool for two of them go through a random sequence of real service calls, the same
with every run for a seed: limit orders of every time in force (GTC, GTD, IOC, FOK,
post-only, each self-trade prevention), market orders, cancels (the customer's and staff's),
replaces, cancel-all and cancel-all-after, reducing orders of accounts under a margin call,
staff halting and resuming instruments, deposits, withdrawals requested then approved or
rejected by finance staff, GTD expiries swept, settlement prices previewed, daily settlement
runs (variation margin, margin, option exercise and expiry, the futures' final settlement in
cash and by delivery, the listing's expiry) with staff moving the futures' prices, margin call
reviews (the schedule's and staff's) and liquidations, and the pool's demand (submitted,
amended, withdrawn), rounds (cut-off, close, allocation with subsidy and credit), take-backs,
reallocations, offers, funding and credit repayments. After every step the ledger and the
orders are checked against what the design promises (docs/ARCHITECTURE.md, "Ledger",
"Collateral and settlement", "The daily risk cycle", "Funding"):

- the ledger's own check (totals against postings and holds, entries balanced per commodity,
  holds' remaining against consumptions) and the orders' (fills against trades, status against
  open quantity, no crossed book, no finished order holding, no trade without its entry);
- every commodity's accounts sum to zero (open interest: longs equal shorts, per instrument;
  GPU-hours held equal GPU-hours issued) and no limited account is past its limit;
- every pending hold belongs to a live order (its active holds: exactly what its open quantity
  needs, ``collateral.amounts_for``) or to a withdrawal not yet paid or refused (its amount);
- every position is its trades plus what expiry and the pool moved, every instrument's cost
  memos sum to zero, margin is never negative and none is held on a symbol the account holds
  no position in, and what the pool lent is what its members borrowed;
- cash is conserved: what was deposited less what was paid out is the customers' cash and
  margin, less their deficits, plus the exchange's fees, and the fees are the trades' fees;
- an account that owes a deficit is under a margin call; under a call nothing is accepted but
  reducing orders (without margin) and resale sells, no cash leaves it, and its reducing
  orders end with the call;
- right after each day's run, every account holds on each instrument the margin that
  ``margin.account_requirement`` computes for its positions at the day's prices, or less only
  when its cash ran out, and one with no margin call holds at least the maintenance share and
  owes nothing.

The days settled are after today (``calendar_ahead``): trading runs on the real clock, the
cycle on a clock two years on.
"""

import math
import os
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.errors import ExchangeError
from exchange.matcher import inline
from exchange.models import (
    LIVE_STATUSES,
    Account,
    CancelReason,
    Instrument,
    MarginCall,
    Order,
    OrderCommand,
    OrderHold,
    Pool,
    PoolDemand,
    PoolRound,
    Region,
    RiskCycle,
    SettlementPrice,
    Side,
    Trade,
    Withdrawal,
)
from exchange.selectors.integrity import order_book_problems
from exchange.selectors.market import quotes_for
from exchange.selectors.positions import contracts_in
from exchange.selectors.risk import prices_missing
from exchange.services import collateral, margin
from exchange.services.cancel_after import cancel_all_after_fire_due, cancel_all_after_set
from exchange.services.capacity import capacity_register
from exchange.services.funding import (
    deposit_test_funds,
    withdrawal_approve,
    withdrawal_reject,
    withdrawal_request,
)
from exchange.services.instruments import instrument_halt, instrument_resume
from exchange.services.ledger_accounts import cash_account_code, entitlement_account_code
from exchange.services.listing import StripSpec, futures_list_strip, options_list_chain
from exchange.services.orders import order_cancel, order_place, order_replace, orders_cancel
from exchange.services.participants import account_main, member_add, organization_create
from exchange.services.pools import (
    demand_amend,
    demand_submit,
    demand_withdraw,
    pool_create,
    pool_credit_repay,
    pool_cut_off,
    pool_fund,
    pool_member_add,
    pool_offer,
    pool_reallocate,
    pool_round_close,
    pool_take_back,
)
from exchange.services.risk_cycle import (
    account_liquidate,
    daily_settlement_run,
    margin_call_review,
)
from exchange.services.settlement_prices import settlement_price_override, settlement_prices_set
from exchange.services.staff import margin_call_staff_review, order_staff_cancel
from ledger.models import Account as LedgerAccount
from ledger.models import Hold, Posting
from ledger.selectors import ledger_problems
from tests.exchange.conftest import _account
from tests.exchange.support import staff_user

# Three seeds of 250 steps take about 35 s on SQLite; each reaches margin calls and their cure,
# seeds 1 and 12 a physical delivery. A longer hunt, by hand (-s prints what each seed did):
# INVARIANT_SEEDS=1-200 INVARIANT_STEPS=300 pytest -s tests/exchange/test_invariants.py
_first, _, _last = os.environ.get("INVARIANT_SEEDS", "").partition("-")
SEEDS = tuple(range(int(_first), int(_last or _first) + 1)) if _first else (1, 2, 12)
STEPS = int(os.environ.get("INVARIANT_STEPS", "250"))
MICROS = 10**6

pytestmark = pytest.mark.usefixtures("calendar_ahead")


def _business_days_after(day, count):
    for _ in range(count):
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
    return day


class Nothing(Exception):
    """The action has nothing to act on (no live order, no open call): the step does nothing."""


class Market:
    """The market, the random flow through the services, and the test's own books: what was
    deposited and paid out, counted here rather than read from the code under test."""

    def __init__(self, rng, sku, region, futures, seller, listing):
        self.rng = rng
        # The fixture's futures settle in cash; a third, on the first one's month in another
        # region, delivers GPU-hours, which the customers hold (below).
        west = Region.objects.create(
            code="USWEST",
            name="US West",
            compliance=["soc2"],
            power_price_usd_per_kwh=Decimal("0.07"),
        )
        physical = futures_list_strip(
            sku=sku,
            region=west,
            first_month=futures[0].delivery_start,
            months=1,
            spec=StripSpec(settlement=Instrument.Settlement.PHYSICAL),
        )[0]
        self.futures = [*futures, physical]
        chain = options_list_chain(
            future=futures[0],
            reference_price=Decimal("2.50"),
            strike_step=Decimal("0.25"),
            strikes_each_side=0,
        )
        self.options = list(chain)
        self.listing = listing  # The seller's block, listed for resale (the fixture).
        self.instruments = [*self.futures, *self.options, self.listing]
        self.risk = staff_user("risk", Role.RISK)
        self.finance = staff_user("finance", Role.FINANCE)
        self.operations = staff_user("operations", Role.OPERATIONS)
        self.deposited = 0
        self.paid_out = 0
        self.accounts = [seller]
        self.deposited += 10_000_000 * MICROS  # The seller fixture's funds.
        for slug, kind in (
            ("lumen", "startup"),
            ("helix", "trading_firm"),
            ("quanta", "startup"),
        ):
            account = _account(slug, kind, funded=False)
            self.accounts.append(account)
            self.deposit(account, Decimal(rng.choice((1500, 3000, 8000, 20000))))
        # A sponsor's pool buys futures for two of the startups.
        sponsor = organization_create(slug="foundry", name="Foundry", kind="sponsor")
        self.sponsor_user = member_add(
            organization=sponsor, username="sam", email="sam@foundry.example", password="x-2026"
        ).user
        self.accounts.append(account_main(sponsor))
        self.deposit(account_main(sponsor), Decimal(200000))
        self.pool = pool_create(
            sponsor=sponsor,
            name="Seed GPUs",
            rule=rng.choice(list(Pool.Rule)),
            subsidy_percent=Decimal(rng.choice((0, 10, 50))),
            credit_line=Decimal(rng.choice((0, 2000, 20000))),
            actor=self.sponsor_user,
        )
        self.accounts.append(self.pool.account)
        # Who places orders with the order services: every account but the pool's, whose
        # orders are the pool services' (its offers of contracts it holds, its rounds' buys) or
        # a liquidation's. Sold short with the order services, it took contracts back from a
        # member into margin the pool services never set aside for a short.
        self.traders = self.accounts[:5]
        # GPU-hours of the physical future's month, for the seller and the three customers to
        # deliver when they are short at its expiry (the pool has none: it settles in cash).
        month_start = datetime.combine(physical.delivery_start, time.min, tzinfo=UTC)
        month_end = datetime.combine(physical.delivery_end, time.min, tzinfo=UTC)
        for holder, gpus in zip(self.accounts[:4], (8, 2, 4, 2), strict=True):
            capacity_register(
                provider=seller.organization,
                holder=holder.organization,
                cluster=f"west-{holder.organization.slug}",
                sku=sku,
                region=west,
                starts_at=month_start,
                ends_at=month_end,
                gpus=gpus,
                interconnect="infiniband",
                contiguous_block_gpus=gpus,
            )
        pool_fund(pool=self.pool, amount=Decimal(50000), actor=self.sponsor_user)
        self.members = [
            pool_member_add(
                pool=self.pool, organization=account.organization, actor=self.sponsor_user
            )
            for account in self.accounts[1:4:2]
        ]
        self.mids = {
            instrument.pk: int(self._reference(instrument) / instrument.tick_size)
            for instrument in self.instruments
        }
        # Days the cycle settles, in order: before the options' expiry, their expiry, the day
        # after, the future's last trading day (final settlement, delivery), then the day the
        # listing stops trading.
        option_day = self.options[0].last_trading_day
        days = [
            calendar.business_days_before(option_day, 2),
            option_day,
            _business_days_after(option_day, 1),
            futures[0].last_trading_day,
            self.listing.last_trading_day,
            calendar.business_days_before(futures[1].last_trading_day, 3),
            futures[1].last_trading_day,
        ]
        assert physical.last_trading_day == futures[0].last_trading_day
        self.days = sorted(set(days))
        self.settled = 0
        self.previewed = 0  # Days whose prices staff previewed before the run (the admin's way).
        self.halted_trades: dict[int, int] = {}  # Halted instruments: their trades when halted.
        self.clock_offset = timedelta(0)  # How far the GTD sweeps have moved the books' clock.
        self.actions: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()

    def _reference(self, instrument):
        if instrument.kind == Instrument.Kind.OPTION:
            return Decimal("0.120")
        return Decimal("2.50")

    # The flow ----------------------------------------------------------------------------

    def step(self):
        actions = (
            (30, self.limit),
            (20, self.marketable),
            (4, self.market),
            (10, self.cancel),
            (8, self.replace),
            (2, self.cancel_all),
            (3, self.deposit_random),
            (3, self.withdraw),
            (3, self.review_withdrawal),
            (2, self.sweep_expiries),
            (2, self.review_margin_calls),
            (2, self.liquidate),
            (2, self.arm_cancel_all_after),
            (3, self.pool_demand),
            (2, self.pool_round),
            (1, self.pool_take_back),
            (1, self.pool_reallocate),
            (1, self.pool_offer),
            (1, self.pool_fund),
            (1, self.pool_credit_repay),
            (4, self.reduce),
            (3, self.lever),
            (1, self.halt_or_resume),
            (1, self.staff_cancel),
            (1, self.pool_demand_change),
            (1, self.preview_prices),
        )
        action = self.rng.choices([a for _, a in actions], [w for w, _ in actions])[0]
        name = action.__name__
        try:
            action()
        except ExchangeError as error:
            self.refusals[f"{name}:{error.code}"] += 1
        except Nothing:
            self.refusals[f"{name}:nothing"] += 1
        else:
            self.actions[name] += 1

    def tradable(self):
        return [
            i
            for i in Instrument.objects.filter(pk__in=[i.pk for i in self.instruments])
            if i.status == Instrument.Status.ACTIVE
        ]

    def _instrument(self):
        tradable = self.tradable()
        if not tradable:
            raise Nothing("every instrument has expired")
        weights = [
            {Instrument.Kind.FUTURE: 5, Instrument.Kind.OPTION: 3}.get(i.kind, 1) for i in tradable
        ]
        instrument = self.rng.choices(tradable, weights)[0]
        step = self.rng.choice((-1, 0, 0, 1))
        self.mids[instrument.pk] = max(20, self.mids[instrument.pk] + step)
        return instrument

    def _quantity(self, instrument):
        if instrument.kind == Instrument.Kind.RESALE:
            return instrument.lot_size * self.rng.choice((1, 1, 2))
        return instrument.lot_size * self.rng.choice((1, 2, 3, 5, 8, 13))

    def _price(self, instrument, ticks):
        return instrument.tick_size * max(1, ticks)

    def _called(self, account):
        return MarginCall.objects.filter(account=account, status=MarginCall.Status.OPEN).exists()

    def _place(self, account, instrument, side, **options):
        """``order_place``; an account under a margin call has what it gets accepted taken as
        reducing its position (no margin, no fee), but for a sell of resale capacity."""
        called = self._called(account)
        order = order_place(account=account, instrument=instrument, side=side, **options)
        if called and not (instrument.kind == Instrument.Kind.RESALE and side == Side.SELL):
            assert order.reduce_only, f"order {order.pk} accepted under a margin call, not reducing"
            assert order.margin_per_contract == 0, f"order {order.pk} reduces with margin"
        return order

    def limit(self):
        instrument = self._instrument()
        side = self.rng.choice(("buy", "sell"))
        offset = self.rng.randint(-3, 6)
        mid = self.mids[instrument.pk]
        ticks = mid - offset if side == "buy" else mid + offset
        options = {}
        roll = self.rng.random()
        if roll < 0.2:
            hours = self.rng.choice((1, 3, 5))
            options["time_in_force"] = Order.TimeInForce.GTD
            options["expires_at"] = timezone.now() + self.clock_offset + timedelta(hours=hours)
        options["post_only"] = self.rng.random() < 0.15
        options["self_trade_prevention"] = self.rng.choice(list(Order.SelfTradePrevention))
        self._place(
            self.rng.choice(self.traders),
            instrument,
            side,
            price=self._price(instrument, ticks),
            quantity=self._quantity(instrument),
            **options,
        )

    def marketable(self):
        instrument = self._instrument()
        side = self.rng.choice(("buy", "sell"))
        through = self.rng.randint(0, 4)
        # Through the best opposite price when there is one, so that it trades.
        quote = quotes_for([instrument])[instrument.pk]
        best = quote.best_ask if side == "buy" else quote.best_bid
        mid = int(best.price / instrument.tick_size) if best else self.mids[instrument.pk]
        ticks = mid + through if side == "buy" else mid - through
        self._place(
            self.rng.choice(self.traders),
            instrument,
            side,
            price=self._price(instrument, ticks),
            quantity=self._quantity(instrument),
            time_in_force=self.rng.choice((Order.TimeInForce.IOC, Order.TimeInForce.FOK)),
        )

    def market(self):
        instrument = self._instrument()
        self._place(
            self.rng.choice(self.traders),
            instrument,
            self.rng.choice(("buy", "sell")),
            type=Order.Type.MARKET,
            time_in_force=self.rng.choice((Order.TimeInForce.IOC, Order.TimeInForce.FOK)),
            quantity=self._quantity(instrument),
        )

    def _live(self):
        # The pool account's orders are the pool services' (its offers, its rounds' buys): no
        # account holder cancels or replaces them with the order services.
        live = list(
            Order.objects.filter(instrument__in=self.instruments, status__in=LIVE_STATUSES)
            .exclude(account=self.pool.account)
            .order_by("pk")
        )
        if not live:
            raise Nothing("no live order")
        return self.rng.choice(live)

    def cancel(self):
        order_cancel(order=self._live())

    def replace(self):
        order = self._live()
        instrument = order.instrument
        assert order.price is not None
        price = max(
            instrument.tick_size,
            order.price + instrument.tick_size * self.rng.choice((-2, -1, 0, 1, 2)),
        )
        quantity = max(
            instrument.lot_size,
            order.filled_quantity + instrument.lot_size * self.rng.choice((0, 1, 2, 4)),
        )
        order_replace(order=order, price=price, quantity=quantity)

    def cancel_all(self):
        account = self.rng.choice([a for a in self.accounts if a.pk != self.pool.account_id])
        orders_cancel(
            orders=Order.objects.filter(account=account, status__in=LIVE_STATUSES).order_by("pk"),
            reason=CancelReason.CANCEL_ALL,
        )

    def deposit(self, account, amount):
        deposit_test_funds(account=account, amount=amount, actor=None)
        self.deposited += int(amount * MICROS)

    def deposit_random(self):
        self.deposit(self.rng.choice(self.accounts), Decimal(self.rng.choice((500, 2000, 9000))))

    def withdraw(self):
        amount = Decimal(self.rng.choice((100, 1000, 5000, 40000))) + Decimal("0.25")
        account = self.rng.choice(self.accounts)
        called = self._called(account)
        withdrawal_request(account=account, amount=amount, actor=None)
        assert not called, f"{account} withdrew under a margin call"

    def review_withdrawal(self):
        waiting = list(Withdrawal.objects.filter(status=Withdrawal.Status.REQUESTED).order_by("pk"))
        if not waiting:
            raise Nothing("no withdrawal to review")
        withdrawal = self.rng.choice(waiting)
        if self.rng.random() < 0.7:
            paid = withdrawal_approve(withdrawal=withdrawal, actor=self.finance)
            assert paid.status == Withdrawal.Status.PAID
            self.paid_out += int(paid.amount * MICROS)
        else:
            withdrawal_reject(withdrawal=withdrawal, actor=self.finance, reason="Test review")

    def arm_cancel_all_after(self):
        cancel_all_after_set(
            account=self.rng.choice(self.accounts),
            timeout_seconds=self.rng.choice((0, 3600, 3 * 3600)),
            now=timezone.now() + self.clock_offset,
        )

    def sweep_expiries(self):
        """The clock moves on two hours: GTD orders whose time came expire, and the
        cancel-all-after switches due fire."""
        self.clock_offset += timedelta(hours=2)
        now = timezone.now() + self.clock_offset
        inline._matcher.process_pending(now=now)
        cancel_all_after_fire_due(now=now)
        due = Order.objects.filter(status__in=LIVE_STATUSES, expires_at__lte=now)
        assert not due.exists(), f"GTD orders {list(due.values_list('pk', flat=True))} outlive"

    def review_margin_calls(self):
        calls = list(MarginCall.objects.filter(status=MarginCall.Status.OPEN).order_by("pk"))
        if not calls:
            raise Nothing("no open margin call")
        call = self.rng.choice(calls)
        if self.rng.random() < 0.5:
            self.deposit(call.account, Decimal(self.rng.choice((2000, 20000))))
        if self.rng.random() < 0.5:
            reviewed = margin_call_review(call)
        else:
            reviewed = margin_call_staff_review(call=call, actor=self.risk)
        if reviewed.status == MarginCall.Status.CURED:
            # Cured: it holds its whole requirement (at the review's prices) and owes nothing.
            assert reviewed.held >= reviewed.required and reviewed.deficit == 0, reviewed

    def liquidate(self):
        calls = list(MarginCall.objects.filter(status=MarginCall.Status.OPEN).order_by("pk"))
        if not calls:
            raise Nothing("no open margin call")
        account_liquidate(
            account=self.rng.choice(calls).account, actor=self.risk, reason="Test liquidation"
        )

    def _pool_future(self):
        futures = [
            f
            for f in Instrument.objects.filter(pk__in=[f.pk for f in self.futures])
            if f.status == Instrument.Status.ACTIVE
        ]
        if not futures:
            raise Nothing("no future trades")
        return self.rng.choice(futures)

    def pool_demand(self):
        future = self._pool_future()
        demand_submit(
            member=self.rng.choice(self.members),
            sku=future.sku,
            region=future.region,
            months=[future.delivery_start],
            gpus=self.rng.choice((1, 2, 5)),
            limit_price=self._price(future, self.mids[future.pk] + self.rng.randint(-2, 6)),
            actor=self.sponsor_user,
        )

    def pool_round(self):
        working = PoolRound.objects.filter(pool=self.pool, status=PoolRound.Status.WORKING)
        round_ = working.order_by("pk").first()
        if round_ is None:
            pool_cut_off(pool=self.pool, actor=self.sponsor_user)
        else:
            pool_round_close(round_=round_, actor=self.sponsor_user)

    def pool_take_back(self):
        pool_take_back(
            member=self.rng.choice(self.members),
            instrument=self._pool_future(),
            quantity=self.rng.choice((1, 2)),
            actor=self.sponsor_user,
        )

    def pool_reallocate(self):
        pool_reallocate(
            member=self.rng.choice(self.members),
            instrument=self._pool_future(),
            quantity=self.rng.choice((1, 2)),
            actor=self.sponsor_user,
        )

    def pool_offer(self):
        future = self._pool_future()
        pool_offer(
            pool=self.pool,
            instrument=future,
            quantity=self.rng.choice((1, 2)),
            price=self._price(future, self.mids[future.pk] + self.rng.randint(-3, 3)),
            actor=self.sponsor_user,
        )

    def pool_fund(self):
        pool_fund(
            pool=self.pool,
            amount=Decimal(self.rng.choice((1000, 10000))),
            actor=self.sponsor_user,
            withdraw=self.rng.random() < 0.5,
        )

    def pool_credit_repay(self):
        member = self.rng.choice(self.members)
        called = self._called(account_main(member.organization))
        pool_credit_repay(
            member=member,
            amount=Decimal(self.rng.choice((100, 1000))),
            actor=self.sponsor_user,
        )
        assert not called, f"{member} repaid its credit under a margin call"

    def reduce(self):
        """An account under a margin call closes part of a position: a reducing order."""
        calls = list(
            MarginCall.objects.filter(status=MarginCall.Status.OPEN)
            .exclude(account=self.pool.account)
            .order_by("pk")
        )
        if not calls:
            raise Nothing("no open margin call of a trader")
        account_id = self.rng.choice(calls).account_id
        account = next(a for a in self.traders if a.pk == account_id)
        held = [
            (instrument, contracts_in(account, instrument))
            for instrument in self.tradable()
            if instrument.kind != Instrument.Kind.RESALE
        ]
        held = [(instrument, contracts) for instrument, contracts in held if contracts]
        if not held:
            raise Nothing("the called account holds no position that trades")
        instrument, position = self.rng.choice(held)
        side = Side.SELL if position > 0 else Side.BUY
        quantity = self.rng.randint(1, abs(position))
        if self.rng.random() < 0.4:
            options = {"type": Order.Type.MARKET, "time_in_force": Order.TimeInForce.IOC}
        else:
            ticks = self.mids[instrument.pk] + self.rng.randint(-2, 2)
            options = {"price": self._price(instrument, ticks)}
            if self.rng.random() < 0.3:
                options["time_in_force"] = Order.TimeInForce.GTD
                options["expires_at"] = timezone.now() + self.clock_offset + timedelta(hours=3)
        self._place(account, instrument, side, quantity=quantity, **options)

    def lever(self):
        """Two customers trade a futures position with each other as large as the available
        cash of both margins, so that the next day's move, either way, can put one of them
        under a margin call."""
        futures = [i for i in self.tradable() if i.kind == Instrument.Kind.FUTURE]
        if not futures:
            raise Nothing("no future trades")
        instrument = self.rng.choice(futures)
        price = self._price(instrument, self.mids[instrument.pk])
        seller, buyer = self.rng.sample(self.traders, 2)
        quantity = 40
        for account, side in ((seller, Side.SELL), (buyer, Side.BUY)):
            cash = LedgerAccount.objects.get(code=cash_account_code(account)).available
            per_contract = margin.order_margin_per_contract(instrument, side, price) + MICROS
            quantity = min(quantity, cash // per_contract)
        if quantity < 1:
            raise Nothing("no cash to lever")
        self._place(seller, instrument, Side.SELL, price=price, quantity=quantity)
        self._place(
            buyer,
            instrument,
            Side.BUY,
            price=price,
            quantity=quantity,
            time_in_force=Order.TimeInForce.IOC,
        )

    def halt_or_resume(self):
        """Operations staff halt an instrument, or resume one they halted."""
        instruments = list(
            Instrument.objects.filter(pk__in=[i.pk for i in self.instruments])
            .exclude(status=Instrument.Status.EXPIRED)
            .order_by("pk")
        )
        halted = [i for i in instruments if i.status == Instrument.Status.HALTED]
        if halted and self.rng.random() < 0.7:
            resumed = instrument_resume(
                instrument=self.rng.choice(halted), actor=self.operations, reason="Resumed"
            )
            self.halted_trades.pop(resumed.pk, None)
            return
        if not instruments:
            raise Nothing("every instrument has expired")
        halted_now = instrument_halt(
            instrument=self.rng.choice(instruments), actor=self.operations, reason="Halted"
        )
        self.halted_trades[halted_now.pk] = halted_now.trades.count()

    def staff_cancel(self):
        order_staff_cancel(order=self._live(), actor=self.operations, reason="Test cancel")

    def pool_demand_change(self):
        demands = list(
            PoolDemand.objects.filter(pool=self.pool, status=PoolDemand.Status.OPEN).order_by("pk")
        )
        if not demands:
            raise Nothing("no open demand")
        demand = self.rng.choice(demands)
        if self.rng.random() < 0.4:
            demand_withdraw(demand=demand, actor=self.sponsor_user)
            return
        future = demand.instrument
        demand_amend(
            demand=demand,
            limit_price=self._price(future, self.mids[future.pk] + self.rng.randint(-2, 6)),
            gpus=self.rng.choice((1, 2, 5)),
            actor=self.sponsor_user,
        )

    def preview_prices(self):
        """Staff preview the next day to settle: its missing prices are set, kept for the run."""
        if self.settled == len(self.days):
            raise Nothing("every day is settled")
        settlement_prices_set(trading_date=self.days[self.settled], actor=self.risk)
        self.previewed += 1

    def settle_next_day(self):
        day = self.days[self.settled]
        self.settled += 1
        for future in self.futures:
            if Instrument.objects.get(pk=future.pk).status != Instrument.Status.ACTIVE:
                continue
            if self.rng.random() < 0.7:
                # Staff set the day's price: a move of up to 50% from the mid.
                mid = self.mids[future.pk] * future.tick_size
                moved = (
                    mid * Decimal(self.rng.choice((55, 70, 85, 95, 100, 105, 115, 130, 150))) / 100
                )
                price = (moved / future.tick_size).quantize(Decimal(1)) * future.tick_size
                settlement_price_override(
                    instrument=future,
                    trading_date=day,
                    price=price,
                    reason="Price of the day",
                    actor=self.risk,
                )
                self.mids[future.pk] = int(price / future.tick_size)
        # An instrument held that neither traded nor quoted, and was never settled, has no
        # price the cycle can make: the run refuses the day until staff set one (by design,
        # RISK_SETTLEMENT_PRICE_MISSING), as they do here, at the test's mid.
        for instrument in prices_missing(day):
            settlement_price_override(
                instrument=instrument,
                trading_date=day,
                price=self.mids[instrument.pk] * instrument.tick_size,
                reason="No market price",
                actor=self.risk,
            )
        released = self._cash_held_by_orders_expiring(day)
        daily_settlement_run(trading_date=day, actor=self.risk)
        self.actions["settle_day"] += 1
        check_margin_at_settlement(self, day, released)

    def _cash_held_by_orders_expiring(self, day):
        """Per account, the cash that live orders on instruments stopping trading by ``day``
        hold: the run's cancels release it after its margin step."""
        held: dict[int, int] = defaultdict(int)
        links = OrderHold.objects.filter(
            order__status__in=LIVE_STATUSES,
            order__instrument__last_trading_day__lte=day,
            hold__status=Hold.Status.PENDING,
            hold__account__code__contains=":cash:",
        ).select_related("order", "hold")
        for link in links:
            held[link.order.account_id] += link.hold.remaining
        return held


# The invariants ----------------------------------------------------------------------------


def check_invariants(market: Market, where: str) -> None:
    problems = [*ledger_problems(), *order_book_problems()]
    assert not problems, f"{where}: {problems}"

    accounts = list(LedgerAccount.objects.select_related("commodity"))
    by_code = {account.code: account for account in accounts}
    totals: dict[str, int] = defaultdict(int)
    for account in accounts:
        totals[account.commodity.code] += account.balance
        # No limited account is past its limit, holds included.
        if account.limit != LedgerAccount.Limit.NONE:
            assert account.available >= 0, f"{where}: {account.code} available {account.available}"
    # Every commodity sums to zero: USD, GPU-hours, and contracts (longs equal shorts).
    assert {code: total for code, total in totals.items() if total} == {}, where

    # Every pending hold is a live order's (active, exactly what its open quantity needs) or a
    # withdrawal's not yet paid or refused.
    pending = {hold.pk: hold for hold in Hold.objects.filter(status=Hold.Status.PENDING)}
    explained: set[int] = set()
    queued = set(
        OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).values_list(
            "order_id", flat=True
        )
    )
    assert not queued, f"{where}: the inline matcher left commands pending"
    live = Order.objects.filter(status__in=LIVE_STATUSES).select_related(
        "instrument", "instrument__sku", "instrument__region", "instrument__reservation"
    )
    for order in live:
        assert order.price is not None, f"{where}: market order {order.pk} rests"
        needed = collateral.amounts_for(
            order.instrument,
            order.side,
            order.price,
            order.open_quantity,
            order.margin_per_contract,
            order.maker_fee_rate,
            order.taker_fee_rate,
        )
        want: dict[str, int] = defaultdict(int)
        for part in needed:
            owner = Account(pk=order.account_id)
            code = (
                cash_account_code(owner)
                if part.month is None
                else entitlement_account_code(owner, part.asset)
            )
            want[code] += part.amount
        have: dict[str, int] = defaultdict(int)
        for link in OrderHold.objects.filter(order=order).select_related("hold__account"):
            if link.hold.status != Hold.Status.PENDING:
                continue
            assert link.active, f"{where}: order {order.pk} keeps an inactive hold pending"
            have[link.hold.account.code] += link.hold.remaining
            explained.add(link.hold_id)
        assert dict(have) == {code: amount for code, amount in want.items() if amount}, (
            f"{where}: order {order.pk} ({order.instrument.symbol} {order.side} "
            f"{order.open_quantity} open at {order.price}, status {order.status}) holds "
            f"{dict(have)}, needs {dict(want)}"
        )
    for withdrawal in Withdrawal.objects.filter(
        status__in=(Withdrawal.Status.REQUESTED, Withdrawal.Status.APPROVED)
    ):
        hold = pending.get(withdrawal.ledger_hold_id)
        assert hold is not None and hold.remaining == int(withdrawal.amount * MICROS), where
        explained.add(hold.pk)
    leaked = sorted(set(pending) - explained)
    assert leaked == [], f"{where}: holds {[str(pending[pk]) for pk in leaked]} pending for nothing"

    # Positions are trades plus what expiry and the pool (allocations, take-backs,
    # reallocations) moved; expired instruments are flat.
    trades: dict[tuple[int, int], int] = defaultdict(int)
    for row in Trade.objects.values("instrument_id", "buyer_account_id").annotate(
        q=Sum("quantity")
    ):
        trades[(row["buyer_account_id"], row["instrument_id"])] += row["q"]
    for row in Trade.objects.values("instrument_id", "seller_account_id").annotate(
        q=Sum("quantity")
    ):
        trades[(row["seller_account_id"], row["instrument_id"])] -= row["q"]
    moves: dict[str, int] = defaultdict(int)
    for code, amount in Posting.objects.filter(
        entry__idempotency_key__regex=r"^((option|future)-expiry|pool-allocation|pool-transfer):",
        account__code__contains=":position:",
    ).values_list("account__code", "amount"):
        moves[code] += amount
    for instrument in Instrument.objects.filter(pk__in=[i.pk for i in market.instruments]):
        if instrument.kind == Instrument.Kind.RESALE:
            continue
        memo_total = 0
        for account in market.accounts:
            code = f"trading:{account.pk}:position:{instrument.symbol}"
            position = by_code[code].balance if code in by_code else 0
            assert position == trades[(account.pk, instrument.pk)] + moves[code], (
                f"{where}: {code} is {position}, trades {trades[(account.pk, instrument.pk)]}"
                f" and expiry or pool {moves[code]}"
            )
            if instrument.status == Instrument.Status.EXPIRED:
                assert position == 0, f"{where}: {code} is {position} after expiry"
            margin_code = f"trading:{account.pk}:margin:{instrument.symbol}:USD"
            margin = -by_code[margin_code].balance if margin_code in by_code else 0
            assert margin >= 0, f"{where}: {margin_code} is {margin}"
            if position == 0:
                assert margin == 0, f"{where}: {margin_code} holds {margin} with no position"
            memo_code = f"trading:{account.pk}:cost:{instrument.symbol}:USD"
            memo_total += by_code[memo_code].balance if memo_code in by_code else 0
        assert memo_total == 0, (
            f"{where}: the cost memos of {instrument.symbol} sum to {memo_total}"
        )
        if instrument.status == Instrument.Status.EXPIRED:
            assert not instrument.orders.filter(status__in=LIVE_STATUSES).exists(), where

    # Cash is conserved: deposits less payouts are the customers' cash and margin, less what
    # they owe, plus the exchange's fees; the fees are what the trades took.
    customers = 0
    for account in market.accounts:
        for code, ledger_account in by_code.items():
            if not code.startswith(f"trading:{account.pk}:"):
                continue
            if ledger_account.commodity.code != "USD":
                continue
            if ":deficit:" in code:
                assert ledger_account.balance >= 0, f"{where}: {code} is {ledger_account.balance}"
            if any(part in code for part in (":cash:", ":margin:", ":deficit:")):
                customers -= ledger_account.balance
    # Nothing trades on a halted instrument.
    for instrument_id, count in market.halted_trades.items():
        traded = Trade.objects.filter(instrument_id=instrument_id).count()
        assert traded == count, f"{where}: instrument {instrument_id} traded while halted"
    # An account that owes a deficit is under a margin call (reduce-only, no cash out), and
    # the orders it placed as reducing work only while the call is open: its cure cancels them.
    called = set(
        MarginCall.objects.filter(status=MarginCall.Status.OPEN).values_list(
            "account_id", flat=True
        )
    )
    for account in market.accounts:
        deficit_code = f"trading:{account.pk}:deficit:USD"
        if deficit_code in by_code and by_code[deficit_code].balance:
            assert account.pk in called, f"{where}: {account} owes a deficit with no margin call"
    reducing = Order.objects.filter(status__in=LIVE_STATUSES, reduce_only=True)
    for order in reducing.exclude(account_id__in=called):
        raise AssertionError(f"{where}: reducing order {order.pk} works with no margin call")
    # The pool's loans: what the pool lent is what its members borrowed.
    lent = sum(a.balance for code, a in by_code.items() if ":pool-lent:" in code)
    borrowed = sum(a.balance for code, a in by_code.items() if ":pool-borrowed:" in code)
    assert lent + borrowed == 0, f"{where}: lent {lent}, borrowed {-borrowed}"
    fees = -by_code["exchange:fees:USD"].balance if "exchange:fees:USD" in by_code else 0
    trade_fees = Trade.objects.aggregate(
        total=Sum("buyer_fee", default=0) + Sum("seller_fee", default=0)
    )["total"]
    assert fees == trade_fees, f"{where}: fees {fees}, the trades' {trade_fees}"
    assert customers + fees == market.deposited - market.paid_out, (
        f"{where}: customers {customers} + fees {fees} != deposited {market.deposited}"
        f" - paid out {market.paid_out}"
    )


def check_margin_at_settlement(market: Market, day, released: dict[int, int]) -> None:
    """Right after a day's run every account holds, per instrument, the margin the margin
    service computes for its positions at the day's prices (``margin.account_requirement``),
    as far as its cash went: an account short of it had no cash left then (all it has now is
    what the run's cancels released after), and unless it is under a margin call it holds at
    least the maintenance share of its requirement and owes nothing."""
    prices = dict(
        SettlementPrice.objects.filter(trading_date=day).values_list("instrument_id", "price")
    )
    instruments = list(
        Instrument.objects.filter(pk__in=[i.pk for i in market.instruments])
        .exclude(kind=Instrument.Kind.RESALE)
        .select_related("sku", "region", "underlying")
    )
    ratio = Decimal(settings.EXCHANGE_MAINTENANCE_RATIO)
    for account in market.accounts:
        codes = LedgerAccount.objects.filter(code__startswith=f"trading:{account.pk}:")
        balances = {row.code: row.balance for row in codes}
        positions = {
            instrument: balances.get(f"trading:{account.pk}:position:{instrument.symbol}", 0)
            for instrument in instruments
        }
        requirement = margin.account_requirement(positions, prices, day)
        held = {
            instrument.symbol: -balances.get(
                f"trading:{account.pk}:margin:{instrument.symbol}:USD", 0
            )
            for instrument in instruments
        }
        short = 0
        for symbol, amount in held.items():
            target = requirement.by_symbol.get(symbol, 0)
            assert amount <= target, (
                f"{day}: {account} holds {amount} margin on {symbol}, requires {target}"
            )
            short += target - amount
        cash = LedgerAccount.objects.get(code=cash_account_code(account))
        deficit = balances.get(f"trading:{account.pk}:deficit:USD", 0)
        if short or deficit:
            assert cash.available <= released.get(account.pk, 0), (
                f"{day}: {account} is {short} short of its margin and owes {deficit} with "
                f"{cash.available} cash available"
            )
        if not market._called(account):
            total = sum(held.values())
            assert total >= math.ceil(requirement.total * ratio) and not deficit, (
                f"{day}: {account} holds {total} of {requirement.total} owing {deficit}, "
                "with no margin call"
            )


@pytest.mark.parametrize("seed", SEEDS)
def test_money_invariants_hold_through_random_trading(
    seed, sku, region, futures, seller, listing, django_capture_on_commit_callbacks
):
    rng = random.Random(seed)
    market = Market(rng, sku, region, futures, seller, listing)
    check_invariants(market, "after setup")
    settle_at = sorted(rng.sample(range(20, STEPS), len(market.days)))
    for number in range(STEPS):
        # What the services leave to their commit runs as it would (a cured call's cancels of
        # its reducing orders, the reference caches forgotten): the test's transaction never
        # commits.
        if market.settled < len(market.days) and number == settle_at[market.settled]:
            with django_capture_on_commit_callbacks(execute=True):
                market.settle_next_day()
            check_invariants(market, f"seed {seed}, step {number}: settled a day")
        with django_capture_on_commit_callbacks(execute=True):
            market.step()
        check_invariants(market, f"seed {seed}, step {number}: {market.actions}")
    delivered = sum(
        expired["delivered"]
        for cycle in RiskCycle.objects.all()
        for expired in cycle.summary.get("futures_expired", [])
    )
    calls = Counter(MarginCall.objects.values_list("status", flat=True))
    print(
        f"seed {seed}: {dict(market.actions)} refused {dict(market.refusals)}; margin calls "
        f"{dict(calls)}, GPU-hours delivered {delivered}"
    )
    if os.environ.get("INVARIANT_DIAG"):
        for cycle in RiskCycle.objects.order_by("trading_date"):
            print("DIAG", cycle.trading_date, cycle.summary)
    # Every day settled: the options, the futures and the listing expired.
    assert market.settled == len(market.days)
    expired = Instrument.objects.filter(status=Instrument.Status.EXPIRED).values_list(
        "pk", flat=True
    )
    assert {
        *(o.pk for o in market.options),
        *(f.pk for f in market.futures),
        market.listing.pk,
    } <= set(expired)
    # The flow did what it is for: trades, and the order actions.
    assert Trade.objects.exists()
    assert {"limit", "marketable", "cancel", "replace"} <= set(market.actions), market.actions
