"""A resting order's holds shrink to what its open quantity needs when it needs less without a
fill taking it: part cancelled by self-trade prevention's decrement, or a replace to a lower
quantity or price. Until then the account's available cash (or GPU-hours) stayed short by the
difference until the order left the book."""

from decimal import Decimal

from django.core.management import call_command

from exchange.matcher.runtime import Matcher
from exchange.models import OrderHold
from exchange.services import collateral, orders
from exchange.services.ledger_accounts import cash_account
from exchange.services.orders import order_cancel, order_replace
from ledger.models import Account as LedgerAccount
from ledger.models import Hold
from tests.exchange.support import place


def pending(account) -> int:
    return cash_account(account).debits_pending


def holds_of(order) -> list[Hold]:
    return list(Hold.objects.filter(pk__in=OrderHold.objects.filter(order=order).values("hold_id")))


def needs(order, instrument, quantity, price) -> int:
    [part] = collateral.amounts_for(
        instrument,
        order.side,
        Decimal(price),
        quantity,
        order.margin_per_contract,
        order.maker_fee_rate,
        order.taker_fee_rate,
    )
    return part.amount


def test_a_self_trade_decrement_releases_what_the_cancelled_part_held(future, buyer):
    # given a sell of 10 resting, holding margin and fee for 10
    own = place(buyer, future, "sell", 10, "2.50")
    assert pending(buyer) == needs(own, future, 10, "2.50")

    # when the same account's buy of 9 decrements it (STP) instead of trading
    place(buyer, future, "buy", 9, "2.50", self_trade_prevention="decrement")

    # then the sell rests with 1 and holds what 1 needs, no more
    own.refresh_from_db()
    assert (own.open_quantity, own.cancelled_quantity) == (1, 9)
    assert pending(buyer) == needs(own, future, 1, "2.50")
    [hold] = holds_of(own)
    assert (hold.status, hold.remaining, hold.released) == (
        Hold.Status.PENDING,
        needs(own, future, 1, "2.50"),
        needs(own, future, 9, "2.50"),
    )
    # and cancelling the rest releases the rest
    order_cancel(order=own)
    assert pending(buyer) == 0
    call_command("ledger_check")


def test_a_replace_to_fewer_contracts_or_a_lower_price_holds_only_what_it_needs(call, buyer):
    # given an option buy of 10 at 0.300 (premium and fee held)
    order = place(buyer, call, "buy", 10, "0.300")
    assert pending(buyer) == needs(order, call, 10, "0.300")

    # when it is replaced to 4 at the same price, then to 4 at 0.200
    order = order_replace(order=order, price=Decimal("0.300"), quantity=4)
    assert pending(buyer) == needs(order, call, 4, "0.300")
    order = order_replace(order=order, price=Decimal("0.200"), quantity=4)

    # then it holds the premium and fee of 4 at 0.200
    assert pending(buyer) == needs(order, call, 4, "0.200")
    call_command("ledger_check")


def test_a_replace_that_needs_more_still_holds_exactly_what_it_needs(future, buyer):
    order = place(buyer, future, "buy", 4, "2.40")

    order = order_replace(order=order, price=Decimal("2.40"), quantity=7)
    order = order_replace(order=order, price=Decimal("2.40"), quantity=5)

    assert pending(buyer) == needs(order, future, 5, "2.40")
    # The order's hold and the one the raise added for its 3 more, trimmed by the lowering
    # (the newest first): 4 + 1.
    held = OrderHold.objects.filter(order=order, active=True, hold__status="pending")
    assert sorted(row.hold.remaining for row in held) == [
        needs(order, future, 1, "2.40"),
        needs(order, future, 4, "2.40"),
    ]
    call_command("ledger_check")


def test_a_resale_sell_replaced_to_fewer_gpus_releases_their_gpu_hours(listing, seller):
    # given the holder offering its 16 GPUs (two lots of 8)
    order = place(seller, listing, "sell", 16, "2.30")
    holds = [hold for hold in holds_of(order) if hold.status == Hold.Status.PENDING]
    held = {hold.account_id: hold.remaining for hold in holds}

    # when it offers 8 instead
    order_replace(order=order, price=Decimal("2.30"), quantity=8)

    # then each month's entitlement hold keeps half
    for hold in holds:
        hold.refresh_from_db()
        assert hold.remaining == held[hold.account_id] // 2
        account = LedgerAccount.objects.get(pk=hold.account_id)
        assert getattr(account, f"{hold.side}s_pending") == hold.remaining
    call_command("ledger_check")


def test_with_an_external_matcher_the_trim_commits_with_the_batch(
    future, buyer, external_matcher, var_dir
):
    own = place(buyer, future, "sell", 6, "2.50")
    place(buyer, future, "buy", 4, "2.50", self_trade_prevention="decrement")
    matcher = Matcher()

    matcher.process_pending()

    own.refresh_from_db()
    assert own.open_quantity == 2
    assert pending(buyer) == needs(own, future, 2, "2.50")
    # and cancelling the rest releases what is left
    order_cancel(order=own)
    matcher.process_pending()
    assert pending(buyer) == 0
    call_command("ledger_check")


