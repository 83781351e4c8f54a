from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from exchange.models import Account, Instrument, Organization, Region, Sku
from exchange.services.capacity import capacity_register
from exchange.services.funding import deposit_test_funds
from exchange.services.listing import futures_list_strip, options_list_chain, resale_list
from exchange.services.participants import account_main, organization_create
from tests.exchange.support import RowCounts, listing_month, redis_server


@pytest.fixture(autouse=True)
def _inline_matcher_reset():
    """The inline matcher caches books in memory; each test starts from what its database holds."""
    from exchange.matcher import inline

    inline.reset()
    yield
    inline.reset()


@pytest.fixture
def calendar_ahead(monkeypatch):
    """The exchange's today is moved two years on for the daily risk cycle only, so that a test
    can settle the days its contracts (listed from next month) trade and expire: the cycle's
    clock stands at the last second of that day, after its close, whenever the test runs."""
    from exchange.services import settlement_prices

    ahead = settlement_prices.now_date() + timedelta(days=730)
    moment = datetime.combine(ahead, time(23, 59, 59), tzinfo=UTC)
    monkeypatch.setattr(settlement_prices, "now", lambda: moment)
    return ahead


@pytest.fixture
def clock_after_the_close(monkeypatch):
    """The risk cycle's clock past today's close, whenever the test runs: at the last second of
    today (UTC), or a few seconds from now when a test names a close just after its trades.
    Before 16:00 UTC today's prices could otherwise be neither set nor overridden."""
    from django.utils import timezone

    from exchange.services import settlement_prices

    end_of_today = datetime.combine(timezone.now().date(), time(23, 59, 59), tzinfo=UTC)
    monkeypatch.setattr(
        settlement_prices,
        "now",
        lambda: max(timezone.now() + timedelta(seconds=5), end_of_today),
    )


@pytest.fixture
def row_counts():
    """Call to snapshot the order-related row counts."""
    return RowCounts.now


@pytest.fixture
def sku(db) -> Sku:
    return Sku.objects.create(
        code="H100SXM",
        name="NVIDIA H100 SXM",
        vendor="NVIDIA",
        generation="Hopper",
        memory_gb=80,
        interconnect="nvlink",
        release_date=date(2022, 9, 20),
        power_watts=700,
    )


@pytest.fixture
def region(db) -> Region:
    return Region.objects.create(
        code="USEAST", name="US East", compliance=["soc2"], power_price_usd_per_kwh=Decimal("0.082")
    )


@pytest.fixture
def futures(sku, region) -> list[Instrument]:
    """Two monthly futures from next month on (tick 0.005, lot 1)."""
    return futures_list_strip(sku=sku, region=region, first_month=listing_month(), months=2)


@pytest.fixture
def future(futures) -> Instrument:
    return futures[0]


@pytest.fixture
def call(future) -> Instrument:
    """A European call struck at 2.50 on ``future`` (its put is listed too)."""
    chain = options_list_chain(
        future=future,
        reference_price=Decimal("2.50"),
        strike_step=Decimal("0.25"),
        strikes_each_side=0,
    )
    return next(option for option in chain if option.option_type == "call")


# Enough for any order the tests place: collateral is held at acceptance.
TEST_ACCOUNT_FUNDS = Decimal("10000000")


def _account(slug: str, kind: str, *, funded: bool = True) -> Account:
    account = account_main(organization_create(slug=slug, name=slug.title(), kind=kind))
    if funded:
        deposit_test_funds(account=account, amount=TEST_ACCOUNT_FUNDS, actor=None)
    return account


@pytest.fixture
def buyer(db) -> Account:
    return _account("lumen", Organization.Kind.STARTUP)


@pytest.fixture
def seller(db) -> Account:
    return _account("northwind", Organization.Kind.PROVIDER)


@pytest.fixture
def maker(db) -> Account:
    return _account("helix", Organization.Kind.TRADING_FIRM)


@pytest.fixture
def fourth(db) -> Account:
    return _account("quanta", Organization.Kind.STARTUP)


@pytest.fixture
def external_matcher(settings):
    """Orders are accepted as NEW and left for a ``Matcher`` the test runs itself."""
    settings.EXCHANGE_MATCHER_MODE = "external"
    return settings


@pytest.fixture
def var_dir(settings, tmp_path):
    """Matcher lock files go to a directory of the test's own, not the workspace's ``var/``."""
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("needs SQLite")


@pytest.fixture
def listing(sku, region, seller) -> Instrument:
    """The seller's block of 16 GPUs (lots of 8) for 40 days, listed for resale."""
    starts = datetime.combine(listing_month(), time.min, tzinfo=UTC) + timedelta(days=10)
    reservation = capacity_register(
        provider=seller.organization,
        holder=seller.organization,
        cluster="nw-ashburn-b",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=starts + timedelta(days=40),
        gpus=16,
        interconnect="infiniband",
        contiguous_block_gpus=8,
    )
    return resale_list(reservation=reservation)


@pytest.fixture
def redis_url():
    """A Redis server of the test's own (skipped where Redis is not installed)."""
    with redis_server() as url:
        yield url
