"""Registering reserved capacity issues its GPU-hours, by month, to the block's holder."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from exchange.errors import CatalogError, CatalogErrorCode
from exchange.models import AuditEntry, Interconnect, Organization, ReservedCapacity
from exchange.selectors.resale import blocks_of
from exchange.services.capacity import MonthHours, capacity_register, hours_by_month
from exchange.services.participants import organization_create
from ledger.models import Account as LedgerAccount
from ledger.models import Entry
from ledger.selectors import ledger_problems

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider():
    return organization_create(slug="northwind", name="Northwind", kind=Organization.Kind.PROVIDER)


@pytest.fixture
def holder():
    return organization_create(slug="lumen", name="Lumen Labs", kind=Organization.Kind.STARTUP)


def register(provider, holder, sku, region, **changes):
    """A block of 8 GPUs from 2097-01-15 to 2097-03-10 12:00: a term still to come (2097 has
    the months of 2027, whose split ``test_hours_are_split_by_utc_month`` checks)."""
    arguments = {
        "provider": provider,
        "holder": holder,
        "cluster": "nw-ashburn-h100-a",
        "sku": sku,
        "region": region,
        "starts_at": datetime(2097, 1, 15, tzinfo=UTC),
        "ends_at": datetime(2097, 3, 10, 12, tzinfo=UTC),
        "gpus": 8,
        "interconnect": Interconnect.INFINIBAND,
        "contiguous_block_gpus": 8,
    }
    return capacity_register(**{**arguments, **changes})


def test_hours_are_split_by_utc_month():
    assert hours_by_month(
        datetime(2027, 1, 15, tzinfo=UTC), datetime(2027, 3, 10, 12, tzinfo=UTC)
    ) == [
        MonthHours(date(2027, 1, 1), 17 * 24),
        MonthHours(date(2027, 2, 1), 28 * 24),
        MonthHours(date(2027, 3, 1), 9 * 24 + 12),
    ]


def test_hours_across_a_year_end_and_from_another_time_zone():
    # 2026-12-31 22:00 at UTC+2 is 20:00 UTC.
    starts = datetime(2026, 12, 31, 22, tzinfo=timezone(timedelta(hours=2)))
    ends = datetime(2027, 1, 1, 5, tzinfo=UTC)

    assert hours_by_month(starts, ends) == [
        MonthHours(date(2026, 12, 1), 4),
        MonthHours(date(2027, 1, 1), 5),
    ]


def test_the_longest_term_accepted_has_every_hour_in_its_months():
    """A term of the most registration accepts (366 days a year, 6 years) starting late in a
    month touches 74 calendar months: every one of its hours is in one of them."""
    # given the longest term, from the last hour of a January
    starts = datetime(2097, 1, 31, 23, tzinfo=UTC)
    ends = starts + timedelta(days=366 * 6)

    # when it is split by month
    months = hours_by_month(starts, ends)

    # then from January 2097 to February 2103, and no hour is lost
    assert (months[0], months[-1].month) == (MonthHours(date(2097, 1, 1), 1), date(2103, 2, 1))
    assert len(months) == 6 * 12 + 2
    assert months[-1].hours == (ends - datetime(2103, 2, 1, tzinfo=UTC)) // timedelta(hours=1)
    assert sum(month.hours for month in months) == (ends - starts) // timedelta(hours=1)


def test_registering_the_longest_term_issues_all_of_its_gpu_hours(provider, holder, sku, region):
    # given the longest term accepted, from the last hour of a January
    starts = datetime(2097, 1, 31, 23, tzinfo=UTC)
    ends = starts + timedelta(days=366 * 6)

    # when it is registered
    register(provider, holder, sku, region, starts_at=starts, ends_at=ends)

    # then its 8 GPUs' hours are all issued, the last month's too
    held = {
        row.commodity.code: row.balance
        for row in LedgerAccount.objects.filter(
            owner__startswith="exchange.account:"
        ).select_related("commodity")
    }
    code = f"GPUH-{sku.code}-{region.code}"
    assert sum(held.values()) == 8 * ((ends - starts) // timedelta(hours=1))
    last_month_hours = (ends - datetime(2103, 2, 1, tzinfo=UTC)) // timedelta(hours=1)
    assert held[f"{code}-210302"] == 8 * last_month_hours
    assert ledger_problems() == []


def test_registration_issues_each_months_gpu_hours_to_the_holder(provider, holder, sku, region):
    # when
    reservation = register(provider, holder, sku, region)

    # then the holder's main account holds GPU-hours per month, exactly, and the books balance
    held = {
        row.commodity.code: row.balance
        for row in LedgerAccount.objects.filter(
            owner__startswith="exchange.account:"
        ).select_related("commodity")
    }
    code = f"GPUH-{sku.code}-{region.code}"
    assert held == {
        f"{code}-209701": 8 * 17 * 24,
        f"{code}-209702": 8 * 28 * 24,
        f"{code}-209703": 8 * (9 * 24 + 12),
    }
    issued = LedgerAccount.objects.get(code=f"exchange:gpuh-issued:{code}-209702")
    assert issued.balance == -8 * 28 * 24
    assert ledger_problems() == []
    audit = AuditEntry.objects.get(action="capacity.register")
    assert audit.target_id == str(reservation.pk)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starts_at": datetime(2097, 1, 15)}, "starts_at"),  # noqa: DTZ001 - naive on purpose.
        ({"starts_at": datetime(2097, 1, 15, 0, 30, tzinfo=UTC)}, "starts_at"),
        ({"ends_at": datetime(2097, 1, 15, tzinfo=UTC)}, "ends_at"),
        ({"ends_at": datetime(2104, 1, 15, tzinfo=UTC)}, "ends_at"),
        # A term already over issues GPU-hours nobody can use.
        (
            {
                "starts_at": datetime(2020, 1, 1, tzinfo=UTC),
                "ends_at": datetime(2020, 2, 1, tzinfo=UTC),
            },
            "ends_at",
        ),
        ({"gpus": 0}, "gpus"),
        ({"contiguous_block_gpus": 16}, "contiguous_block_gpus"),
        # The reservation is made of whole contiguous blocks.
        ({"gpus": 10, "contiguous_block_gpus": 4}, "contiguous_block_gpus"),
        ({"gpus": 12, "contiguous_block_gpus": 8}, "contiguous_block_gpus"),
        ({"cluster": "  "}, "cluster"),
    ],
)
def test_invalid_capacity_is_a_named_refusal_that_writes_nothing(
    provider, holder, sku, region, changes, field
):
    with pytest.raises(CatalogError) as refused:
        register(provider, holder, sku, region, **changes)

    assert (refused.value.code, refused.value.field) == (CatalogErrorCode.INVALID_CAPACITY, field)
    assert not ReservedCapacity.objects.exists()
    assert not Entry.objects.exists()


def test_a_term_ended_this_hour_is_refused_and_one_running_to_the_next_is_accepted(
    provider, holder, sku, region
):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    with pytest.raises(CatalogError) as over:
        register(provider, holder, sku, region, starts_at=hour - timedelta(days=2), ends_at=hour)
    running = register(
        provider,
        holder,
        sku,
        region,
        starts_at=hour - timedelta(days=2),
        ends_at=hour + timedelta(hours=1),
    )

    assert (over.value.code, over.value.field) == (CatalogErrorCode.INVALID_CAPACITY, "ends_at")
    assert "over" in over.value.message
    assert ReservedCapacity.objects.get() == running


def test_a_block_dividing_the_gpus_is_accepted(provider, holder, sku, region):
    reservation = register(provider, holder, sku, region, gpus=12, contiguous_block_gpus=4)

    assert (reservation.gpus, reservation.contiguous_block_gpus) == (12, 4)


@pytest.mark.parametrize(
    "kind", [kind for kind in Organization.Kind.values if kind != Organization.Kind.PROVIDER]
)
def test_only_a_provider_registers_capacity(holder, sku, region, kind):
    # given an organization that is not a provider
    other = organization_create(slug="other", name="Other", kind=kind)

    # when it registers a block
    with pytest.raises(CatalogError) as refused:
        register(other, holder, sku, region)

    # then it is refused by name, and nothing is written
    assert (refused.value.code, refused.value.field) == (
        CatalogErrorCode.PROVIDER_REQUIRED,
        "provider",
    )
    assert not ReservedCapacity.objects.exists()
    assert not Entry.objects.exists()
    assert not AuditEntry.objects.filter(action="capacity.register").exists()


def test_no_gpu_hours_are_issued_to_the_exchange_operator(provider, sku, region):
    # given the exchange operator's own organization
    operator = organization_create(slug="gpux", name="GPU Exchange", kind="exchange")

    # when a provider registers a block held by it
    with pytest.raises(CatalogError) as refused:
        register(provider, operator, sku, region)

    # then it is refused by name, and nothing is written: no block, no GPU-hours, no audit row
    assert (refused.value.code, refused.value.field) == (
        CatalogErrorCode.HOLDER_IS_OPERATOR,
        "holder",
    )
    assert not ReservedCapacity.objects.exists()
    assert not Entry.objects.exists()
    assert not LedgerAccount.objects.filter(code__contains=":gpuh:").exists()
    assert not AuditEntry.objects.filter(action="capacity.register").exists()


def test_a_block_registered_during_its_term_issues_only_its_hours_from_now_on(
    provider, holder, sku, region
):
    # given a block of 4 GPUs that started two days ago and ends two hours after this one
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    reservation = register(
        provider,
        holder,
        sku,
        region,
        starts_at=hour - timedelta(days=2),
        ends_at=hour + timedelta(hours=3),
        gpus=4,
        contiguous_block_gpus=4,
    )

    # then its whole term is on record, but only this hour and the next two are issued
    assert reservation.starts_at == hour - timedelta(days=2)
    held = LedgerAccount.objects.filter(owner__startswith="exchange.account:")
    assert sum(row.balance for row in held) == 4 * 3
    audit = AuditEntry.objects.get(action="capacity.register")
    assert sum(audit.after["issued_gpu_hours"].values()) == 4 * 3
    assert ledger_problems() == []
    # and the capacity page says what was issued, not what the whole term would hold: its
    # hours are those issued (the term's beside), and GPU-hours are GPUs x those
    (block,) = blocks_of(holder)
    assert (block.hours, block.term_hours, block.gpu_hours) == (3, 2 * 24 + 3, 4 * 3)
