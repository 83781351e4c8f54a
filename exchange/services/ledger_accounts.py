"""Where the exchange keeps its money and its customers' money in the ledger.

The ledger knows nothing about markets; this module names the commodities and accounts the
exchange uses, and opens them on first use (``account_open`` is idempotent).

Units and rounding: USD is held in micro-dollars (scale 6). Every cash amount the exchange
computes is a price in $/GPU-hr (at most 6 decimals, a tick multiple) times whole GPU-hours and
contracts, so it is exact in micro-dollars; ``usd_to_micros`` refuses anything that is not,
rather than round. Rounding, where a rule needs it (fees), is done by the rule itself.

Accounts, from the exchange's point of view:
- ``trading:<account id>:cash:USD`` (liability, debits must not exceed credits): what the
  exchange owes a trading account; a customer can only spend or withdraw what it has;
- ``exchange:stripe:USD`` (asset): money held at Stripe;
- ``exchange:test-funds:USD`` (equity): the source of test funds when no Stripe keys are set;
- ``exchange:fees:USD`` (income): maker and taker fees.
"""

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial
from typing import cast

from django.db import transaction

from exchange.models import Account
from exchange.units import usd_figure
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account as LedgerAccount
from ledger.models import Commodity
from ledger.services import account_open, commodity_define
from statements import Select

# The order path looks accounts up by code: a prepared statement (see statements).
LEDGER_ACCOUNT_BY_CODE = Select([LedgerAccount], "{t0}", "WHERE {t0}.code = %s")
LEDGER_ACCOUNTS_BY_CODES = Select([LedgerAccount], "{t0}", "WHERE {t0}.code IN ({values})")

USD_CODE = "USD"
USD_SCALE = 6
MICROS_PER_USD: int = 10**USD_SCALE


class CashAmountError(ValueError):
    pass


def usd() -> Commodity:
    return commodity_define(
        code=USD_CODE, name="US dollar", kind=Commodity.Kind.CURRENCY, scale=USD_SCALE
    )


def usd_to_micros(amount: Decimal) -> int:
    """Dollars as integer micro-dollars; refuses fractions of a micro-dollar (never rounds)."""
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise CashAmountError(f"{amount} USD is not a whole number of micro-dollars")
    return int(micros)


def micros_to_usd(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-USD_SCALE)


def usd_text(micros: int) -> str:
    """Micro-dollars as a customer reads them: ``2,790.50 USD`` (``units.usd_figure``)."""
    return f"{usd_figure(micros_to_usd(micros))} USD"


# What a refusal of the ledger means to a customer. The ledger's own message is for staff: it
# names ledger account codes (``trading:12:cash:USD``), hold and entry ids, and amounts in
# each commodity's smallest unit (micro-dollars). A service that calls the ledger turns the
# refusals it expects into its own error, saying in dollars and GPU-hours what is missing;
# this is what is said of one that reaches a customer all the same (the API's last resort),
# under the ledger's code, which stays the stable one.
LEDGER_REFUSAL_TEXT: dict[LedgerErrorCode, str] = {
    LedgerErrorCode.AMOUNT_INVALID: "The amount is beyond what the exchange can record.",
    LedgerErrorCode.INSUFFICIENT_FUNDS: "The account does not have the cash available for this.",
    LedgerErrorCode.CREDITS_EXCEED_DEBITS: (
        "The account does not have the GPU-hours available for this."
    ),
    LedgerErrorCode.DEBITS_EXCEED_CREDITS: "The account does not have enough available for this.",
    LedgerErrorCode.ACCOUNT_CLOSED: "The account is closed.",
    LedgerErrorCode.HOLD_NOT_PENDING: "What was set aside for this is no longer set aside.",
    LedgerErrorCode.HOLD_AMOUNT_EXCEEDED: "This takes more than was set aside for it.",
    LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT: (
        "This was recorded already, with other details."
    ),
}
LEDGER_REFUSAL_TEXT_OTHER = "The exchange could not record this; nothing was done."


