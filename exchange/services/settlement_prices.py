"""Daily settlement prices: the price every futures and options position is marked at.

For each listed future and option, on each trading day, in this order of preference:

1. the volume-weighted average price of the trades in the closing window
   (``EXCHANGE_SETTLEMENT_WINDOW_MINUTES`` before ``EXCHANGE_SETTLEMENT_CLOSE``, UTC);
2. the mid of the best bid and best ask resting when the prices are set (both sides needed);
3. the model: for a future, the forward curve (``pricing.curve``, monotone between months)
   through the day's market-priced futures of the same SKU and region, and beyond the last of
   them the shape of the SKU's depreciation model fitted to those prices (``pricing.
   depreciation``, with four or more months priced; flat otherwise); for an option, Black-76
   on the underlying's settlement price at the option's latest implied volatility (else the
   mean of its siblings' implied volatility that day, else the future's historical volatility
   from its settlement prices, ``selectors.volatility``, else ``EXCHANGE_DEFAULT_VOLATILITY``);
4. with nothing else, a future keeps its previous settlement price, or its last trade price.

Prices are rounded to the nearest tick (half to even). An option's row keeps the volatility
its price implies (market prices) or was computed with (model). Setting prices is idempotent:
a price set for a day is kept, and staff may override it with a reason, until the day is
settled. Both are audited: the prices a setting wrote, and each override.

Setting and overriding prices are the risk role's: a user actor must be active staff with it
(``RISK_NOT_STAFF``, ``RISK_ROLE_REQUIRED``); the system (no actor) sets them too. Both take the
day settlements' lock (``day_settlements_lock``) first, as the daily run does, so that the
order check reads every settlement committed before and no price is written for a day that a
later day's run settles past meanwhile.
"""

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F, Min, Sum
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import RISK_STAFF
from exchange.calendar import close_at
from exchange.errors import RiskError, RiskErrorCode
from exchange.models import Instrument, RiskCycle, SettlementPrice, Sku, Trade
from exchange.selectors.market import Quote, quotes_for
from exchange.selectors.volatility import historical_volatility
from exchange.services import margin
from exchange.services.audit import audit_record
from pricing import black76, depreciation
from pricing.curve import ForwardCurve
from pricing.depreciation import DepreciationModel

Source = SettlementPrice.Source
MARKET_SOURCES = (Source.VWAP, Source.MID, Source.OVERRIDE)
DEPRECIATION_FIT_MONTHS_MIN = 4


# The key of the PostgreSQL transaction lock that day settlements take first ("GPUD"; the
# matcher's shard leases use other classes, exchange/matcher/lease.py).
DAY_SETTLEMENTS_LOCK_CLASS = 0x47505544
DAY_SETTLEMENTS_LOCK_KEY = 0


