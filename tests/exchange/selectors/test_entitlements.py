"""Reads of the GPU-hour entitlements an account holds."""

from datetime import UTC, date, datetime, timedelta

from exchange import calendar
from exchange.selectors.account import balances_of
from exchange.selectors.entitlements import entitlements_of
from exchange.services.capacity import capacity_register
from exchange.services.ledger_accounts import (
    entitlement,
    entitlement_account,
    entitlement_issuance_account,
)
from ledger.services import entry_post

MANY = 520  # More rows than the list was once cut to (500).


def test_accounts_at_zero_do_not_crowd_out_what_the_account_holds(seller, sku, region):
    # given an account with more GPU-hour accounts at 0 than a page of rows, under codes
    # sorting first (accounts stay once opened: a short delivering a future has its month's
    # opened, GPU-hours sold or delivered leave it at 0)
    for index in range(MANY):
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


def test_every_holding_is_listed_and_in_the_balances_however_many(seller, region):
    # given an account holding GPU-hours in more months than the list was once cut to: a
    # provider's book of SKUs, regions and months runs to hundreds of rows
    months = [calendar.add_months(date(2000, 1, 1), index) for index in range(MANY)]
    postings = []
    for month in months:
        commodity = entitlement("A100", region.code, month)
        postings += [
            (entitlement_account(seller, commodity), 8),
            (entitlement_issuance_account(commodity), -8),
        ]
    for start in range(0, len(postings), 100):
        entry_post(
            key=f"test:many:{start}",
            description="GPU-hours in many months",
            postings=postings[start : start + 100],
        )

    # when its entitlements and its balances are read
    held = entitlements_of(seller)
    balances = balances_of(seller)

    # then every month is there, in both, none cut off
    assert [holding.month for holding in held] == months
    assert sum(holding.gpu_hours for holding in held) == 8 * MANY
    assert {balance.asset for balance in balances[1:]} == {holding.code for holding in held}
