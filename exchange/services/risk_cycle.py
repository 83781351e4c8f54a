"""The daily risk cycle: variation margin, expiry and margin, posted into the ledger.

``daily_settlement_run(trading_date)`` settles one trading day, in one transaction, after
``settlement_prices_set`` has set its prices (it does so itself when they are missing):

1. **Option expiry** (options whose last trading day it is): an in-the-money option is
   exercised automatically, into the underlying future at the strike (physical, the listing's
   default) or into cash (``intrinsic x H`` per contract); out-of-the-money options lapse.
   Every position and cost memo of the option is closed and its writers' margin returned.
2. **Variation margin** on futures, one entry per account (key ``variation:<day>:<account>``):
   for each future, ``position x settlement x H - cost``, where the cost memo holds the value
   the position was last marked or traded at. For a position held since the previous
   settlement this is ``(settlement - previous settlement) x position x H``; contracts traded
   today are marked from their trade price; a position closed today pays out its realized
   profit or loss. The cost memo is then reset to ``position x settlement x H``, so the sum
   over accounts is zero: variation margin only moves cash between accounts. Options are
   premium-style (the premium is paid in full at the trade), so they have no variation margin.
3. **Futures expiry** (futures whose last trading day it is), after their final variation
   margin: cash-settled futures close; physically settled ones turn into GPU-hour entitlements
   of the delivery month, the long paying ``settlement x H`` per contract to the short. A
   party that cannot deliver (short of entitlements) or pay (short of cash) has those
   contracts cash-settled instead, as many on the other side in account order (see
   ``_deliver``), and pays the party paired with it ``EXCHANGE_DELIVERY_FAILURE_PENALTY`` of
   their final value (``_delivery_penalties``, entries ``delivery-penalty:<future>:<account>``).
   Before the day, the resting orders of resale listings that stopped trading are cancelled
   (``_closed_listings_cancel``), so their holds do not keep GPU-hours from it, and so are a
   short's sells holding GPU-hours it owes (``_delivery_offers_cancel``) and the orders holding
   the cash of a long that would not pay otherwise (``_delivery_payments_cancel``).
4. **Margin** (``exchange.services.margin``): each account's requirement at the day's prices;
   margin above it returns to cash, margin below it is taken from cash. An account that still
   holds less than ``EXCHANGE_MAINTENANCE_RATIO`` of it, or owes a deficit, gets a margin call:
   it may only reduce its positions until the call is cured (``margin_calls_review``) or staff
   liquidate it (``account_liquidate``).
5. Instruments past their last trading day expire, resale listings among them (the day
   before their block's term starts); their resting orders are cancelled, which releases the
   cash and GPU-hour entitlements they held.

A loss is paid from the account's available cash, then from its margin accounts, and what is
still missing is recorded as a deficit the account owes (``trading:<id>:deficit:USD``), so the
entries always balance and a winner is always paid.

Running it again for a settled day changes nothing. Every instrument row it settles or expires
(resale listings included) is locked (``FOR NO KEY UPDATE``, id order) for the transaction
and its ``risk_version`` bumped, so the matcher waits, and reloads the positions and margin
it keeps in memory afterwards. Before anything else, the run takes the day settlements' lock
(``settlement_prices.day_settlements_lock``, which setting and overriding prices take too), so
two runs at once settle one after the other and the second checks its day's order
(``RISK_DAY_OUT_OF_ORDER``) against the first's commit.
"""

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from exchange import recent
from exchange.backoffice.roles import RISK_STAFF
from exchange.errors import ExchangeError, RiskError, RiskErrorCode
from exchange.models import (
    LIVE_STATUSES,
    RESTING_STATUSES,
    Account,
    CancelReason,
    Instrument,
    MarginCall,
    Order,
    RiskCycle,
    Side,
)
from exchange.selectors.marks import mark_price
from exchange.selectors.risk import prices_missing
from exchange.services import margin, notices, settlement_prices
from exchange.services.audit import audit_record
from exchange.services.ledger_accounts import (
    MICROS_PER_USD,
    cash_account,
    cash_account_code,
    cost_account,
    cost_account_code,
    deficit_account,
    entitlement,
    entitlement_account,
    entitlement_account_code,
    entitlement_code,
    margin_account,
    margin_account_code,
    position_account,
)
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity, Hold
from ledger.services import ENTRIES_PER_BATCH_MAX, EntrySpec, entries_post

log = logging.getLogger(__name__)

Posting = tuple[LedgerAccount, int]

# How long the cycle waits for external matchers to cancel the orders that would keep GPU-hours
# from the day's futures deliveries (``_closed_listings_cancel``, ``_delivery_offers_cancel``).
DELIVERY_CANCELS_WAIT_SECONDS = 10.0


def _micros(price: Decimal, contracts: int, hours: int) -> int:
    value = price * contracts * hours * MICROS_PER_USD
    assert value == value.to_integral_value(), value
    return int(value)


@dataclass
class _Holder:
    """One trading account's figures in the ledger, kept current as the cycle posts."""

    account_id: int
    cash: LedgerAccount
    cash_available: int
    deficit: int = 0
    positions: dict[int, int] = field(default_factory=dict)  # Instrument id: contracts.
    costs: dict[int, int] = field(default_factory=dict)  # Instrument id: cost memo, micro-USD.
    margins: dict[int, int] = field(default_factory=dict)  # Instrument id: margin held.

    @property
    def stub(self) -> Account:
        return Account(pk=self.account_id)


