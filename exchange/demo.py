"""The demo market: realistic 2026 GPU capacity prices (see MARKET.md), every kind of user.

Loading is idempotent: what exists is kept, what is missing is created, and the opening quotes
are placed only into a market that has no orders yet.
"""

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from exchange import calendar
from exchange.backoffice.roles import Role
from exchange.models import (
    Account,
    Deposit,
    Instrument,
    Interconnect,
    Membership,
    Order,
    Organization,
    Pool,
    Region,
    ReservedCapacity,
    Sku,
)
from exchange.selectors.market import quotes_for
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds, test_mode_active
from exchange.services.listing import (
    futures_list_strip,
    listable_until,
    listing_trades,
    options_list_chain,
    resale_list,
    resale_next_term,
)
from exchange.services.margin import option_value
from exchange.services.orders import order_place
from exchange.services.participants import account_main, member_add, organization_create
from exchange.services.pools import pool_create, pool_fund, pool_member_add
from exchange.services.staff import staff_roles_grant

DEMO_PASSWORD = "gpu-demo-2026"
ADMIN_PASSWORD = "admin-demo-2026"
STAFF_PASSWORD = "staff-demo-2026"
# One demo staff user per back-office role (the admin has them all).
STAFF = [("olivia", Role.OPERATIONS), ("ravi", Role.RISK), ("felix", Role.FINANCE)]
STRIP_MONTHS = 6
OPTION_MONTHS = 3
QUOTED_MONTHS = 5  # The sixth month is priced by the model (curve and depreciation).


@dataclass(frozen=True)
class SkuSpec:
    code: str
    name: str
    vendor: str
    generation: str
    memory_gb: int
    interconnect: str
    release_date: date
    power_watts: int
    reference_price: Decimal  # Neocloud $/GPU-hr, late 2026 (MARKET.md indices).
    monthly_decay: Decimal  # Forward curve slope: older generations depreciate faster.
    strike_step: Decimal
    # Hyperscaler on-demand list price, $/GPU-hr: about 3x the neocloud index (MARKET.md: an
    # H100 near $7.4-7.5 against $2.4-2.6); the benchmark of the pools' savings reports.
    on_demand_price: Decimal | None = None


SKUS = [
    SkuSpec(
        "A100",
        "NVIDIA A100 80GB SXM",
        "NVIDIA",
        "Ampere",
        80,
        Interconnect.NVLINK,
        date(2020, 5, 14),
        400,
        Decimal("1.25"),
        Decimal("0.015"),
        Decimal("0.10"),
        Decimal("3.80"),
    ),
    SkuSpec(
        "H100SXM",
        "NVIDIA H100 SXM",
        "NVIDIA",
        "Hopper",
        80,
        Interconnect.NVLINK,
        date(2022, 9, 20),
        700,
        Decimal("2.45"),
        Decimal("0.012"),
        Decimal("0.25"),
        Decimal("7.45"),
    ),
    SkuSpec(
        "L40S",
        "NVIDIA L40S",
        "NVIDIA",
        "Ada Lovelace",
        48,
        Interconnect.PCIE,
        date(2023, 8, 8),
        350,
        Decimal("0.85"),
        Decimal("0.010"),
        Decimal("0.10"),
        Decimal("2.60"),
    ),
    SkuSpec(
        "MI300X",
        "AMD Instinct MI300X",
        "AMD",
        "CDNA 3",
        192,
        Interconnect.INFINITY_FABRIC,
        date(2023, 12, 6),
        750,
        Decimal("2.10"),
        Decimal("0.010"),
        Decimal("0.25"),
        Decimal("6.40"),
    ),
    SkuSpec(
        "H200",
        "NVIDIA H200 SXM",
        "NVIDIA",
        "Hopper",
        141,
        Interconnect.NVLINK,
        date(2024, 6, 1),
        700,
        Decimal("3.40"),
        Decimal("0.008"),
        Decimal("0.25"),
        Decimal("10.35"),
    ),
    SkuSpec(
        "B200",
        "NVIDIA B200",
        "NVIDIA",
        "Blackwell",
        192,
        Interconnect.NVLINK,
        date(2025, 3, 1),
        1000,
        Decimal("5.30"),
        Decimal("0.004"),
        Decimal("0.50"),
        Decimal("16.10"),
    ),
]