def day_settlements_lock() -> None:
    """Wait until no other day's settlement, price setting or override runs, for the rest of
    the transaction.

    The order check (``RISK_DAY_OUT_OF_ORDER``, ``trading_date_check``) reads the settled days,
    and the run that passes it settles its day in the same transaction: two runs at once (day D
    and D-1) would both pass, and D-1 settle after D. An override or a price setting for D-1
    passing its check while D's run has not committed would likewise change D-1's prices after
    D settled on them. No row serves as their lock: each day locks only its own ``RiskCycle``,
    created in its own transaction where the other run does not see it, and the instruments it
    then locks may be others or none. So it is an advisory lock, taken first in the
    transaction, before any row lock, and by nothing else, which no deadlock can involve
    (``daily_settlement_run`` takes it again when it sets its prices: a session holds it any
    number of times). SQLite runs one writing transaction at a time (``transaction_mode``
    IMMEDIATE) and needs none.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            [DAY_SETTLEMENTS_LOCK_CLASS, DAY_SETTLEMENTS_LOCK_KEY],
        )


def on_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


def instruments_to_settle(trading_date: date, close: datetime) -> list[Instrument]:
    """Futures and options listed by the close that still trade on ``trading_date``."""
    return list(
        Instrument.objects.settled_by(close)
        .filter(last_trading_day__gte=trading_date)
        .select_related("underlying", "sku", "region")
        .order_by("kind", "id")  # Futures before options: options need their underlying's.
    )


def _vwaps(instruments: list[Instrument], close: datetime) -> dict[int, tuple[Decimal, int]]:
    start = close - timedelta(minutes=settings.EXCHANGE_SETTLEMENT_WINDOW_MINUTES)
    rows = (
        Trade.objects.filter(
            instrument__in=instruments, executed_at__gte=start, executed_at__lt=close
        )
        .values("instrument_id")
        .annotate(volume=Sum("quantity"), value=Sum(F("price") * F("quantity")))
    )
    return {
        row["instrument_id"]: (Decimal(row["value"]) / row["volume"], row["volume"])
        for row in rows
        if row["volume"]
    }


def settlement_prices_set(
    *, trading_date: date, close: datetime | None = None, actor: User | None = None
) -> RiskCycle:
    """Set the day's missing settlement prices (the preview of the daily cycle); idempotent.

    The prices it sets are audited (``settlement_price.set`` on the day's cycle): who set them,
    the day, and each instrument's price and source. A call that finds every price set writes
    nothing, so no row either."""
    RISK_STAFF.check(actor, "set settlement prices")
    with transaction.atomic():
        day_settlements_lock()
        cycle, rows = _prices_set(trading_date, close)
        if rows:
            audit_record(
                actor=actor,
                action="settlement_price.set",
                target=cycle,
                after={
                    "trading_date": trading_date.isoformat(),
                    "close_at": cycle.close_at.isoformat(),
                    "prices": {
                        row.instrument.symbol: {"price": str(row.price), "source": row.source}
                        for row in rows
                    },
                },
            )
        return cycle


def _prices_set(
    trading_date: date, close: datetime | None
) -> tuple[RiskCycle, list[SettlementPrice]]:
    """The day's cycle, and the prices written (none: the day is settled, or every price was
    set before)."""
    close = close or close_at(trading_date)
    trading_date_check(trading_date, close)
    cycle, _ = RiskCycle.objects.get_or_create(
        trading_date=trading_date, defaults={"close_at": close}
    )
    cycle = RiskCycle.objects.select_for_update().get(pk=cycle.pk)
    if cycle.status == RiskCycle.Status.SETTLED:
        return cycle, []
    if cycle.close_at != close:  # Opened by an override with the standard close.
        cycle.close_at = close
        cycle.save(update_fields=["close_at"])
    instruments = instruments_to_settle(trading_date, cycle.close_at)
    existing = {
        row.instrument_id: row
        for row in SettlementPrice.objects.filter(
            trading_date=trading_date, instrument__in=instruments
        )
    }
    missing = [instrument for instrument in instruments if instrument.pk not in existing]
    if not missing:
        return cycle, []
    vwaps = _vwaps(missing, cycle.close_at)
    quotes = quotes_for(missing)
    previous = margin.latest_settlements(
        [instrument.pk for instrument in missing], on_or_before=trading_date - timedelta(days=1)
    )
    prices = {instrument_id: row.price for instrument_id, row in existing.items()}
    rows: list[SettlementPrice] = []
    futures = [instrument for instrument in missing if instrument.kind == Instrument.Kind.FUTURE]
    options = [instrument for instrument in missing if instrument.kind == Instrument.Kind.OPTION]
    unpriced: list[Instrument] = []
    for future in futures:
        row = _market_price(future, trading_date, vwaps, quotes)
        if row is None:
            unpriced.append(future)
        else:
            rows.append(row)
            prices[future.pk] = row.price
    # Only market prices (this run's, or kept from an earlier run or an override) make the
    # curve: a carried or modelled price from an earlier run is not one.
    market_ids = {priced.instrument_id for priced in rows} | {
        instrument_id for instrument_id, kept in existing.items() if kept.source in MARKET_SOURCES
    }
    market_futures = list(
        Instrument.objects.filter(pk__in=market_ids, kind=Instrument.Kind.FUTURE).select_related(
            "region"
        )
    )
    models: dict[int, DepreciationModel | None] = {}
    for future in unpriced:
        row = _future_model_price(future, trading_date, market_futures, prices, previous, models)
        if row is not None:
            rows.append(row)
            prices[future.pk] = row.price
    _option_prices(options, trading_date, vwaps, quotes, prices, previous, rows)
    SettlementPrice.objects.bulk_create(rows)
    return cycle, rows


def _market_price(
    instrument: Instrument,
    trading_date: date,
    vwaps: dict[int, tuple[Decimal, int]],
    quotes: dict[int, Quote],
) -> SettlementPrice | None:
    if instrument.pk in vwaps:
        vwap, volume = vwaps[instrument.pk]
        return SettlementPrice(
            instrument=instrument,
            trading_date=trading_date,
            price=on_tick(vwap, instrument.tick_size),
            source=Source.VWAP,
            volume=volume,
        )
    quote = quotes[instrument.pk]
    if quote.best_bid is not None and quote.best_ask is not None:
        mid = (quote.best_bid.price + quote.best_ask.price) / 2
        return SettlementPrice(
            instrument=instrument,
            trading_date=trading_date,
            price=on_tick(mid, instrument.tick_size),
            source=Source.MID,
        )
    return None


def _future_model_price(
    future: Instrument,
    trading_date: date,
    market_futures: list[Instrument],
    prices: dict[int, Decimal],
    previous: dict[int, SettlementPrice],
    models: dict[int, DepreciationModel | None],
) -> SettlementPrice | None:
    siblings = sorted(
        (
            sibling
            for sibling in market_futures
            if sibling.sku_id == future.sku_id and sibling.region_id == future.region_id
        ),
        key=lambda sibling: sibling.delivery_start,
    )
    if siblings:
        months = [sibling.delivery_start for sibling in siblings]
        values = [float(prices[sibling.pk]) for sibling in siblings]
        model = None
        if future.delivery_start > months[-1]:  # Beyond the market: the model's shape.
            if future.sku_id not in models:
                models[future.sku_id] = _sku_model(future.sku, market_futures, prices)
            model = models[future.sku_id]
        curve = ForwardCurve.build(months, values, model)
        value = Decimal(repr(curve.price(future.delivery_start)))
        return SettlementPrice(
            instrument=future,
            trading_date=trading_date,
            price=max(on_tick(value, future.tick_size), future.tick_size),
            source=Source.MODEL,
        )
    if future.pk in previous:
        return SettlementPrice(
            instrument=future,
            trading_date=trading_date,
            price=previous[future.pk].price,
            source=Source.PREVIOUS,
        )
    last = Trade.objects.filter(instrument=future).order_by("-sequence").first()
    if last is not None:
        return SettlementPrice(
            instrument=future, trading_date=trading_date, price=last.price, source=Source.LAST_TRADE
        )
    return None


def _sku_model(
    sku: Sku, market_futures: list[Instrument], prices: dict[int, Decimal]
) -> DepreciationModel | None:
    """The SKU's model for the day, fitted once to its strip with the most market-priced months
    (the lowest region code on a tie): the shape of depreciation is the SKU's, whatever the
    region's price level."""
    strips: dict[str, list[Instrument]] = defaultdict(list)
    for future in market_futures:
        if future.sku_id == sku.pk:
            strips[future.region.code].append(future)
    if not strips:
        return None
    region = max(sorted(strips), key=lambda code: len(strips[code]))
    strip = sorted(strips[region], key=lambda future: future.delivery_start)
    return depreciation_model(
        sku, [f.delivery_start for f in strip], [float(prices[f.pk]) for f in strip]
    )


