"""Reads of the GPU-hour entitlements an account holds."""

from datetime import UTC, date, datetime, timedelta

from exchange import calendar
from exchange.selectors.entitlements import ENTITLEMENT_ROWS_MAX, entitlements_of
from exchange.services.capacity import capacity_register
from exchange.services.ledger_accounts import entitlement, entitlement_account


def test_accounts_at_zero_do_not_crowd_out_what_the_account_holds(seller, sku, region):
    # given an account with more GPU-hour accounts at 0 than a page of rows, under codes
    # sorting first (accounts stay once opened: a short delivering a future has its month's
    # opened, GPU-hours sold or delivered leave it at 0)
    for index in range(ENTITLEMENT_ROWS_MAX):
        month = calendar.add_months(date(2000, 1, 1), index)
        entitlement_account(seller, entitlement("A100", region.code, month))
    # and GPU-hours it holds now: a block of 2 GPUs for a day
    starts = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=40)
    capacity_register(
        provider=seller.organization,
        holder=seller.organization,
        cluster="nw-ashburn",
        sku=sku,
        region=region,
        starts_at=starts,
        ends_at=starts + timedelta(days=1),
        gpus=2,
        interconnect="infiniband",
        contiguous_block_gpus=1,
    )

    # when its entitlements are read
    held = entitlements_of(seller)

    # then what it holds is there, whatever it held before
    assert sum(holding.gpu_hours for holding in held) == 2 * 24
    assert {holding.sku_code for holding in held} == {sku.code}