REGIONS = [
    (
        "USEAST",
        "US East (Virginia)",
        ["soc2", "hipaa", "iso27001"],
        Decimal("0.0820"),
        Decimal("1.00"),
    ),
    ("USWEST", "US West (Oregon)", ["soc2", "iso27001"], Decimal("0.0710"), Decimal("1.03")),
    (
        "EUWEST",
        "EU West (Frankfurt, sovereign)",
        ["soc2", "iso27001", "eu_sovereign"],
        Decimal("0.1850"),
        Decimal("1.12"),
    ),
]

ORGANIZATIONS = [
    # slug, name, kind, [(username, role)]
    (
        "lumen",
        "Lumen Labs",
        Organization.Kind.STARTUP,
        [("alice", Membership.Role.TRADER), ("victor", Membership.Role.VIEWER)],
    ),
    ("quanta", "Quanta Bio", Organization.Kind.STARTUP, [("quinn", Membership.Role.TRADER)]),
    ("cirrus", "Cirrus AI", Organization.Kind.STARTUP, [("cora", Membership.Role.TRADER)]),
    (
        "northwind",
        "Northwind Cloud",
        Organization.Kind.PROVIDER,
        [("nora", Membership.Role.TRADER)],
    ),
    ("helix", "Helix Trading", Organization.Kind.TRADING_FIRM, [("hank", Membership.Role.TRADER)]),
    ("foundry", "Foundry Ventures", Organization.Kind.SPONSOR, [("fiona", Membership.Role.TRADER)]),
    # The operator itself: its accounts will hold fee revenue; staff act through the back office.
    ("gpux", "GPU Exchange (operator)", Organization.Kind.EXCHANGE, []),
]


# Opening cash of each demo trading account, in test funds (USD). The operator holds none.
DEMO_FUNDING = {
    "lumen": Decimal("2000000.00"),
    "quanta": Decimal("250000.00"),
    "cirrus": Decimal("50000.00"),
    "northwind": Decimal("5000000.00"),
    "helix": Decimal("10000000.00"),
    "foundry": Decimal("20000000.00"),
}


def quantize_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick


def forward_price(
    spec: SkuSpec, region_factor: Decimal, months_ahead: int, tick: Decimal
) -> Decimal:
    price = spec.reference_price * region_factor * (1 - spec.monthly_decay * months_ahead)
    return quantize_to_tick(price, tick)


def ensure_sku(code: str) -> Sku:
    """The demo catalog's SKU ``code``, created if missing."""
    spec = next(spec for spec in SKUS if spec.code == code)
    sku, _ = Sku.objects.get_or_create(
        code=spec.code,
        defaults={
            "name": spec.name,
            "vendor": spec.vendor,
            "generation": spec.generation,
            "memory_gb": spec.memory_gb,
            "interconnect": spec.interconnect,
            "release_date": spec.release_date,
            "power_watts": spec.power_watts,
            "on_demand_price": spec.on_demand_price,
        },
    )
    return sku


def ensure_region(code: str) -> Region:
    """The demo catalog's region ``code``, created if missing."""
    _code, name, compliance, power_price, _factor = next(row for row in REGIONS if row[0] == code)
    region, _ = Region.objects.get_or_create(
        code=code,
        defaults={"name": name, "compliance": compliance, "power_price_usd_per_kwh": power_price},
    )
    return region


def load_catalog(today: date) -> list[tuple[SkuSpec, Region, Decimal, list[Instrument]]]:
    first_month = calendar.add_months(calendar.month_start(today), 1)
    strips = []
    for spec in SKUS:
        sku = ensure_sku(spec.code)
        for code, _name, _compliance, _power_price, factor in REGIONS:
            region = ensure_region(code)
            futures = futures_list_strip(
                sku=sku, region=region, first_month=first_month, months=STRIP_MONTHS
            )
            strips.append((spec, region, factor, futures))
            if spec.code in {"H100SXM", "B200"} and code == "USEAST":
                for index, future in enumerate(futures[:OPTION_MONTHS]):
                    reference = forward_price(spec, factor, index + 1, future.tick_size)
                    options_list_chain(
                        future=future,
                        reference_price=reference,
                        strike_step=spec.strike_step,
                        strikes_each_side=4,
                    )
    return strips


def load_participants() -> dict[str, Account]:
    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        user_model.objects.create_superuser("admin", "admin@exchange.example", ADMIN_PASSWORD)
    admin = user_model.objects.get(username="admin")
    staff_roles_grant(user=admin, roles=list(Role), actor=None)
    for username, staff_role in STAFF:
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model.objects.create_user(
                username, f"{username}@exchange.example", STAFF_PASSWORD
            )
        staff_roles_grant(user=user, roles=[staff_role], actor=None)
    accounts = {}
    for slug, name, kind, members in ORGANIZATIONS:
        organization = Organization.objects.filter(slug=slug).first() or organization_create(
            slug=slug, name=name, kind=kind
        )
        for username, role in members:
            if not user_model.objects.filter(username=username).exists():
                member_add(
                    organization=organization,
                    username=username,
                    email=f"{username}@{slug}.example",
                    password=DEMO_PASSWORD,
                    role=role,
                )
        accounts[slug] = account_main(organization)
    return accounts