def depreciation_model(
    sku: Sku, months: list[date], prices: list[float]
) -> DepreciationModel | None:
    """The SKU's depreciation model fitted to a strip's market prices (each delivery month's
    price at its middle), or None when it cannot be fitted (fewer than four months priced, or
    the fit does not converge): the curve is then flat beyond the last priced month."""
    if len(months) < DEPRECIATION_FIT_MONTHS_MIN:
        return None
    middles = [month + timedelta(days=14) for month in months]
    try:
        return depreciation.fit(middles, prices, sku.release_date, [])
    except ValueError:  # FitError is one: too few points, or no convergence.
        return None


def implied_volatility(
    option: Instrument, price: Decimal, forward: Decimal, trading_date: date
) -> Decimal | None:
    """The volatility an option price implies, or None (no time left, or outside bounds)."""
    assert option.strike is not None
    if trading_date >= option.last_trading_day or forward <= 0:
        return None
    sigma, _reasons = black76.implied_volatility_with_reasons(
        float(price),
        float(forward),
        float(option.strike),
        margin.years_to_expiry(option, trading_date),
        float(settings.EXCHANGE_RISK_FREE_RATE),
        option.option_type == Instrument.OptionType.CALL,
    )
    value = float(np.asarray(sigma))
    if not np.isfinite(value):
        return None
    return Decimal(repr(value)).quantize(Decimal("0.000001"))