class _Ledger:
    """The cycle's view of the accounts it settles, and the postings it builds."""

    def __init__(
        self,
        instruments: dict[int, Instrument],
        *,
        delivering: Sequence[Instrument] = (),
        called: Sequence[int] = (),
    ) -> None:
        """``delivering``: the physically settled futures the cycle delivers; their holders'
        GPU-hour accounts are locked with the cash accounts (``lock_holders``). ``called``:
        trading accounts settled even without positions, margin or cost memos (those under a
        margin call: a flat one may owe a deficit its cash now repays)."""
        self.instruments = instruments
        self.by_symbol = {instrument.symbol: instrument for instrument in instruments.values()}
        self.holders: dict[int, _Holder] = {}
        self.accounts: dict[tuple[int, str, int], LedgerAccount] = {}
        # Locked GPU-hour accounts, by (trading account id, entitlement commodity code).
        self.entitlements: dict[tuple[int, str], LedgerAccount] = {}
        self.specs: list[EntrySpec] = []
        self._load(delivering, called)

    def _load(self, delivering: Sequence[Instrument], called: Sequence[int]) -> None:
        symbols = list(self.by_symbol)
        rows = list(
            LedgerAccount.objects.filter(commodity__code__in=symbols)
            .filter(commodity__kind=Commodity.Kind.POSITION)
            .select_related("commodity")
        )
        cost_and_margin = list(
            LedgerAccount.objects.filter(code__startswith="trading:", commodity__code="USD")
            .filter(Q(code__contains=":cost:") | Q(code__contains=":margin:"))
            .exclude(debits_posted=F("credits_posted"))
        )
        figures: dict[int, dict[str, dict[int, int]]] = defaultdict(
            lambda: {"positions": {}, "costs": {}, "margins": {}}
        )
        for row in rows:
            account_id = int(row.code.split(":")[1])
            instrument = self.by_symbol[row.commodity.code]
            self.accounts[(account_id, "position", instrument.pk)] = row
            if row.balance:
                figures[account_id]["positions"][instrument.pk] = row.balance
        for row in cost_and_margin:
            _, account_id_text, kind, symbol, _usd = row.code.split(":")
            if symbol not in self.by_symbol:
                continue
            instrument = self.by_symbol[symbol]
            account_id = int(account_id_text)
            self.accounts[(account_id, kind, instrument.pk)] = row
            value = row.balance if kind == "cost" else -row.balance
            if value:
                figures[account_id]["costs" if kind == "cost" else "margins"][instrument.pk] = value
        for account_id in called:
            figures.setdefault(account_id, {"positions": {}, "costs": {}, "margins": {}})
        positions = {
            (account_id, future.pk): figures[account_id]["positions"].get(future.pk, 0)
            for future in delivering
            for account_id in figures
        }
        gpu_hours = _gpu_hour_accounts(delivering, positions)
        self.lock_holders(sorted(figures), gpu_hours)
        for account_id in sorted(figures):
            holder = self._holder(account_id)
            holder.positions = figures[account_id]["positions"]
            holder.costs = figures[account_id]["costs"]
            holder.margins = figures[account_id]["margins"]

    def lock_holders(self, account_ids: list[int], gpu_hours: Sequence[LedgerAccount] = ()) -> None:
        """Open and lock the cash accounts of these trading accounts, in one query in ledger id
        order (the order the ledger locks accounts in): their cash also moves outside the
        instruments locked here (deposits, orders on other books), and a lock taken in another
        order could deadlock with a matcher settling a trade between two of them.

        ``gpu_hours``: GPU-hour accounts the cycle will deliver from or to, locked in the same
        query. They move on resale books too (a resale trade's entry locks the seller's and the
        buyer's GPU-hours and cash in id order); locked after the cash, they deadlocked with
        such a trade between a holder of the future and one whose cash comes after them."""
        wanted = [account_id for account_id in account_ids if account_id not in self.holders]
        stubs = [Account(pk=account_id) for account_id in wanted]
        ids = [cash_account(stub).pk for stub in stubs]
        ids += [row.pk for row in gpu_hours]
        if not ids:
            return
        deficits = {stub.pk: deficit_account(stub) for stub in stubs}
        locked = {}
        for row in LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk"):
            _, account_id_text, kind, *rest = row.code.split(":")
            if kind == "gpuh":
                self.entitlements[(int(account_id_text), rest[0])] = row
            else:
                locked[int(account_id_text)] = row
        for account_id in wanted:
            cash = locked[account_id]
            deficit = deficits[account_id]
            self.holders[account_id] = _Holder(
                account_id, cash, cash.available, deficit=deficit.balance
            )
            self.accounts[(account_id, "deficit", 0)] = deficit

    def _holder(self, account_id: int) -> _Holder:
        self.lock_holders([account_id])
        return self.holders[account_id]

    def account(self, holder: _Holder, kind: str, instrument: Instrument) -> LedgerAccount:
        key = (holder.account_id, kind, instrument.pk)
        found = self.accounts.get(key)
        if found is None:
            opener = {"position": position_account, "cost": cost_account, "margin": margin_account}
            found = self.accounts[key] = opener[kind](holder.stub, instrument.symbol)
        return found

    # Cash moves ---------------------------------------------------------------------------

    def receive(self, holder: _Holder, amount: int, postings: list[Posting]) -> None:
        """Credit ``amount`` to the holder's cash (it may spend it at once)."""
        if amount:
            postings.append((holder.cash, -amount))
            holder.cash_available += amount

    def pay(self, holder: _Holder, amount: int, postings: list[Posting]) -> None:
        """Take ``amount`` from the holder: available cash, then margin, then a deficit."""
        from_cash = min(amount, max(holder.cash_available, 0))
        if from_cash:
            postings.append((holder.cash, from_cash))
            holder.cash_available -= from_cash
        rest = amount - from_cash
        for instrument_id in sorted(holder.margins):
            if not rest:
                break
            take = min(rest, holder.margins[instrument_id])
            if take:
                instrument = self.instruments[instrument_id]
                postings.append((self.account(holder, "margin", instrument), take))
                holder.margins[instrument_id] -= take
                rest -= take
        if rest:
            postings.append((self.accounts[(holder.account_id, "deficit", 0)], rest))
            holder.deficit += rest

    def release_margin(
        self, holder: _Holder, instrument: Instrument, postings: list[Posting]
    ) -> None:
        held = holder.margins.pop(instrument.pk, 0)
        if held:
            postings.append((self.account(holder, "margin", instrument), held))
            self.receive(holder, held, postings)

    def post(self, key: str, description: str, postings: list[Posting], **metadata: Any) -> None:
        merged: dict[int, list[Any]] = {}
        for account, amount in postings:
            entry = merged.setdefault(account.pk, [account, 0])
            entry[1] += amount
        cleaned = tuple((account, amount) for account, amount in merged.values() if amount)
        if cleaned:
            self.specs.append(EntrySpec(key, description, cleaned, (), False, metadata))

    def flush(self) -> None:
        specs = self.specs
        while specs:
            entries_post(specs[:ENTRIES_PER_BATCH_MAX])
            specs = specs[ENTRIES_PER_BATCH_MAX:]
        self.specs = []

    def holders_of(self, instrument: Instrument) -> list[_Holder]:
        return [
            holder
            for _, holder in sorted(self.holders.items())
            if holder.positions.get(instrument.pk) or holder.costs.get(instrument.pk)
        ]


# Steps ------------------------------------------------------------------------------------


def _close(
    ledger: _Ledger, holder: _Holder, instrument: Instrument, postings: list[Posting]
) -> None:
    """Close the holder's position and cost memo of ``instrument`` (balanced over holders)."""
    contracts = holder.positions.pop(instrument.pk, 0)
    cost = holder.costs.pop(instrument.pk, 0)
    if contracts:
        postings.append((ledger.account(holder, "position", instrument), -contracts))
    if cost:
        postings.append((ledger.account(holder, "cost", instrument), -cost))


def _expire_option(
    ledger: _Ledger, option: Instrument, prices: dict[int, Decimal], summary: dict[str, Any]
) -> None:
    assert option.underlying is not None and option.strike is not None
    if option.underlying_id not in prices:
        return  # Nobody holds it (``prices_missing``) and nothing prices it: nothing to settle.
    underlying = ledger.instruments[option.underlying_id]
    forward = prices[underlying.pk]
    call = option.option_type == Instrument.OptionType.CALL
    intrinsic = (
        max(forward - option.strike, Decimal(0))
        if call
        else max(option.strike - forward, Decimal(0))
    )
    exercised = intrinsic > 0
    postings: list[Posting] = []
    hours = option.gpu_hours_per_contract
    holders = ledger.holders_of(option)
    held = {holder.account_id: holder.positions.get(option.pk, 0) for holder in holders}
    physical = option.settlement == Instrument.Settlement.PHYSICAL
    for holder in holders:
        _close(ledger, holder, option, postings)
        ledger.release_margin(holder, option, postings)
    if exercised and physical:
        for holder in holders:
            futures = held[holder.account_id] * (1 if call else -1)
            if not futures:
                continue
            cost = _micros(option.strike, futures, hours)
            postings += [
                (ledger.account(holder, "position", underlying), futures),
                (ledger.account(holder, "cost", underlying), cost),
            ]
            holder.positions[underlying.pk] = holder.positions.get(underlying.pk, 0) + futures
            holder.costs[underlying.pk] = holder.costs.get(underlying.pk, 0) + cost
    elif exercised:
        # Cash exercise: each writer pays intrinsic x H per contract, each holder receives it
        # (what a writer cannot pay becomes its deficit, so holders are paid in full).
        for holder in holders:
            contracts = held[holder.account_id]
            if contracts < 0:
                ledger.pay(holder, _micros(intrinsic, -contracts, hours), postings)
            elif contracts > 0:
                ledger.receive(holder, _micros(intrinsic, contracts, hours), postings)
    ledger.post(
        f"option-expiry:{option.pk}",
        f"Expiry of {option.symbol}: {'exercised' if exercised else 'lapsed'} "
        f"(underlying {forward.normalize():f})",
        postings,
        instrument=option.symbol,
        underlying_price=str(forward),
        exercised=exercised,
        settlement=option.settlement,
    )
    summary["options_expired"].append(
        {"symbol": option.symbol, "exercised": exercised, "holders": len(holders)}
    )