def _trades(instrument: Instrument) -> bool:
    """Still trading now: before the close of its last trading day."""
    return timezone.now() < calendar.trading_ends_at(instrument.last_trading_day)


def load_reservations(today: date) -> None:
    provider = Organization.objects.get(slug="northwind")
    blocks = [
        # holder, cluster, sku, region, months from now, term months, gpus, block
        ("lumen", "nw-ashburn-h100-a", "H100SXM", "USEAST", 1, 3, 256, 64),
        # Running since four months ago: Lumen resells the rest of its term from the first day
        # more than a day ahead on, the rest of this month included.
        ("lumen", "nw-ashburn-h100-r", "H100SXM", "USEAST", -4, 12, 128, 32),
        ("quanta", "nw-frankfurt-a100-c", "A100", "EUWEST", 2, 6, 64, 8),
        ("lumen", "nw-portland-b200-b", "B200", "USWEST", 2, 12, 512, 128),
    ]
    for holder_slug, cluster, sku_code, region_code, offset, term, gpus, block in blocks:
        starts = datetime.combine(
            calendar.add_months(calendar.month_start(today), offset), time.min, tzinfo=UTC
        )
        if offset > 0 and timezone.now() >= listable_until(starts):
            # At a month's end next month's block could no longer be listed for resale.
            starts = datetime.combine(calendar.add_months(starts.date(), 1), time.min, tzinfo=UTC)
        reservation = ReservedCapacity.objects.filter(cluster=cluster).first()
        if reservation is None:
            reservation = capacity_register(
                provider=provider,
                holder=Organization.objects.get(slug=holder_slug),
                cluster=cluster,
                sku=Sku.objects.get(code=sku_code),
                region=Region.objects.get(code=region_code),
                starts_at=starts,
                ends_at=datetime.combine(
                    calendar.add_months(starts.date(), term), time.min, tzinfo=UTC
                ),
                gpus=gpus,
                interconnect=Interconnect.INFINIBAND,
                contiguous_block_gpus=block,
            )
        now = timezone.now()
        listed = any(listing_trades(listing, now) for listing in reservation.listings.all())
        if not listed and resale_next_term(reservation, now) is not None:
            resale_list(reservation=reservation)


def load_opening_market(
    strips: list[tuple[SkuSpec, Region, Decimal, list[Instrument]]],
    accounts: dict[str, Account],
    seed: int = 2026,
) -> int:
    """Quotes from the market maker and the provider, and a few trades from the startups."""
    if Order.objects.exists():
        return 0
    rng = random.Random(seed)
    placed = 0
    for spec, _region, factor, futures in strips:
        for index, future in enumerate(futures[:QUOTED_MONTHS]):
            if not _trades(future):
                continue  # Next month's future, after the close of this month's last day.
            mid = forward_price(spec, factor, index + 1, future.tick_size)
            tick = future.tick_size
            for level in range(1, 4):
                size = rng.choice([8, 16, 32, 64])
                order_place(
                    account=accounts["helix"],
                    instrument=future,
                    side="buy",
                    price=mid - tick * (2 * level),
                    quantity=size,
                )
                order_place(
                    account=accounts["northwind"],
                    instrument=future,
                    side="sell",
                    price=mid + tick * (2 * level),
                    quantity=size * 2,
                )
                placed += 2
            buyer = accounts[rng.choice(["lumen", "quanta"])]
            order_place(
                account=buyer,
                instrument=future,
                side="buy",
                price=mid + tick * 2,
                quantity=rng.choice([4, 8]),
            )
            placed += 1
    placed += quote_options(accounts, today=timezone.now().date())
    for instrument in Instrument.objects.filter(kind=Instrument.Kind.RESALE):
        if not _trades(instrument):
            continue
        # A resale instrument lists one reserved block (instrument_resale_has_reservation).
        assert instrument.reservation is not None
        holder_account = account_main(instrument.reservation.holder)
        spec = next(spec for spec in SKUS if spec.code == instrument.sku.code)
        order_place(
            account=holder_account,
            instrument=instrument,
            side="sell",
            price=quantize_to_tick(spec.reference_price * Decimal("0.95"), instrument.tick_size),
            quantity=instrument.lot_size * 2,
        )
        placed += 1
    return placed