def ledger_refusal_text(error: LedgerError) -> str:
    """``error`` (a refusal of the ledger) in words for a customer: no account code, hold id or
    micro-dollar amount."""
    return LEDGER_REFUSAL_TEXT.get(error.code, LEDGER_REFUSAL_TEXT_OTHER)


def owner_of(account: Account) -> str:
    """The ledger's owner reference for everything a trading account holds."""
    return f"exchange.account:{account.pk}"


def cash_account_code(account: Account) -> str:
    return f"trading:{account.pk}:cash:{USD_CODE}"


def cash_account(account: Account) -> LedgerAccount:
    """The ledger account holding ``account``'s dollars (one query once it exists).

    Opening it also names it on the trading account (``Account.cash_ledger_account``), in the
    same transaction."""
    found = cast(
        list[tuple[LedgerAccount]], LEDGER_ACCOUNT_BY_CODE.rows([cash_account_code(account)])
    )
    if found:
        return found[0][0]
    opened = account_open(
        code=cash_account_code(account),
        owner=owner_of(account),
        commodity=usd(),
        type=LedgerAccount.Type.LIABILITY,
        limit=LedgerAccount.Limit.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )
    Account.objects.filter(pk=account.pk).update(cash_ledger_account=opened)
    # Named on this instance only once the ledger account exists for good. A transaction that
    # rolls back (an order refused for want of funds) takes the row with it, and the instance
    # may outlive the transaction (the API keeps callers' accounts for a moment): naming a row
    # that is gone sent the next order's hold to an account that does not exist (a 500).
    transaction.on_commit(partial(setattr, account, "cash_ledger_account_id", opened.pk))
    return opened


def cash_account_reference(account: Account) -> LedgerAccount:
    """The cash ledger account as a reference for holds: only its id is set when the trading
    account, as read, names it; otherwise ``cash_account``."""
    if account.cash_ledger_account_id is not None:
        return LedgerAccount(pk=account.cash_ledger_account_id, code=cash_account_code(account))
    return cash_account(account)


def house_account_code(name: str) -> str:
    return f"exchange:{name}:{USD_CODE}"


def _house_account(name: str, type: str) -> LedgerAccount:
    return account_open(code=house_account_code(name), owner="exchange", commodity=usd(), type=type)


def stripe_account() -> LedgerAccount:
    return _house_account("stripe", LedgerAccount.Type.ASSET)


def test_funds_account() -> LedgerAccount:
    return _house_account("test-funds", LedgerAccount.Type.EQUITY)


def fees_account() -> LedgerAccount:
    return _house_account("fees", LedgerAccount.Type.INCOME)


# GPU-hour entitlements: the right to use one GPU for one hour of a given SKU, region and month.
# Counted in whole GPU-hours (scale 0). Issued when reserved capacity is registered: the holder's
# account is debited, the issuance account (equity) credited, so outstanding entitlements of a
# commodity are the issuance account's credit balance.


def entitlement_code(sku_code: str, region_code: str, month: date) -> str:
    return f"GPUH-{sku_code}-{region_code}-{month:%Y%m}"


def entitlement_name(sku_code: str, region_code: str, month: date) -> str:
    return f"GPU-hours of {sku_code} in {region_code}, {month:%B %Y}"