def _option_prices(
    options: list[Instrument],
    trading_date: date,
    vwaps: dict[int, tuple[Decimal, int]],
    quotes: dict[int, Quote],
    prices: dict[int, Decimal],
    previous: dict[int, SettlementPrice],
    rows: list[SettlementPrice],
) -> None:
    by_underlying: dict[int, list[Instrument]] = defaultdict(list)
    for option in options:
        assert option.underlying_id is not None
        by_underlying[option.underlying_id].append(option)
    for underlying_id, chain in by_underlying.items():
        forward = prices.get(underlying_id)
        if forward is None:
            continue  # No price for the future: its options cannot be valued either.
        modelled: list[Instrument] = []
        implied: list[Decimal] = []
        for option in chain:
            row = _market_price(option, trading_date, vwaps, quotes)
            if row is None:
                modelled.append(option)
                continue
            row.implied_volatility = implied_volatility(option, row.price, forward, trading_date)
            if row.implied_volatility is not None:
                implied.append(row.implied_volatility)
            rows.append(row)
        sibling_sigma = float(sum(implied) / len(implied)) if implied else None
        # The future's, for options with neither their own nor their siblings' (one read).
        historical = (
            historical_volatility(underlying_id, until=trading_date)
            if modelled and sibling_sigma is None
            else None
        )
        for option in modelled:
            latest = previous.get(option.pk)
            if latest is not None and latest.implied_volatility is not None:
                sigma = float(latest.implied_volatility)
            elif sibling_sigma is not None:
                sigma = sibling_sigma
            else:
                sigma = historical or float(settings.EXCHANGE_DEFAULT_VOLATILITY)
            value, _ = margin.option_value(option, forward, sigma, trading_date)
            rows.append(
                SettlementPrice(
                    instrument=option,
                    trading_date=trading_date,
                    price=value,
                    source=Source.MODEL,
                    implied_volatility=Decimal(repr(sigma)).quantize(Decimal("0.000001")),
                )
            )


def trading_date_check(trading_date: date, close: datetime | None = None) -> None:
    """Refuse, before anything is written, a trading day whose close has not passed: its prices
    would be taken from part of the closing window or from the book while it still trades, its
    variation margin posted on them, and on a last trading day its contracts expired and
    exercised while they trade; the scheduled run after the close would then find it settled.
    A day after today (UTC, the exchange's day) is named as such. ``close``: the day's close
    when not the standard one (``close_at``).

    A day before the exchange's first listing day (``RISK_DAY_BEFORE_LISTING``; every day
    while nothing is listed) had nothing to trade. Until 2026-12-07 such a day, ``0001-01-01``
    as well, could be run on an exchange that had never settled: it marked the positions and
    margin held today at that day's prices (none), and opened margin calls on them.

    Days settle in order: a day before the latest settled day is refused
    (``RISK_DAY_OUT_OF_ORDER``). Settling it then would mark every position back from the
    later day's prices to its own, paying variation margin backwards, and open or cure margin
    calls on old prices; a day that was missed needs no run of its own, as the next day's
    variation margin covers it. A settlement, a price setting and an override take the day
    settlements' lock (``day_settlements_lock``) before this check, so it reads every
    settlement committed before; the admin form's check (``settlement_price_check``) reads
    without it, and the override checks again under it."""
    moment = now()
    today = moment.date()
    if trading_date > today:
        raise RiskError(
            RiskErrorCode.DAY_IN_FUTURE,
            f"{trading_date} is after today ({today}): a trading day can only be run once it "
            "has closed.",
            "trading_date",
        )
    close = close or close_at(trading_date)
    if moment < close:
        raise RiskError(
            RiskErrorCode.DAY_NOT_CLOSED,
            f"{trading_date} closes at {close:%H:%M} UTC (EXCHANGE_SETTLEMENT_CLOSE): its prices "
            "can be set and its day settled once the close has passed.",
            "trading_date",
        )
    first_listed = first_listing_day()
    if first_listed is None or trading_date < first_listed:
        listed = (
            "nothing is listed yet"
            if first_listed is None
            else f"the first instrument was listed on {first_listed}"
        )
        raise RiskError(
            RiskErrorCode.DAY_BEFORE_LISTING,
            f"{trading_date} is before the exchange's first listing day ({listed}): nothing "
            "traded on it, so there is no day to settle.",
            "trading_date",
        )
    latest = (
        RiskCycle.objects.filter(status=RiskCycle.Status.SETTLED, trading_date__gt=trading_date)
        .order_by("-trading_date")
        .values_list("trading_date", flat=True)
        .first()
    )
    if latest is not None:
        raise RiskError(
            RiskErrorCode.DAY_OUT_OF_ORDER,
            f"{trading_date} is before {latest}, the latest settled day: days settle in order, "
            "and the next day's settlement covers a day that was missed.",
            "trading_date",
        )


def first_listing_day() -> date | None:
    """The day (UTC) the exchange listed its first instrument, of any kind; ``None`` while
    nothing is listed. Instruments are never deleted (expired ones stay), so it never moves."""
    first = Instrument.objects.aggregate(first=Min("created_at"))["first"]
    return None if first is None else timezone.localtime(first, UTC).date()


def _day_settled(trading_date: date) -> RiskError:
    return RiskError(
        RiskErrorCode.DAY_SETTLED,
        f"{trading_date} is settled: its prices can no longer change.",
        "trading_date",
    )