def _variation_margin(
    ledger: _Ledger, trading_date: date, prices: dict[int, Decimal], summary: dict[str, Any]
) -> None:
    for account_id, holder in sorted(ledger.holders.items()):
        postings: list[Posting] = []
        detail = {}
        net = 0
        for instrument_id in sorted(set(holder.positions) | set(holder.costs)):
            instrument = ledger.instruments[instrument_id]
            if instrument.kind != Instrument.Kind.FUTURE:
                continue
            contracts = holder.positions.get(instrument_id, 0)
            cost = holder.costs.get(instrument_id, 0)
            value = _micros(prices[instrument_id], contracts, instrument.gpu_hours_per_contract)
            variation = value - cost
            if not variation:
                continue
            postings.append((ledger.account(holder, "cost", instrument), variation))
            holder.costs[instrument_id] = value
            if not value:
                holder.costs.pop(instrument_id)
            net += variation
            detail[instrument.symbol] = variation
        if not detail:
            continue
        if net > 0:
            ledger.receive(holder, net, postings)
        elif net < 0:
            ledger.pay(holder, -net, postings)
        ledger.post(
            f"variation:{trading_date.isoformat()}:{account_id}",
            f"Variation margin {trading_date.isoformat()}",
            postings,
            trading_date=trading_date.isoformat(),
            account=account_id,
            variation=detail,
        )
        summary["variation_entries"] += 1
        summary["variation_paid"] += sum(-v for v in detail.values() if v < 0)


def _expire_future(
    ledger: _Ledger, future: Instrument, prices: dict[int, Decimal], summary: dict[str, Any]
) -> None:
    if future.pk not in prices:
        return  # Nobody holds it (``prices_missing``) and nothing prices it: nothing to settle.
    price = prices[future.pk]
    hours = future.gpu_hours_per_contract
    holders = ledger.holders_of(future)
    postings: list[Posting] = []
    for holder in holders:
        ledger.release_margin(holder, future, postings)
    held = {holder.account_id: holder.positions.get(future.pk, 0) for holder in holders}
    delivered: dict[int, int] = {}
    able: dict[int, int] = {}
    if future.settlement == Instrument.Settlement.PHYSICAL:
        delivered, able = _deliver(ledger, future, price, holders, postings)
    for holder in holders:
        _close(ledger, holder, future, postings)
    ledger.post(
        f"future-expiry:{future.pk}",
        f"Final settlement of {future.symbol} at {price.normalize():f}",
        postings,
        instrument=future.symbol,
        price=str(price),
        settlement=future.settlement,
        delivered={str(k): v for k, v in delivered.items()},
    )
    if future.settlement == Instrument.Settlement.PHYSICAL:
        pairs = _fallback_pairs(held, able, delivered)
        _delivery_penalties(ledger, future, price, pairs, summary)
    summary["futures_expired"].append(
        {
            "symbol": future.symbol,
            "holders": len(holders),
            "delivered": sum(v for v in delivered.values() if v > 0) * hours,
        }
    )