# SKU and region codes are upper-case letters and digits, so the hyphens separate the parts.
ENTITLEMENT_CODE = re.compile(r"GPUH-([A-Z0-9]+)-([A-Z0-9]+)-([1-9][0-9]{3})(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class EntitlementParts:
    sku_code: str
    region_code: str
    month: date  # The first day of the month.


def entitlement_parts(code: str) -> EntitlementParts | None:
    """The SKU, region and month of an entitlement commodity code; None for any other code."""
    match = ENTITLEMENT_CODE.fullmatch(code)
    if match is None:
        return None
    sku_code, region_code, year, month = match.groups()
    return EntitlementParts(sku_code, region_code, date(int(year), int(month), 1))


def entitlement(sku_code: str, region_code: str, month: date) -> Commodity:
    return commodity_define(
        code=entitlement_code(sku_code, region_code, month),
        name=entitlement_name(sku_code, region_code, month),
        kind=Commodity.Kind.ENTITLEMENT,
        scale=0,
    )


def entitlement_account_code(account: Account, commodity_code: str) -> str:
    return f"trading:{account.pk}:gpuh:{commodity_code}"


def entitlement_account(account: Account, commodity: Commodity) -> LedgerAccount:
    """``account``'s GPU-hours of ``commodity``; it can hand over only what it holds."""
    return account_open(
        code=entitlement_account_code(account, commodity.code),
        owner=owner_of(account),
        commodity=commodity,
        type=LedgerAccount.Type.ASSET,
        limit=LedgerAccount.Limit.CREDITS_MUST_NOT_EXCEED_DEBITS,
    )


def entitlement_issuance_account(commodity: Commodity) -> LedgerAccount:
    return account_open(
        code=f"exchange:gpuh-issued:{commodity.code}",
        owner="exchange",
        commodity=commodity,
        type=LedgerAccount.Type.EQUITY,
    )


# Positions in futures and options: one commodity per instrument (its symbol), counted in whole
# contracts. A trade debits the buyer's position account and credits the seller's, so a long
# position is a debit balance and open interest is the sum of the debit balances.
#
# Alongside each position, two USD accounts per trading account and instrument:
# - ``cost``: a memo of the value the position was traded at, debited by the buyer and credited
#   by the seller at the trade price (price x contracts x GPU-hours). The two sides of every
#   trade cancel, so the cost accounts of an instrument sum to zero. An account's profit or loss
#   on the instrument is ``position x mark x GPU-hours - cost``; once flat, it is ``-cost``.
# - ``margin``: initial margin set aside from cash for the open position (a liability: the
#   exchange returns it as the position closes).


def position(instrument_symbol: str) -> Commodity:
    return commodity_define(
        code=instrument_symbol,
        name=f"Contracts of {instrument_symbol}",
        kind=Commodity.Kind.POSITION,
        scale=0,
    )


def position_account_code(account: Account, instrument_symbol: str) -> str:
    return f"trading:{account.pk}:position:{instrument_symbol}"


def position_account(account: Account, instrument_symbol: str) -> LedgerAccount:
    return account_open(
        code=position_account_code(account, instrument_symbol),
        owner=owner_of(account),
        commodity=position(instrument_symbol),
        type=LedgerAccount.Type.ASSET,
    )


def cost_account_code(account: Account, instrument_symbol: str) -> str:
    return f"trading:{account.pk}:cost:{instrument_symbol}:{USD_CODE}"


def cost_account(account: Account, instrument_symbol: str) -> LedgerAccount:
    return account_open(
        code=cost_account_code(account, instrument_symbol),
        owner=owner_of(account),
        commodity=usd(),
        type=LedgerAccount.Type.ASSET,
    )


def margin_account_code(account: Account, instrument_symbol: str) -> str:
    return f"trading:{account.pk}:margin:{instrument_symbol}:{USD_CODE}"


def margin_account(account: Account, instrument_symbol: str) -> LedgerAccount:
    return account_open(
        code=margin_account_code(account, instrument_symbol),
        owner=owner_of(account),
        commodity=usd(),
        type=LedgerAccount.Type.LIABILITY,
        limit=LedgerAccount.Limit.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )


def deficit_account_code(account: Account) -> str:
    return f"trading:{account.pk}:deficit:{USD_CODE}"


def deficit_account(account: Account) -> LedgerAccount:
    """What ``account`` owes the exchange: losses it could not pay from cash or margin (an asset
    of the exchange; it never goes below zero)."""
    return account_open(
        code=deficit_account_code(account),
        owner=owner_of(account),
        commodity=usd(),
        type=LedgerAccount.Type.ASSET,
        limit=LedgerAccount.Limit.CREDITS_MUST_NOT_EXCEED_DEBITS,
    )