def test_a_partly_filled_maker_holds_only_what_its_open_quantity_needs(future, buyer, seller):
    # given a buy of 10 resting (holding the taker fee, the higher, on each contract)
    order = place(buyer, future, "buy", 10, "2.45")

    # when 4 fill against it as maker (paying the 0.20 maker fee, not the 0.50 held)
    place(seller, future, "sell", 4, "2.45")

    # then it holds margin and fee for the 6 still open, nothing for the fee not paid
    order.refresh_from_db()
    assert order.open_quantity == 6
    assert pending(buyer) == needs(order, future, 6, "2.45")
    call_command("ledger_check")


def test_a_partly_filled_closing_order_releases_the_margin_it_did_not_take(future, buyer, seller):
    # given a long of 5, and a sell of 8 resting: 5 of it would close, taking no margin
    place(seller, future, "sell", 5, "2.45")
    place(buyer, future, "buy", 5, "2.45")
    order = place(buyer, future, "sell", 8, "2.50")

    # when 5 fill (closing the long)
    place(seller, future, "buy", 5, "2.50")

    # then the 3 open hold what 3 need, not also the margin of the 5 that closed
    order.refresh_from_db()
    assert order.open_quantity == 3
    assert pending(buyer) == needs(order, future, 3, "2.50")
    call_command("ledger_check")


def test_an_option_buyer_filled_below_its_price_keeps_only_what_the_rest_needs(call, buyer, seller):
    # given 3 offered at 0.250
    place(seller, call, "sell", 3, "0.250")

    # when a buy of 10 at 0.300 takes them (paying 0.250) and rests with 7
    order = place(buyer, call, "buy", 10, "0.300")

    # then it holds the premium and fee of 7 at 0.300, not also the 0.050 it did not pay on 3
    assert order.open_quantity == 7
    assert pending(buyer) == needs(order, call, 7, "0.300")
    call_command("ledger_check")


def test_queued_replaces_that_relied_on_holds_a_trim_lowered_still_apply(
    future, buyer, external_matcher, var_dir
):
    # given a buy of 10 resting
    order = place(buyer, future, "buy", 10, "2.40")
    matcher = Matcher()
    matcher.process_pending()

    # when it is replaced to 5, then to 8, before the matcher runs (each accepted on the holds
    # of 10, so bringing none of its own)
    order_replace(order=order, price=Decimal("2.40"), quantity=5)
    order_replace(order=order, price=Decimal("2.40"), quantity=8)
    matcher.process_pending()

    # then both apply: the trim after the first left 5's worth, and the second holds the rest
    order.refresh_from_db()
    assert (order.open_quantity, order.reject_code) == (8, "")
    assert pending(buyer) == needs(order, future, 8, "2.40")
    call_command("ledger_check")


def test_a_replace_back_up_after_a_self_trade_decrement_applies(
    future, buyer, external_matcher, var_dir
):
    own = place(buyer, future, "sell", 10, "2.50")
    matcher = Matcher()
    matcher.process_pending()
    place(buyer, future, "buy", 9, "2.50", self_trade_prevention="decrement")
    order_replace(order=own, price=Decimal("2.50"), quantity=10)

    matcher.process_pending()

    own.refresh_from_db()
    assert own.open_quantity == 10
    assert pending(buyer) == needs(own, future, 10, "2.50")
    call_command("ledger_check")


def test_a_replace_whose_top_up_the_account_cannot_hold_is_refused_alone(
    future, seller, external_matcher, var_dir
):
    from exchange.models import OrderCommand
    from exchange.services.collateral import amounts_for, terms_for
    from exchange.services.funding import deposit_test_funds
    from exchange.services.participants import account_main, organization_create

    # given an account with cash for a buy of 10 and one dollar more, the buy resting
    poor = account_main(organization_create(slug="sprout", name="Sprout", kind="startup"))
    terms = terms_for(future, "buy", Decimal("2.40"))
    [part] = amounts_for(
        future,
        "buy",
        Decimal("2.40"),
        10,
        terms.margin_per_contract,
        terms.maker_fee_rate,
        terms.taker_fee_rate,
    )
    deposit_test_funds(account=poor, amount=Decimal(part.amount + 10**6) / 10**6, actor=None)
    order = place(poor, future, "buy", 10, "2.40")
    matcher = Matcher()
    matcher.process_pending()

    # when a sell of 4 fills it, and a replace queued behind the sell asks for 10 open again
    # (accepted on the holds of 10, so bringing none)
    place(seller, future, "sell", 4, "2.40")
    order_replace(order=order, price=Decimal("2.40"), quantity=10)
    matcher.process_pending()

    # then the replace is refused: the account has nothing to hold 4 more contracts with
    order.refresh_from_db()
    assert (order.filled_quantity, order.open_quantity) == (4, 6)
    replace = OrderCommand.objects.filter(order=order, kind="replace").get()
    assert (replace.status, replace.reject_code) == ("rejected", "RISK_INSUFFICIENT_FUNDS")
    assert pending(poor) == needs(order, future, 6, "2.40")
    call_command("ledger_check")
    # and the refusal the waiting client gets says why, on the quantity (until 2026-12-07
    # only "The matcher refused the command (RISK_INSUFFICIENT_FUNDS).")
    refusal = orders._command_refused(order, replace.reject_code)
    assert (refusal.code, refusal.field) == ("RISK_INSUFFICIENT_FUNDS", "quantity")
    assert "available cash does not cover" in refusal.message