def demo_volatility(strike: Decimal, forward: Decimal) -> float:
    """The market maker's volatility smile: 55% at the money, higher away from it."""
    return 0.55 + 0.5 * abs(float(strike / forward) - 1)


def quote_options(accounts: dict[str, Account], *, today: date) -> int:
    """Helix quotes every listed option around its Black-76 value on the future's mid, and
    Lumen buys a near-the-money call, so the chain shows prices and implied volatilities."""
    placed = 0
    futures = Instrument.objects.filter(
        kind=Instrument.Kind.FUTURE, options__isnull=False
    ).distinct()
    for future in futures.order_by("pk"):
        quote = quotes_for([future])[future.pk]
        if quote.best_bid is None or quote.best_ask is None:
            continue
        forward = (quote.best_bid.price + quote.best_ask.price) / 2
        # A month's last days: next month's options stop two business days before its future.
        options = [o for o in future.options.order_by("strike", "option_type") if _trades(o)]
        if not options:
            continue
        # Helix's offer per option: Lumen buys at it. Read back from the book it would be
        # missing while a matcher process has not taken it yet (the external mode).
        offers: dict[int, Decimal] = {}
        from_the_money: dict[int, Decimal] = {}  # Per option: its strike's distance from forward.
        for option in options:
            assert option.strike is not None
            from_the_money[option.pk] = abs(option.strike - forward)
            value, _ = option_value(option, forward, demo_volatility(option.strike, forward), today)
            tick = option.tick_size
            half_spread = max(tick * 5, quantize_to_tick(value * Decimal("0.04"), tick))
            if value - half_spread >= tick:
                order_place(
                    account=accounts["helix"],
                    instrument=option,
                    side="buy",
                    price=value - half_spread,
                    quantity=10,
                )
                placed += 1
            offers[option.pk] = value + half_spread
            order_place(
                account=accounts["helix"],
                instrument=option,
                side="sell",
                price=offers[option.pk],
                quantity=10,
            )
            placed += 1
        at_the_money = min(
            (o for o in options if o.option_type == Instrument.OptionType.CALL),
            key=lambda o: from_the_money[o.pk],
        )
        order_place(
            account=accounts["lumen"],
            instrument=at_the_money,
            side="buy",
            price=offers[at_the_money.pk],
            quantity=2,
        )
        placed += 1
    return placed


def load_funding(accounts: dict[str, Account]) -> int:
    """Fund each demo trading account once with test funds; skipped with Stripe keys set."""
    if not test_mode_active():
        return 0
    funded = 0
    for slug, amount in DEMO_FUNDING.items():
        account = accounts[slug]
        if account.deposits.filter(status=Deposit.Status.CREDITED).exists():
            continue
        deposit_test_funds(account=account, amount=amount, actor=None)
        funded += 1
    return funded


# The demo portfolio program: Foundry Ventures pools the demand of three of its startups.
DEMO_POOL_NAME = "Foundry Seed Compute"
DEMO_POOL_MEMBERS = [("lumen", 10), ("quanta", 20), ("cirrus", 30)]  # (slug, priority)
DEMO_POOL_FUNDS = Decimal("2000000.00")


def load_pool(accounts: dict[str, Account]) -> Pool:
    """The demo pool (once): 10% sponsor subsidy, a $50,000 credit line per member, funded
    from the sponsor's main account; demand comes from the members themselves."""
    sponsor = accounts["foundry"].organization
    pool = Pool.objects.filter(sponsor=sponsor, name=DEMO_POOL_NAME).first()
    if pool is not None:
        return pool
    pool = pool_create(
        sponsor=sponsor,
        name=DEMO_POOL_NAME,
        rule=Pool.Rule.PRO_RATA,
        subsidy_percent=Decimal("10"),
        credit_line=Decimal("50000"),
        actor=None,
    )
    for slug, priority in DEMO_POOL_MEMBERS:
        pool_member_add(
            pool=pool, organization=accounts[slug].organization, priority=priority, actor=None
        )
    if test_mode_active():
        pool_fund(pool=pool, amount=DEMO_POOL_FUNDS, actor=None)
    return pool


def load_demo(today: date | None = None) -> dict[str, int]:
    today = today or timezone.now().date()
    strips = load_catalog(today)
    accounts = load_participants()
    load_funding(accounts)
    load_pool(accounts)
    load_reservations(today + timedelta(days=0))
    placed = load_opening_market(strips, accounts)
    return {"instruments": Instrument.objects.count(), "orders_placed": placed}
