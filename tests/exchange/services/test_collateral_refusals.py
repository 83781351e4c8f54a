"""What a customer reads when the ledger refuses an order's collateral: dollars and GPU-hours,
never the ledger's own message (its account codes, hold ids and micro-dollar amounts, for
staff)."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from exchange.errors import OrderRejectCode
from exchange.models import ApiKey, Order, OrderRejection
from exchange.services import collateral
from exchange.services.api_keys import api_key_create
from exchange.services.ledger_accounts import cash_account, cash_account_code
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account as LedgerAccount
from ledger.models import Hold
from ledger.services import hold_create

pytestmark = pytest.mark.django_db

PRICE = Decimal("2.450")


def order_needs(account, instrument, quantity=3):
    terms = collateral.terms_for(instrument, "buy", PRICE)
    return collateral.needs_for(
        account,
        instrument,
        "buy",
        PRICE,
        quantity,
        terms.margin_per_contract,
        terms.maker_fee_rate,
        terms.taker_fee_rate,
    )


def dollars(micros: int) -> str:
    """Micro-dollars as a customer reads them, computed here: cents when exact."""
    amount = Decimal(micros) / 10**6
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents:,}" if cents == amount else f"{amount.quantize(Decimal('0.000001')):,}"


def test_a_hold_refused_for_cash_the_account_has_again_says_dollars_not_ledger_codes(future, buyer):
    # given the ledger's refusal of the buyer's cash, as it comes when other holds took it
    # (its message names the cash account's ledger code and a micro-dollar count), and the
    # cash available again by the time the refusal is named (those holds released)
    cash = cash_account(buyer)
    with pytest.raises(LedgerError) as refused:
        hold_create(
            key="elsewhere",
            account=cash,
            side=Hold.Side.DEBIT,
            amount=cash.available + 1,
            description="More than the account has",
        )
    assert cash_account_code(buyer) in refused.value.message
    needs = order_needs(buyer, future)

    # when
    rejection = collateral.shortfall(needs, refused.value)

    # then the order's need in dollars, under the code an order short of cash has
    assert rejection.code == OrderRejectCode.INSUFFICIENT_FUNDS
    assert rejection.field == "quantity"
    assert rejection.message == (
        f"The order needs {dollars(needs[0].amount)} USD available, which the account did not "
        "have when the order was placed; try again."
    )
    assert "trading:" not in rejection.message
    assert str(needs[0].amount) not in rejection.message


def test_an_order_on_a_closed_cash_ledger_account_is_refused_in_words_through_the_api(
    future, buyer, row_counts
):
    # given the buyer's cash ledger account closed (by staff, in the ledger's admin) while
    # it has the cash the order needs
    cash = cash_account(buyer)
    LedgerAccount.objects.filter(pk=cash.pk).update(closed=True)
    [need] = order_needs(buyer, future)
    assert cash.available >= need.amount
    key = api_key_create(organization=buyer.organization, name="t", scopes=[ApiKey.Scope.TRADE])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.token}")
    before = row_counts()

    # when it bids
    response = client.post(
        "/api/v1/orders/",
        {"instrument": future.symbol, "side": "buy", "quantity": 3, "price": str(PRICE)},
        format="json",
    )

    # then the refusal keeps the collateral code and says what could not be held, in dollars;
    # nothing of the ledger's message ("Account trading:<id>:cash:USD is closed.")
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("RISK_INSUFFICIENT_FUNDS", "quantity")
    assert error["message"] == (
        f"The order's collateral ({dollars(need.amount)} USD) could not be held. "
        "The account is closed."
    )
    assert not Order.objects.filter(account=buyer).exists()
    assert row_counts().orders == before.orders
    assert OrderRejection.objects.get().message == error["message"]


def test_an_entitlement_short_is_named_in_gpu_hours_with_thousands_separators(
    listing, seller, row_counts
):
    # given the listing's holder offering all 16 GPUs of its block, whose GPU-hours the
    # first offer holds
    from tests.exchange.support import place

    place(seller, listing, "sell", 16, "2.500")
    needs = collateral.needs_for(
        seller, listing, "sell", Decimal("2.500"), 8, 0, Decimal(0), Decimal(0)
    )
    ledger_refusal = LedgerError(LedgerErrorCode.CREDITS_EXCEED_DEBITS, "not for customers")

    # when a hold of 8 more is refused
    rejection = collateral.shortfall(needs, ledger_refusal)

    # then GPU-hours, by the entitlement's name
    assert rejection.code == OrderRejectCode.INSUFFICIENT_ENTITLEMENT
    first = needs[0]
    assert rejection.message.startswith(f"The order needs {first.amount:,} {first.what}; ")
    assert rejection.message.endswith("the account has 0 available.")
    assert "not for customers" not in rejection.message