OVERRIDE_ACTION = "override settlement prices"


def settlement_price_check(
    *, instrument: Instrument, trading_date: date, price: Decimal, reason: str, actor: User | None
) -> None:
    """Why an override by ``actor`` would be refused (``RiskError``), checked before anything
    is written.

    A day is overridden, as it is run, once its close has passed (``trading_date_check``): a
    price for a day still to come would be the latest settlement at once, marking positions
    and exposure at it. A day after the instrument's last trading day is allowed: it is how
    staff settle a future whose final day was missed (``RISK_SETTLEMENT_PRICE_MISSING``).
    """
    RISK_STAFF.check(actor, OVERRIDE_ACTION)
    if not reason.strip():
        raise RiskError(RiskErrorCode.REASON_REQUIRED, "Give a reason for the override.", "reason")
    if instrument.kind not in (Instrument.Kind.FUTURE, Instrument.Kind.OPTION):
        raise RiskError(
            RiskErrorCode.NOT_SETTLED_DAILY, "Only futures and options settle daily.", "instrument"
        )
    trading_date_check(trading_date)
    if price < 0 or price > instrument.price_max or price % instrument.tick_size:
        raise RiskError(
            RiskErrorCode.INVALID_PRICE,
            f"The price must be on the {instrument.tick_size.normalize():f} tick, from 0 to "
            f"{instrument.price_max.normalize():f} $/GPU-hr.",
            "price",
        )
    settled = RiskCycle.objects.filter(
        trading_date=trading_date, status=RiskCycle.Status.SETTLED
    ).exists()
    if settled:
        raise _day_settled(trading_date)


def settlement_price_override(
    *,
    instrument: Instrument,
    trading_date: date,
    price: Decimal,
    reason: str,
    actor: User | None,
) -> SettlementPrice:
    """Staff set an instrument's settlement price for a day that is not settled yet."""
    RISK_STAFF.check(actor, OVERRIDE_ACTION)  # Before the lock: a refusal waits for no run.
    with transaction.atomic():
        day_settlements_lock()
        return _price_override(instrument, trading_date, price, reason, actor)


def _price_override(
    instrument: Instrument, trading_date: date, price: Decimal, reason: str, actor: User | None
) -> SettlementPrice:
    settlement_price_check(
        instrument=instrument, trading_date=trading_date, price=price, reason=reason, actor=actor
    )
    cycle = RiskCycle.objects.select_for_update().filter(trading_date=trading_date).first()
    if cycle is not None and cycle.status == RiskCycle.Status.SETTLED:
        raise _day_settled(trading_date)
    if cycle is None:
        RiskCycle.objects.create(trading_date=trading_date, close_at=close_at(trading_date))
    row = SettlementPrice.objects.filter(instrument=instrument, trading_date=trading_date).first()
    before = {"price": str(row.price), "source": row.source} if row is not None else {}
    sigma = None
    if instrument.kind == Instrument.Kind.OPTION:
        assert instrument.underlying_id is not None
        underlying = SettlementPrice.objects.filter(
            instrument_id=instrument.underlying_id, trading_date=trading_date
        ).first()
        if underlying is not None:
            sigma = implied_volatility(instrument, price, underlying.price, trading_date)
    row, _ = SettlementPrice.objects.update_or_create(
        instrument=instrument,
        trading_date=trading_date,
        defaults={
            "price": price,
            "source": Source.OVERRIDE,
            "reason": reason.strip()[:300],
            "set_by": actor if actor is not None and actor.is_authenticated else None,
            "implied_volatility": sigma,
            "volume": row.volume if row is not None else 0,
        },
    )
    audit_record(
        actor=actor,
        action="settlement_price.override",
        target=row,
        before=before,
        after={
            "instrument": instrument.symbol,
            "trading_date": str(trading_date),
            "price": str(price),
        },
        reason=reason,
    )
    return row


def day_prices(trading_date: date) -> dict[int, Decimal]:
    """Instrument id: settlement price on ``trading_date``."""
    return dict(
        SettlementPrice.objects.filter(trading_date=trading_date).values_list(
            "instrument_id", "price"
        )
    )


def last_closed_day() -> date:
    """The latest business day whose close has passed: today after the close, else the one
    before (the days the schedule settles, Monday to Friday; a weekend day may still be run
    when asked for)."""
    moment = now()
    today = moment.date()
    if moment >= close_at(today) and today.weekday() < 5:
        return today
    return calendar.business_days_before(today, 1)


def now() -> datetime:
    """The risk cycle's clock (tests move it)."""
    return timezone.now()


def now_date() -> date:
    return now().date()