def _deliver(
    ledger: _Ledger,
    future: Instrument,
    price: Decimal,
    holders: list[_Holder],
    postings: list[Posting],
) -> tuple[dict[int, int], dict[int, int]]:
    """Physical delivery: contracts delivered per account (long positive), and those each
    account was able to deliver or pay for (signed the same way)."""
    hours = future.gpu_hours_per_contract
    commodity = _delivered_commodity(future)
    per_contract = _micros(price, 1, hours)
    able: dict[int, int] = {}
    # The parties' entitlements also move on resale books: locked with the cash accounts
    # (``lock_holders``). A position the day's option exercise made (a run that catches up the
    # option's expiry too) was not known then: its account is locked here, after the rest.
    late = {
        (holder.account_id, future.pk): holder.positions.get(future.pk, 0)
        for holder in holders
        if (holder.account_id, commodity.code) not in ledger.entitlements
    }
    ids = [row.pk for row in _gpu_hour_accounts([future], late)]
    for row in LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk"):
        ledger.entitlements[(int(row.code.split(":")[1]), commodity.code)] = row
    entitlement_accounts = {
        account_id: row
        for (account_id, code), row in ledger.entitlements.items()
        if code == commodity.code
    }
    for holder in holders:
        contracts = holder.positions.get(future.pk, 0)
        if contracts > 0:
            payable = holder.cash_available // per_contract if per_contract else contracts
            able[holder.account_id] = min(contracts, max(payable, 0))
        elif contracts < 0:
            available = entitlement_accounts[holder.account_id].available
            able[holder.account_id] = -min(-contracts, max(available, 0) // hours)
    deliverable = min(
        sum(v for v in able.values() if v > 0), -sum(v for v in able.values() if v < 0)
    )
    delivered: dict[int, int] = {}
    for sign in (1, -1):
        left = deliverable
        for account_id in sorted(able):
            if able[account_id] * sign <= 0 or not left:
                continue
            take = min(abs(able[account_id]), left)
            delivered[account_id] = sign * take
            left -= take
    for holder in holders:
        contracts = delivered.get(holder.account_id, 0)
        if not contracts:
            continue
        # A long without GPU-hours of the month had no account: opened now, the cycle's alone.
        account = entitlement_accounts.get(holder.account_id) or entitlement_account(
            holder.stub, commodity
        )
        postings.append((account, contracts * hours))
        if contracts > 0:
            ledger.pay(holder, per_contract * contracts, postings)
        else:
            ledger.receive(holder, per_contract * -contracts, postings)
    return delivered, able


@dataclass(frozen=True)
class _FallbackPair:
    """``contracts`` cash-settled between a long and a short of an expiring physical future,
    and whether each side failed them itself (a long without the cash, a short without the
    GPU-hours) or was able and cash-settled for want of a counterpart."""

    long: int  # Trading account ids.
    short: int
    contracts: int
    long_failed: bool
    short_failed: bool


def _fallback_pairs(
    held: dict[int, int], able: dict[int, int], delivered: dict[int, int]
) -> list[_FallbackPair]:
    """Pair the contracts the delivery cash-settled, longs with shorts, in account order (the
    order the delivery itself allocates in): each side lists, account by account, first the
    contracts the account failed, then those it could have delivered or paid for but had no
    counterpart for. Pure; amounts as ``_deliver``'s (long positive)."""

    def units(sign: int) -> list[tuple[int, bool, int]]:
        found = []
        for account_id in sorted(held):
            contracts = held[account_id] * sign
            if contracts <= 0:
                continue
            could = able.get(account_id, 0) * sign
            settled = contracts - delivered.get(account_id, 0) * sign
            failed = contracts - could
            for is_failed, count in ((True, failed), (False, settled - failed)):
                if count > 0:
                    found.append((account_id, is_failed, count))
        return found

    longs, shorts = units(1), units(-1)
    pairs: list[_FallbackPair] = []
    # Open interest is balanced, so both lists hold as many contracts; the loop stops at the
    # shorter one all the same, and makes at most one pair per entry of either list.
    long_index = short_index = 0
    long_left = longs[0][2] if longs else 0
    short_left = shorts[0][2] if shorts else 0
    while long_index < len(longs) and short_index < len(shorts):
        take = min(long_left, short_left)
        pairs.append(
            _FallbackPair(
                longs[long_index][0],
                shorts[short_index][0],
                take,
                longs[long_index][1],
                shorts[short_index][1],
            )
        )
        long_left -= take
        short_left -= take
        if not long_left:
            long_index += 1
            long_left = longs[long_index][2] if long_index < len(longs) else 0
        if not short_left:
            short_index += 1
            short_left = shorts[short_index][2] if short_index < len(shorts) else 0
    return pairs


def _delivery_penalties(
    ledger: _Ledger,
    future: Instrument,
    price: Decimal,
    pairs: Sequence[_FallbackPair],
    summary: dict[str, Any],
) -> None:
    """The delivery failure penalty: a party whose contracts were cash-settled because it could
    not deliver (a short without the GPU-hours) or pay (a long without the cash) pays
    ``EXCHANGE_DELIVERY_FAILURE_PENALTY`` of their final settlement value (``price x H`` per
    contract, to the micro-dollar, half to even) to the party paired with it in the fallback
    (``_fallback_pairs``). One entry per failing account (``delivery-penalty:<future>:
    <account>``), after the expiry's, in the same transaction; it is paid as any loss is
    (``_Ledger.pay``: cash, then margin, then a deficit the margin step calls for), and the
    counterparts are paid in full. Where both sides of a pair failed, neither lost a trade the
    other would have made: the two penalties would be equal and cancel, so nothing moves."""
    rate = Decimal(settings.EXCHANGE_DELIVERY_FAILURE_PENALTY)
    if rate <= 0:
        return
    hours = future.gpu_hours_per_contract
    per_contract = _micros(price, 1, hours)
    owed: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for pair in pairs:
        if pair.long_failed == pair.short_failed:
            continue
        failing, paid = (pair.long, pair.short) if pair.long_failed else (pair.short, pair.long)
        owed[failing][paid] += pair.contracts
    for payer_id in sorted(owed):
        payer = ledger.holders[payer_id]
        short = any(pair.short == payer_id and pair.short_failed for pair in pairs)
        postings: list[Posting] = []
        paid_to = {}
        for payee_id, contracts in sorted(owed[payer_id].items()):
            amount = int((rate * per_contract * contracts).to_integral_value(ROUND_HALF_EVEN))
            ledger.receive(ledger.holders[payee_id], amount, postings)
            paid_to[str(payee_id)] = amount
        total = sum(paid_to.values())
        ledger.pay(payer, total, postings)
        contracts = sum(owed[payer_id].values())
        failed = "not delivered" if short else "not paid for"
        ledger.post(
            f"delivery-penalty:{future.pk}:{payer_id}",
            f"Delivery failure penalty on {future.symbol}: {contracts} contract(s) {failed}, "
            f"{rate.normalize():f} of {price.normalize():f} x {hours} GPU-hours each",
            postings,
            instrument=future.symbol,
            account=payer_id,
            side="short" if short else "long",
            contracts=contracts,
            rate=str(rate),
            price=str(price),
            paid_to=paid_to,
        )
        notices.delivery_failed(
            account_id=payer_id,
            symbol=future.symbol,
            key=f"delivery-penalty:{future.pk}:{payer_id}",
            contracts=contracts,
            short=short,
            amount=total,
            rate=rate,
            price=price,
        )
        summary.setdefault("delivery_penalties", []).append(
            {
                "symbol": future.symbol,
                "account": payer_id,
                "side": "short" if short else "long",
                "contracts": contracts,
                "amount": total,
            }
        )


def _gpu_hour_accounts(
    futures: Sequence[Instrument], positions: dict[tuple[int, int], int]
) -> list[LedgerAccount]:
    """The GPU-hour accounts a delivery of ``futures`` moves, for ``positions`` (contracts by
    trading account id and future id): each short's, opened if need be (the delivery reads
    what it holds), and each long's that exists (one the delivery opens is new to its
    transaction, so nobody else can hold it)."""
    found = []
    for future in futures:
        commodity = _delivered_commodity(future)
        held = {
            account_id: contracts
            for (account_id, future_id), contracts in positions.items()
            if future_id == future.pk
        }
        shorts = sorted(account_id for account_id, contracts in held.items() if contracts < 0)
        longs = sorted(account_id for account_id, contracts in held.items() if contracts > 0)
        found += [entitlement_account(Account(pk=account_id), commodity) for account_id in shorts]
        codes = [
            entitlement_account_code(Account(pk=account_id), commodity.code) for account_id in longs
        ]
        found += list(LedgerAccount.objects.filter(code__in=codes))
    return found


def _delivered_commodity(future: Instrument) -> Commodity:
    """The GPU-hours a physically settled future delivers: its SKU, region and month's."""
    return entitlement(future.sku.code, future.region.code, future.delivery_start)


def _rebalance(
    ledger: _Ledger,
    holder: _Holder,
    prices: dict[int, Decimal],
    on: date,
    key: str,
    description: str,
) -> tuple[margin.Requirement, int]:
    """Set the holder's margin to its requirement as far as cash allows; returns the
    requirement and the margin held afterwards."""
    positions = {
        ledger.instruments[instrument_id]: contracts
        for instrument_id, contracts in holder.positions.items()
        if contracts
    }
    requirement = margin.account_requirement(positions, prices, on)
    postings: list[Posting] = []
    targets = {ledger.instruments[i].symbol: 0 for i in holder.margins}
    targets.update(requirement.by_symbol)
    # Releases first: they fund the repayment of a deficit and the top-ups.
    for symbol in sorted(targets):
        instrument = ledger.by_symbol[symbol]
        held = holder.margins.get(instrument.pk, 0)
        if held > targets[symbol]:
            excess = held - targets[symbol]
            postings.append((ledger.account(holder, "margin", instrument), excess))
            holder.margins[instrument.pk] = held - excess
            ledger.receive(holder, excess, postings)
    if holder.deficit and holder.cash_available > 0:
        repay = min(holder.deficit, holder.cash_available)
        postings += [
            (holder.cash, repay),
            (ledger.accounts[(holder.account_id, "deficit", 0)], -repay),
        ]
        holder.cash_available -= repay
        holder.deficit -= repay
    for symbol in sorted(targets):
        instrument = ledger.by_symbol[symbol]
        held = holder.margins.get(instrument.pk, 0)
        short = targets[symbol] - held
        take = min(short, max(holder.cash_available, 0))
        if take > 0:
            postings += [(holder.cash, take), (ledger.account(holder, "margin", instrument), -take)]
            holder.cash_available -= take
            holder.margins[instrument.pk] = held + take
    ledger.post(key, description, postings, required=requirement.total)
    return requirement, sum(holder.margins.values())


def _margin_step(
    ledger: _Ledger,
    trading_date: date,
    prices: dict[int, Decimal],
    calls: dict[int, MarginCall],
    summary: dict[str, Any],
) -> None:
    """``calls``: the open margin calls by account, locked."""
    ratio = Decimal(settings.EXCHANGE_MAINTENANCE_RATIO)
    for account_id, holder in sorted(ledger.holders.items()):
        requirement, held = _rebalance(
            ledger,
            holder,
            prices,
            trading_date,
            f"margin:{trading_date.isoformat()}:{account_id}",
            f"Initial margin at the settlement of {trading_date.isoformat()}",
        )
        maintenance = math.ceil(requirement.total * ratio)
        call = calls.get(account_id)
        figures = {
            "required": requirement.total,
            "maintenance": maintenance,
            "held": held,
            "deficit": holder.deficit,
        }
        if call is None:
            if held < maintenance or holder.deficit:
                call = MarginCall(account_id=account_id, trading_date=trading_date, **figures)
                call.amount_called = call.amount
                call.save()
                notices.margin_call_made(call)
                summary["margin_calls"].append(account_id)
            continue
        # Open: cured by the whole requirement, owing nothing; else its figures follow the
        # account (above maintenance too: until 2026-12-07 those kept the day that made the
        # call, asking for more than was due), and the call keeps its day.
        now = timezone.now()
        if held >= requirement.total and not holder.deficit:
            MarginCall.objects.filter(pk=call.pk).update(
                status=MarginCall.Status.CURED, resolved_at=now, figured_at=now, **figures
            )
            call.required = figures["required"]
            notices.margin_call_cured(call)
            summary["margin_calls_cured"].append(account_id)
            _reducing_orders_cancel_on_commit(call)
        else:
            MarginCall.objects.filter(pk=call.pk).update(figured_at=now, **figures)


# The cycle --------------------------------------------------------------------------------


def instruments_lock(ids: list[int]) -> dict[int, Instrument]:
    """Lock the rows (id order, as the matcher takes them one at a time) and bump the risk
    version so each matcher reloads the margin and positions it keeps in memory."""
    locked = {
        instrument.pk: instrument
        for instrument in Instrument.objects.select_for_update(no_key=True)
        .filter(pk__in=ids)
        .select_related("sku", "region")
        .order_by("pk")
    }
    Instrument.objects.filter(pk__in=ids).update(risk_version=F("risk_version") + 1)
    # What the cycle changes next (risk versions, expiries, margin calls) is written with
    # update(), which sends no signal: forget what this process keeps, now and at the commit.
    recent.changed()
    return locked


def _instruments_with_exposure() -> list[int]:
    """Futures and options that any account holds, or that still trade."""
    symbols = set(
        LedgerAccount.objects.filter(commodity__kind=Commodity.Kind.POSITION)
        .exclude(debits_posted=F("credits_posted"))
        .values_list("commodity__code", flat=True)
    )
    held = Instrument.objects.filter(symbol__in=symbols).values_list("pk", flat=True)
    live = Instrument.objects.filter(
        kind__in=[Instrument.Kind.FUTURE, Instrument.Kind.OPTION]
    ).exclude(status=Instrument.Status.EXPIRED)
    ids = set(held) | set(live.values_list("pk", flat=True))
    # An option's underlying is always needed to value it.
    ids |= set(
        Instrument.objects.filter(pk__in=ids, underlying__isnull=False).values_list(
            "underlying_id", flat=True
        )
    )
    return sorted(ids)


def _resale_expiring(trading_date: date) -> list[int]:
    """Resale listings whose last trading day is ``trading_date`` or before, not yet expired."""
    return list(
        Instrument.objects.filter(kind=Instrument.Kind.RESALE, last_trading_day__lte=trading_date)
        .exclude(status=Instrument.Status.EXPIRED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def daily_settlement_run(
    *,
    trading_date: date,
    actor: User | None = None,
    close: Any = None,
    refuse_settled: bool = False,
) -> RiskCycle:
    """Settle ``trading_date`` (see the module docstring); idempotent. A day still to come
    (``RISK_DAY_IN_FUTURE``) or still before its close (``RISK_DAY_NOT_CLOSED``) is refused by
    ``settlement_prices_set``, before anything is written.

    ``refuse_settled``: a day already settled is ``RISK_DAY_SETTLED`` (saying when and by whom)
    rather than returned as it is: for staff confirming a day, who must not read another's
    settlement as their own. The schedule and ``settle_day`` keep the idempotent answer.

    First, a pool's round still buying a future whose trading has ended (by the cycle's clock)
    closes and allocates its fills to the members (``pools.pool_rounds_close_expired``), so
    that they, not the pool, hold the contracts the final settlement settles: until
    2026-12-07 the round allocated after it, found the pool's position settled, and left every
    lot unfunded. That close is the round's, in its own transactions, whatever becomes of the
    day; its failure is logged and does not stop the day."""
    RISK_STAFF.check(actor, "settle trading days")
    _pool_rounds_close(trading_date)
    _closed_listings_cancel(trading_date)
    _delivery_offers_cancel(trading_date)
    _delivery_payments_cancel(trading_date)
    cycle = _day_settle(trading_date, actor, close, refuse_settled)
    # Also when the day was settled before: a run stopped between its commit and these
    # cancels is completed by running the day again (see _cancel_resting).
    _cancel_resting()
    return cycle


def _pool_rounds_close(trading_date: date) -> None:
    # Imported here: the pools' services lock instruments with this module's instruments_lock.
    from exchange.services.pools import pool_rounds_close_expired

    try:
        # The futures the day expires (last trading day through it), whatever the close.
        pool_rounds_close_expired(now=settlement_prices.now(), expiring_through=trading_date)
    except Exception:
        log.exception("risk cycle: pool rounds on expiring futures did not close")


def _closed_listings_cancel(trading_date: date) -> None:
    """Cancel the resting orders of resale listings whose last trading day is ``trading_date``
    or before, once they have stopped trading (by the cycle's clock), before the day's
    settlement, so the GPU-hours their sells held are free for the physical
    delivery of a future: a block's listing made before its term stops trading on the day
    before the term, which is also the last trading day of the future on the term's first month
    whenever that day is a business day. Its sells can no longer trade, yet until 2026-12-07
    their holds were released only after the run, and the delivery, which reads what the short
    has available, cash-settled the provider's futures while it kept the GPU-hours.

    With external matchers the cancels are waited for (``DELIVERY_CANCELS_WAIT_SECONDS``);
    a cancel still unprocessed then leaves its hold to the delivery as before. A failure here is
    logged and does not stop the day (``_cancel_resting`` asks again after it)."""
    from exchange.services.orders import orders_cancel

    now = settlement_prices.now()
    try:
        closed = [
            listing.pk
            for listing in Instrument.objects.filter(
                kind=Instrument.Kind.RESALE, last_trading_day__lte=trading_date
            ).exclude(status=Instrument.Status.EXPIRED)
            if listing.trading_ends_at <= now
        ]
        orders_cancel(
            orders=Order.objects.filter(
                instrument_id__in=closed, status__in=RESTING_STATUSES
            ).order_by("pk"),
            reason=CancelReason.INSTRUMENT_EXPIRED,
            wait_seconds=DELIVERY_CANCELS_WAIT_SECONDS,
        )
    except Exception:
        log.exception("risk cycle: orders on closed resale listings were not cancelled")


def _delivery_offers_cancel(trading_date: date) -> None:
    """Before the day's settlement, cancel the live orders holding GPU-hours that a short of a
    physically settled future expiring that day (stopped trading by the cycle's clock) owes
    for its delivery and lacks available: its sells on resale listings of the delivery month.

    A short future holds cash margin, not GPU-hours; the delivery takes what the short has
    available. Until 2026-12-07 an offer of those hours on a block's listing (still trading:
    a block starting after the first of the month trades past the future's last day) kept
    them back, so the futures were cash-settled and the provider kept the hours it had sold
    forward, free to cancel the offer afterwards: a way out of every delivery. The delivery
    comes first; every such order of the short is cancelled (``done_reason``
    ``futures_delivery``), as an offer of hours it has sold already. Hours sold and delivered
    on a listing are gone: those contracts are cash-settled, with the penalty
    (``_delivery_penalties``). With external
    matchers the cancels are waited for as ``_closed_listings_cancel``'s; a failure is logged
    and does not stop the day."""

    try:
        futures = _deliveries_due(trading_date)
        lacking: list[int] = []  # GPU-hour ledger accounts of shorts owing more than they have.
        for future in futures:
            commodity_code = entitlement_code(
                future.sku.code, future.region.code, future.delivery_start
            )
            shorts = LedgerAccount.objects.filter(
                commodity__code=future.symbol,
                commodity__kind=Commodity.Kind.POSITION,
                credits_posted__gt=F("debits_posted"),
            )
            for position in shorts:
                owed = -position.balance * future.gpu_hours_per_contract
                code = entitlement_account_code(
                    Account(pk=int(position.code.split(":")[1])), commodity_code
                )
                held = LedgerAccount.objects.filter(code=code).first()
                if held is not None and held.available < owed:
                    lacking.append(held.pk)
        _orders_holding_cancel(lacking, CancelReason.FUTURES_DELIVERY, side=Side.SELL)
    except Exception:
        log.exception("risk cycle: offers of GPU-hours owed for delivery were not cancelled")


def _delivery_payments_cancel(trading_date: date) -> None:
    """Before the day's settlement, cancel the live orders holding the cash of a long of a
    physically settled future expiring that day (stopped trading by the cycle's clock) whose
    available cash would not pay for its delivery: every order with a pending hold on its
    cash (buys, and the margin of futures sells and option writes), ``done_reason``
    ``delivery_payment``. The mirror of ``_delivery_offers_cancel`` for the long's side.

    The delivery reads the long's available cash, so until 2026-12-07 the holds of its own
    resting orders came first: its futures were cash-settled, the provider lost the sale, and
    the long could cancel its bids afterwards. What the delivery will need of the long's cash
    is known before the price: the final variation margin pays ``value - cost memo`` and the
    delivery takes ``value`` (the position at the final price), while the expiry releases the
    future's margin into cash; so the long pays the cost memo net, and it is short when its
    available cash plus that margin is less, summed over the day's futures it is long. A long
    whose cash covers it keeps its orders. Other futures' variation margin that day may still
    leave it short: its contracts are then cash-settled with the penalty
    (``_delivery_penalties``). The cancels are waited for and a failure logged as
    ``_delivery_offers_cancel``'s."""

    try:
        needs: dict[int, int] = defaultdict(int)  # Trading account id: cash short, micro-USD.
        for future in _deliveries_due(trading_date):
            longs = LedgerAccount.objects.filter(
                commodity__code=future.symbol,
                commodity__kind=Commodity.Kind.POSITION,
                debits_posted__gt=F("credits_posted"),
            )
            for position in longs:
                stub = Account(pk=int(position.code.split(":")[1]))
                figures = {
                    row.code: row.balance
                    for row in LedgerAccount.objects.filter(
                        code__in=[
                            cost_account_code(stub, future.symbol),
                            margin_account_code(stub, future.symbol),
                        ]
                    )
                }
                cost = figures.get(cost_account_code(stub, future.symbol), 0)
                margin_held = -figures.get(margin_account_code(stub, future.symbol), 0)
                needs[stub.pk] += cost - margin_held
        short_of_cash: list[int] = []  # Cash ledger accounts that would not pay the delivery.
        for account_id, need in sorted(needs.items()):
            cash = LedgerAccount.objects.filter(code=cash_account_code(Account(pk=account_id)))
            row = cash.first()
            if row is not None and row.available < need:
                short_of_cash.append(row.pk)
        _orders_holding_cancel(short_of_cash, CancelReason.DELIVERY_PAYMENT)
    except Exception:
        log.exception("risk cycle: orders holding cash owed for delivery were not cancelled")


def _orders_holding_cancel(
    ledger_account_ids: list[int], reason: str, *, side: str | None = None
) -> None:
    """Cancel the live orders (of ``side``, or either) with a pending hold on one of the
    ledger accounts, waiting for external matchers (``DELIVERY_CANCELS_WAIT_SECONDS``): what
    a delivery needs of them comes before the orders."""
    from exchange.services.orders import orders_cancel

    orders = Order.objects.filter(
        status__in=LIVE_STATUSES,
        holds__hold__account_id__in=ledger_account_ids,
        holds__hold__status=Hold.Status.PENDING,
    )
    if side is not None:
        orders = orders.filter(side=side)
    orders_cancel(
        orders=orders.distinct().order_by("pk"),
        reason=reason,
        wait_seconds=DELIVERY_CANCELS_WAIT_SECONDS,
    )


def _deliveries_due(trading_date: date) -> list[Instrument]:
    """The physically settled futures the day delivers that have stopped trading (by the
    cycle's clock): those whose last trading day is ``trading_date`` or before, not expired."""
    now = settlement_prices.now()
    return [
        future
        for future in Instrument.objects.filter(
            kind=Instrument.Kind.FUTURE,
            settlement=Instrument.Settlement.PHYSICAL,
            last_trading_day__lte=trading_date,
        )
        .exclude(status=Instrument.Status.EXPIRED)
        .select_related("sku", "region")
        .order_by("pk")
        if future.trading_ends_at <= now
    ]


def _day_settle(
    trading_date: date, actor: User | None, close: Any, refuse_settled: bool
) -> RiskCycle:
    with transaction.atomic():
        settlement_prices.day_settlements_lock()
        cycle = settlement_prices.settlement_prices_set(
            trading_date=trading_date, close=close, actor=actor
        )
        cycle = RiskCycle.objects.select_for_update().get(pk=cycle.pk)
        if cycle.status == RiskCycle.Status.SETTLED:
            if refuse_settled:
                raise _already_settled(cycle)
            return cycle
        status_before = cycle.status
        # The resale listings that expire today are locked with the books the cycle settles,
        # in one id order, as a matcher's pass locks its books: their status changes below,
        # after the cycle has locked customers' cash, which a matcher's pass on a listing
        # (a cancel after its close) moves while it holds the listing's row.
        resale_due = _resale_expiring(trading_date)
        locked = instruments_lock(sorted(set(_instruments_with_exposure()) | set(resale_due)))
        # An instrument listed after the day's close is not the day's (it has no price for
        # it): what is held of it traded after the close, and the next day settles it. Until
        # 2026-12-07 its holdings stopped the day (RISK_SETTLEMENT_PRICE_MISSING), as on the
        # day a new exchange, or the demo, lists its market after the close.
        instruments = {
            pk: instrument
            for pk, instrument in locked.items()
            if instrument.settled_by(cycle.close_at)
        }
        # The open margin calls next, before the ledger's accounts, as a review and a
        # liquidation take them (the books, the call, then the ledger): a review of an account
        # whose books it does not lock (flat since its last settlement, a loss still in its
        # cost memo) held its call and waited for its cash, which the cycle held while it
        # waited to update that call, until 2026-12-07 (a deadlock).
        calls = {
            call.account_id: call
            for call in MarginCall.objects.select_for_update()
            .filter(status=MarginCall.Status.OPEN)
            .order_by("pk")
        }
        prices = settlement_prices.day_prices(trading_date)
        expiring = [i for i in instruments.values() if i.last_trading_day <= trading_date]
        delivering = [
            future
            for future in expiring
            if future.kind == Instrument.Kind.FUTURE
            and future.settlement == Instrument.Settlement.PHYSICAL
            and future.status != Instrument.Status.EXPIRED
        ]
        # Accounts under a margin call are settled even when flat: the margin step repays a
        # deficit from the cash they have since received and cures or refigures their call.
        # Until 2026-12-07 only accounts with positions, margin or cost memos were: a flat
        # one kept owing beside its cash, its call open on stale figures, until a review.
        called = MarginCall.objects.filter(status=MarginCall.Status.OPEN).values_list(
            "account_id", flat=True
        )
        ledger = _Ledger(instruments, delivering=delivering, called=sorted(called))
        _check_prices(trading_date, cycle.close_at)
        summary: dict[str, Any] = {
            "options_expired": [],
            "variation_entries": 0,
            "variation_paid": 0,
            "futures_expired": [],
            "margin_calls": [],
            "margin_calls_cured": [],
        }
        for option in expiring:
            if option.kind == Instrument.Kind.OPTION and option.status != Instrument.Status.EXPIRED:
                _expire_option(ledger, option, prices, summary)
        _variation_margin(ledger, trading_date, prices, summary)
        for future in expiring:
            if future.kind == Instrument.Kind.FUTURE and future.status != Instrument.Status.EXPIRED:
                _expire_future(ledger, future, prices, summary)
        _margin_step(ledger, trading_date, prices, calls, summary)
        ledger.flush()
        expired_ids = [i.pk for i in expiring if i.status != Instrument.Status.EXPIRED]
        # Resale listings stop trading the day before their block's term starts; nobody holds
        # a position in them (a trade settles at once), so they only expire.
        resale_expired = [(pk, locked[pk].symbol) for pk in resale_due]
        summary["resale_expired"] = [symbol for _, symbol in resale_expired]
        expired_ids += [pk for pk, _ in resale_expired]
        Instrument.objects.filter(pk__in=expired_ids).update(status=Instrument.Status.EXPIRED)
        summary["instruments_expired"] = len(expired_ids)
        cycle.status = RiskCycle.Status.SETTLED
        cycle.settled_at = timezone.now()
        cycle.settled_by = actor if actor is not None and actor.is_authenticated else None
        cycle.summary = summary
        cycle.save()
        audit_record(
            actor=actor,
            action="risk.daily_settlement",
            target=cycle,
            before={"status": status_before},
            after={
                "trading_date": trading_date.isoformat(),
                "status": cycle.status,
                **_summary_counts(summary),
            },
        )
    return cycle


def _already_settled(cycle: RiskCycle) -> RiskError:
    by = "the schedule or settle_day"
    if cycle.settled_by is not None:
        by = cycle.settled_by.get_username()
    when = f" at {cycle.settled_at:%Y-%m-%d %H:%M} UTC" if cycle.settled_at else ""
    return RiskError(
        RiskErrorCode.DAY_SETTLED,
        f"{cycle.trading_date} was already settled{when} by {by}: nothing was done.",
        "trading_date",
    )


def _summary_counts(summary: dict[str, Any]) -> dict[str, int]:
    return {key: len(value) if isinstance(value, list) else value for key, value in summary.items()}


def _check_prices(trading_date: date, close: datetime) -> None:
    """Refuse the day while an instrument some account holds has no price for it: the rule the
    run page's preview shows (``selectors.risk.prices_missing``)."""
    missing = prices_missing(trading_date, close)
    if missing:
        # An instrument held past its last trading day missed its final settlement: that day
        # comes first (its final price is not made up from a later day's market).
        late = sorted({i.last_trading_day for i in missing if i.last_trading_day < trading_date})
        first = (
            f" Settle {late[0]} first (its expiries), or set a price by override." if late else ""
        )
        raise RiskError(
            RiskErrorCode.PRICE_MISSING,
            f"No settlement price on {trading_date}: {', '.join(i.symbol for i in missing)}."
            + (first or " Set one by override."),
            "instrument",
        )


def _cancel_resting() -> None:
    """Cancel what rests on expired instruments (their holds are released by the matcher): on
    those the run expired, and on any an earlier run expired. The cancels are asked for after
    the run commits (they commit on their own), so a run stopped in between (a crash, a lost
    connection) left its instruments' orders resting, their collateral held on books that no
    longer trade, and until 2026-12-07 nothing asked for those cancels again."""
    from exchange.services.orders import orders_cancel

    orders_cancel(
        orders=Order.objects.filter(
            instrument__status=Instrument.Status.EXPIRED, status__in=RESTING_STATUSES
        ).order_by("pk"),
        reason=CancelReason.INSTRUMENT_EXPIRED,
    )


# Margin calls -----------------------------------------------------------------------------


def _account_instruments(account_id: int) -> list[int]:
    symbols = set(
        LedgerAccount.objects.filter(
            owner=f"exchange.account:{account_id}", commodity__kind=Commodity.Kind.POSITION
        )
        .exclude(debits_posted=F("credits_posted"))
        .values_list("commodity__code", flat=True)
    )
    margins = LedgerAccount.objects.filter(
        code__startswith=f"trading:{account_id}:margin:"
    ).exclude(debits_posted=F("credits_posted"))
    symbols |= {row.code.split(":")[3] for row in margins}
    ids = set(Instrument.objects.filter(symbol__in=symbols).values_list("pk", flat=True))
    ids |= set(
        Instrument.objects.filter(pk__in=ids, underlying__isnull=False).values_list(
            "underlying_id", flat=True
        )
    )
    return sorted(ids)


def _latest_prices(instrument_ids: list[int]) -> dict[int, Decimal]:
    prices = {
        instrument_id: row.price
        for instrument_id, row in margin.latest_settlements(instrument_ids).items()
    }
    for instrument in Instrument.objects.filter(pk__in=instrument_ids).exclude(pk__in=prices):
        reference = mark_price(instrument)
        if reference is not None:
            prices[instrument.pk] = reference
    return prices


# What a review's audit row records of the call, before and after (money in micro-USD).
MARGIN_CALL_REVIEWED_FIELDS = ("status", "required", "held", "deficit", "reviews")


def _margin_call_figures(call: MarginCall) -> dict[str, Any]:
    return {name: getattr(call, name) for name in MARGIN_CALL_REVIEWED_FIELDS}


def margin_call_review(call: MarginCall, *, actor: User | None = None) -> MarginCall:
    """Top the account's margin up from its cash at the latest settlement prices; the call is
    cured once the account holds its whole requirement and owes nothing.

    A review that changes the call writes its audit row (``margin_call.review``, the call's
    figures before and after) in the transaction of the change: ``actor`` the staff member
    who asked for it, None the system (the scheduled review, ``review_margin_calls``). Until
    2026-12-07 only a staff review was audited, and a call the schedule cured was missing
    from the audit log. A review that changes nothing writes nothing, no row either."""
    if not MarginCall.objects.filter(pk=call.pk, status=MarginCall.Status.OPEN).exists():
        return MarginCall.objects.get(pk=call.pk)
    with transaction.atomic():
        # The books before the call, as the daily cycle takes them: it locks the books, then
        # updates each open call. A review that held its call while waiting for the books
        # deadlocked with a cycle holding them, and one of the two failed.
        instruments = instruments_lock(_account_instruments(call.account_id))
        call = MarginCall.objects.select_for_update().get(pk=call.pk)
        if call.status != MarginCall.Status.OPEN:
            return call
        before = _margin_call_figures(call)
        ledger = _Ledger(instruments)
        holder = ledger._holder(call.account_id)
        prices = _latest_prices(list(instruments))
        requirement, held = _rebalance(
            ledger,
            holder,
            prices,
            timezone.now().date(),
            f"margin-call:{call.pk}:{call.reviews + 1}",
            f"Margin call #{call.pk}: top-up",
        )
        figures = (requirement.total, held, holder.deficit)
        cured = held >= requirement.total and not holder.deficit
        if not ledger.specs and figures == (call.required, call.held, call.deficit) and not cured:
            return call  # Nothing moved: a review that changes nothing writes nothing.
        if ledger.specs:
            call.reviews += 1  # Counts the top-ups posted (and keys the next one).
        ledger.flush()
        call.required, call.held, call.deficit = figures
        call.figured_at = timezone.now()
        if cured:
            call.status = MarginCall.Status.CURED
            call.resolved_at = call.figured_at
            _reducing_orders_cancel_on_commit(call)
            notices.margin_call_cured(call)
        call.save()
        # Past the early return, the review changed the call: a top-up counted in
        # ``reviews``, new figures, or the cure.
        audit_record(
            actor=actor,
            action="margin_call.review",
            target=call,
            before=before,
            after=_margin_call_figures(call),
        )
    return call


def _reducing_orders_cancel_on_commit(call: MarginCall) -> None:
    """Once the cure commits, cancel the account's reducing orders: those it placed while the
    call (or an earlier one) was open.

    Those orders were accepted as reducing its positions (``orders._check_reduce_only``), so
    they hold no margin and pay no fee. Once the call is cured the account trades as before;
    left live, such an order could open a position with no margin, after what it was to close
    had gone another way (an ordinary order placed after the cure, a pool's take-back).
    After the commit, as order services commit on their own; a failure there is logged and
    leaves the cure committed."""

    def cancel() -> None:
        from exchange.services.orders import orders_cancel

        orders_cancel(
            orders=Order.objects.filter(
                account_id=call.account_id,
                status__in=LIVE_STATUSES,
                # Reducing only: a sell of resale capacity under a call is an ordinary order.
                # Any call's: one an earlier cure's cancel missed (its failure is only logged)
                # kept working without margin or fee until 2026-12-07, when only this call's
                # were cancelled.
                reduce_only=True,
            ).order_by("pk"),
            reason=CancelReason.MARGIN_CALL_CURED,
        )

    transaction.on_commit(cancel, robust=True)


def margin_calls_review() -> int:
    """Review every open call (beat task); returns how many were cured.

    A review that fails (a deadlock, a call a liquidation ended meanwhile) is rolled back,
    logged with its traceback and left to the next run (every 5 minutes): the calls after it
    are still reviewed. Until 2026-12-07 the first failure ended the run, so one call that
    could not be reviewed kept every later one from being cured."""
    cured = 0
    for call in MarginCall.objects.filter(status=MarginCall.Status.OPEN).order_by("pk"):
        try:
            reviewed = margin_call_review(call)
        except Exception:
            log.exception("margin call #%s: review failed, left to the next run", call.pk)
            continue
        if reviewed.status == MarginCall.Status.CURED:
            cured += 1
    return cured


def open_margin_call(account: Account) -> MarginCall | None:
    return MarginCall.objects.filter(account=account, status=MarginCall.Status.OPEN).first()


def _call_to_liquidate(account: Account, call: MarginCall | None, *, lock: bool) -> None:
    """Refuse (``RISK_NO_OPEN_MARGIN_CALL``) unless the account is under an open margin call
    (``call`` itself, when given): a call cured or liquidated meanwhile ends the liquidation."""
    calls = MarginCall.objects.filter(account=account, status=MarginCall.Status.OPEN)
    if call is not None:
        calls = calls.filter(pk=call.pk)
    if lock:
        calls = calls.select_for_update()
    if calls.first() is None:
        what = f"Margin call #{call.pk}" if call is not None else "The account's margin call"
        raise RiskError(
            RiskErrorCode.NO_OPEN_MARGIN_CALL,
            f"{what} is not open (cured or liquidated already): nothing was liquidated.",
        )


def account_liquidate(
    *, account: Account, actor: User | None, reason: str = "", call: MarginCall | None = None
) -> dict[str, Any]:
    """Staff close the futures and options positions of an account under a margin call at the
    market (``call``, when given, must be the account's and still open; else it must have an
    open call: ``RISK_NO_OPEN_MARGIN_CALL``, nothing written).

    Its live orders are cancelled and its margin returned to cash to pay for closing (a short
    option is bought back with it), in one transaction under the books' and the call's locks,
    after checking the call there; then one market IOC order per position, reducing only,
    without fees. What the book cannot absorb stays open, and the margin call with it.

    The audit row (``account.liquidate``: the positions, the orders cancelled and the closing
    orders to place) is written first in that transaction: it commits with the cancels and the
    margin's release or not at all, and precedes every order the liquidation writes, so a
    failure after the commit (a closing order's) leaves what was done explained. Until
    2026-12-07 it was written last, on its own: a failure before it left the cancels, the
    margin released and the closing orders without it, and the timeline showed the orders
    before the row that explains them. What the closing orders did is theirs to say (and the
    answer's, ``{"orders": [...]}``).
    """
    from exchange.services import orders

    RISK_STAFF.check(actor, "liquidate accounts")
    if not reason.strip():
        raise RiskError(
            RiskErrorCode.REASON_REQUIRED, "Give a reason for the liquidation.", "reason"
        )
    assert call is None or call.account_id == account.pk, "the call is the account's"
    orders.require_own_transaction()
    # A call cured (or liquidated) since staff chose it writes nothing at all.
    _call_to_liquidate(account, call, lock=False)
    with transaction.atomic():
        instruments = instruments_lock(_account_instruments(account.pk))
        # Again under the locks, the books then the call, as a review takes them, and before
        # anything is done: the cancels are queued in this transaction, so a cure that came
        # since the check above leaves the account's orders working, and one that comes later
        # waits for this commit. (Until 2026-12-07 the cancels committed on their own before
        # this check, and a cure in between left the cured account with its orders cancelled.)
        _call_to_liquidate(account, call, lock=True)
        ledger = _Ledger(instruments)
        holder = ledger._holder(account.pk)
        positions = {
            instruments[i]: contracts for i, contracts in holder.positions.items() if contracts
        }
        live = list(Order.objects.filter(account=account, status__in=LIVE_STATUSES).order_by("pk"))
        audit_record(
            actor=actor,
            action="account.liquidate",
            target=account,
            before={"positions": {i.symbol: contracts for i, contracts in positions.items()}},
            after={
                "cancelled": [order.pk for order in live],
                "closing": [
                    {
                        "symbol": i.symbol,
                        "side": _closing_side(contracts),
                        "quantity": abs(contracts),
                    }
                    for i, contracts in sorted(positions.items(), key=lambda item: item[0].symbol)
                ],
            },
            reason=reason,
        )
        cancels = orders.cancel_commands_insert(
            orders=live, reason=CancelReason.LIQUIDATION, requested_by=actor
        )
        postings: list[Posting] = []
        for instrument_id in sorted(list(holder.margins)):
            ledger.release_margin(holder, instruments[instrument_id], postings)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
        ledger.post(f"liquidation:{account.pk}:{stamp}", "Liquidation: margin released", postings)
        ledger.flush()
        notices.liquidation_started(
            account=account,
            key=f"liquidation:{account.pk}:{stamp}",
            cancelled=len(live),
            closing=[
                (i.symbol, _closing_side(contracts), abs(contracts))
                for i, contracts in sorted(positions.items(), key=lambda item: item[0].symbol)
            ],
            reason=reason,
        )
    # The cancels release what the orders held, before the closing orders need it.
    orders.cancel_commands_match(cancels)
    results = []
    for instrument, contracts in sorted(positions.items(), key=lambda item: item[0].symbol):
        side = _closing_side(contracts)
        try:
            order = orders.order_place(
                account=account,
                instrument=instrument,
                side=side,
                quantity=abs(contracts),
                type=Order.Type.MARKET,
                time_in_force=Order.TimeInForce.IOC,
                placed_by=actor,
                liquidation=True,
            )
            results.append(
                {"symbol": instrument.symbol, "order": order.pk, "filled": order.filled_quantity}
            )
        except ExchangeError as error:
            results.append({"symbol": instrument.symbol, "error": str(error.code)})
    call = open_margin_call(account)
    if call is not None:
        call = margin_call_review(call, actor=actor)
        # Flat and owing nothing: the call ended by staff closing the account, not by funds
        # (even when the review just cured it, with nothing left to margin). An account that
        # still owes a deficit stays under its call, reduce-only, until it pays.
        # The change is audited (``margin_call.liquidated``) in its own transaction, under the
        # call's lock: until 2026-12-07 it was a bare UPDATE, and the audit log showed the call
        # cured by the review, never how it ended.
        if not call.deficit and not _account_instruments(account.pk):
            with transaction.atomic():
                call = MarginCall.objects.select_for_update().get(pk=call.pk)
                before = _margin_call_figures(call)
                call.status = MarginCall.Status.LIQUIDATED
                call.resolved_at = timezone.now()
                call.resolved_by = actor if actor is not None and actor.is_authenticated else None
                call.save(update_fields=["status", "resolved_at", "resolved_by"])
                audit_record(
                    actor=actor,
                    action="margin_call.liquidated",
                    target=call,
                    before=before,
                    after=_margin_call_figures(call),
                    reason=reason,
                )
            recent.changed()
    return {"orders": results}


def _closing_side(contracts: int) -> str:
    """The side of the order that closes a position of ``contracts`` (long when positive)."""
    return Side.SELL if contracts > 0 else Side.BUY
