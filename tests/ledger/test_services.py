"""The ledger's services: entries, idempotency, refusals, holds, reversals, definitions."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ledger import services
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account, Commodity, Entry, Hold, HoldConsumption, Posting
from ledger.selectors import ledger_problems
from ledger.services import EntrySpec
from tests.ledger import support
from tests.ledger.support import CREDIT, DEBIT, Limit, move, refused, snapshot, unique

Code = LedgerErrorCode
T0 = datetime(2030, 1, 1, tzinfo=UTC)

pytestmark = pytest.mark.django_db


_NO_KEY = object()


def post(postings, key=_NO_KEY, **kwargs):
    return services.entry_post(
        key=unique("e") if key is _NO_KEY else key,
        description=kwargs.pop("description", "test"),
        postings=postings,
        **kwargs,
    )


# Entries.


def test_entry_posts_postings_and_totals(bank, alice, bob):
    entry = move(alice, bob, 300)
    assert sorted(entry.postings.values_list("account_id", "amount")) == sorted(
        [(alice.pk, 300), (bob.pk, -300)]
    )
    assert entry.postings.filter(commodity=alice.commodity).count() == 2
    assert support.totals(alice) == (300, 1000, 0, 0)
    assert support.totals(bob) == (0, 300, 0, 0)
    assert alice.available == 700 and bob.available == 300
    assert alice.balance == -700
    support.assert_consistent([bank, alice, bob])


def test_multi_commodity_entry(usd, gpuh, alice):
    seller = support.holding(gpuh)
    gpu_source = support.account(gpuh)
    buyer_gpu = support.holding(gpuh)
    seller_cash = support.cash(usd)
    post([(gpu_source, -10), (seller, 10)])
    post([(alice, 250), (seller_cash, -250), (seller, -10), (buyer_gpu, 10)])
    assert support.totals(seller) == (10, 10, 0, 0)
    assert buyer_gpu.available == 0 or support.totals(buyer_gpu) == (10, 0, 0, 0)
    support.assert_consistent([alice, seller, gpu_source, buyer_gpu, seller_cash])


def test_same_key_same_content_returns_same_entry(alice, bob):
    key = unique("k")
    first = move(alice, bob, 100, key=key)
    before = snapshot()
    again = services.entry_post(key=key, description="move", postings=[(bob, -100), (alice, 100)])
    assert again.pk == first.pk
    assert snapshot() == before


def test_same_key_different_content_is_refused(alice, bob):
    key = unique("k")
    move(alice, bob, 100, key=key)
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        move(alice, bob, 101, key=key)
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        services.entry_post(key=key, description="other", postings=[(alice, 100), (bob, -100)])


def test_batch_with_repeated_key_in_it(alice, bob):
    key = unique("k")
    spec = EntrySpec(key, "d", ((alice, 5), (bob, -5)))
    first, second = services.entries_post([spec, spec])
    assert first.pk == second.pk
    assert Entry.objects.filter(idempotency_key=key).count() == 1
    other = EntrySpec(key, "d", ((alice, 6), (bob, -6)))
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        services.entries_post([EntrySpec(unique("k"), "d", ((alice, 6), (bob, -6))), spec, other])


def test_unbalanced_entry_is_refused(alice, bob):
    with refused(Code.ENTRY_UNBALANCED):
        post([(alice, 100), (bob, -99)])


def test_balanced_across_commodities_only_is_refused(usd, gpuh, alice):
    gpus = support.account(gpuh)
    with refused(Code.ENTRY_UNBALANCED):
        post([(alice, 100), (gpus, -100)])


def test_empty_entry_and_empty_batch_are_refused(db):
    with refused(Code.ENTRY_EMPTY):
        post([])
    with refused(Code.ENTRY_EMPTY):
        services.entries_post([])


@pytest.mark.parametrize("amount", [0, True, 1.0, 2.5, "5", None, 2**62, -(2**62)])
def test_invalid_amounts_are_refused(alice, bob, amount):
    with refused(Code.AMOUNT_INVALID):
        post([(alice, amount), (bob, -5)])


@pytest.mark.parametrize("amount", [0, -5, True, 1.0])
def test_invalid_hold_amounts_are_refused(alice, amount):
    with refused(Code.AMOUNT_INVALID):
        services.hold_create(
            key=unique("h"), account=alice, side=DEBIT, amount=amount, description="h"
        )


@pytest.mark.parametrize("key", ["", "x" * 201, None, 5])
def test_invalid_keys_are_refused(alice, bob, key):
    with refused(Code.KEY_INVALID):
        post([(alice, 1), (bob, -1)], key=key)
    with refused(Code.KEY_INVALID):
        services.hold_create(key=key, account=alice, side=DEBIT, amount=1, description="h")


def test_longest_key_is_accepted(alice, bob):
    entry = post([(alice, 1), (bob, -1)], key="k" * 200)
    assert entry.idempotency_key == "k" * 200


def test_insufficient_funds(alice, bob):
    with refused(Code.INSUFFICIENT_FUNDS):
        move(alice, bob, 1001)
    move(alice, bob, 1000)
    assert alice.available == 0 or support.totals(alice) == (1000, 1000, 0, 0)
    with refused(Code.INSUFFICIENT_FUNDS):
        move(alice, bob, 1)


def test_insufficient_funds_counts_holds(alice, bob):
    services.hold_create(key=unique("h"), account=alice, side=DEBIT, amount=900, description="h")
    with refused(Code.INSUFFICIENT_FUNDS):
        move(alice, bob, 101)
    move(alice, bob, 100)
    with refused(Code.INSUFFICIENT_FUNDS):
        services.hold_create(key=unique("h"), account=alice, side=DEBIT, amount=1, description="h")
    support.assert_consistent([alice, bob])


def test_credit_hold_does_not_reduce_cash(alice):
    services.hold_create(key=unique("h"), account=alice, side=CREDIT, amount=5000, description="h")
    alice.refresh_from_db()
    assert alice.available == 1000
    assert support.totals(alice) == (0, 1000, 0, 5000)


def test_entitlements_cannot_be_overdrawn(gpuh):
    source, holder, other = support.account(gpuh), support.holding(gpuh), support.holding(gpuh)
    post([(holder, 8), (source, -8)])
    with refused(Code.CREDITS_EXCEED_DEBITS):
        post([(holder, -9), (other, 9)])
    services.hold_create(key=unique("h"), account=holder, side=CREDIT, amount=5, description="h")
    holder.refresh_from_db()
    assert holder.available == 3
    with refused(Code.CREDITS_EXCEED_DEBITS):
        post([(holder, -4), (other, 4)])
    with refused(Code.CREDITS_EXCEED_DEBITS):
        services.hold_create(
            key=unique("h"), account=holder, side=CREDIT, amount=4, description="h"
        )
    post([(holder, -3), (other, 3)])
    support.assert_consistent([source, holder, other])


def test_unlimited_account_goes_either_way(usd):
    a, b = support.account(usd), support.account(usd)
    move(a, b, 10**12)
    move(b, a, 3 * 10**12)
    assert a.available == a.balance or support.totals(a) == (10**12, 3 * 10**12, 0, 0)


def test_closed_account_is_refused(alice, bob):
    Account.objects.filter(pk=bob.pk).update(closed=True)
    with refused(Code.ACCOUNT_CLOSED):
        move(alice, bob, 10)
    with refused(Code.ACCOUNT_CLOSED):
        services.hold_create(key=unique("h"), account=bob, side=CREDIT, amount=1, description="h")


def test_batch_with_one_bad_entry_writes_nothing(alice, bob, bank):
    good = EntrySpec(unique("k"), "ok", ((alice, 10), (bob, -10)))
    also_good = EntrySpec(unique("k"), "ok", ((bank, 10), (bob, -10)))
    too_much = EntrySpec(unique("k"), "short", ((alice, 991), (bob, -991)))
    with refused(Code.INSUFFICIENT_FUNDS):
        services.entries_post([good, also_good, too_much])
    unbalanced = EntrySpec(unique("k"), "bad", ((alice, 1), (bob, -2)))
    with refused(Code.ENTRY_UNBALANCED):
        services.entries_post([good, unbalanced])
    entries = services.entries_post([good, also_good])
    assert [e.idempotency_key for e in entries] == [good.key, also_good.key]


def test_batch_without_savepoint_leaves_the_rollback_to_the_caller(alice, bob):
    """``savepoint=False`` (the matcher's flush) sends no SAVEPOINT; a refusal marks the
    caller's transaction for rollback, and rolling it back leaves nothing written."""
    good = EntrySpec(unique("k"), "ok", ((alice, 10), (bob, -10)))
    too_much = EntrySpec(unique("k"), "short", ((alice, 991), (bob, -991)))
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        services.entries_post([good], fresh_keys=True, savepoint=False)
    assert not [q for q in queries if "SAVEPOINT" in q["sql"].upper()]
    assert support.totals(alice) == (10, 1000, 0, 0)
    before = snapshot()
    with pytest.raises(LedgerError) as info, transaction.atomic():
        services.entries_post([too_much], fresh_keys=True, savepoint=False)
        pytest.fail("refused before this line")
    assert info.value.code == Code.INSUFFICIENT_FUNDS
    assert snapshot() == before


def test_batch_entries_see_each_other(alice, bob):
    """Limits are checked on the batch's end totals: funds received earlier in it count."""
    first = EntrySpec(unique("k"), "in", ((alice, 1000), (bob, -1000)))
    second = EntrySpec(unique("k"), "out", ((bob, 1000), (alice, -1000)))
    services.entries_post([first, second])
    assert support.totals(bob) == (1000, 1000, 0, 0)
    support.assert_consistent([alice, bob])


def test_description_is_truncated_and_metadata_kept(alice, bob):
    entry = post([(alice, 1), (bob, -1)], description="d" * 400, metadata={"trade": 7})
    entry.refresh_from_db()
    assert entry.description == "d" * 300 and entry.metadata == {"trade": 7}


# Holds.


def test_hold_reduces_available_and_partial_consumptions(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=600, description="order"
    )
    alice.refresh_from_db()
    assert alice.available == 400
    assert support.totals(alice) == (0, 1000, 600, 0)
    post([(alice, 200), (bob, -200)], holds=[(hold, 200)])
    hold.refresh_from_db()
    assert (hold.remaining, hold.status) == (400, Hold.Status.PENDING)
    assert support.totals(alice) == (200, 1000, 400, 0)
    post([(alice, 150), (bob, -150)], holds=[(hold, 150)])
    post([(alice, 250), (bob, -250)], holds=[(hold, 250)])
    hold.refresh_from_db()
    assert (hold.remaining, hold.status) == (0, Hold.Status.POSTED)
    assert hold.resolved_at is not None
    assert list(hold.consumptions.values_list("amount", flat=True)) == [200, 150, 250]
    assert support.totals(alice) == (600, 1000, 0, 0)
    alice.refresh_from_db()
    assert alice.available == 400
    support.assert_consistent([alice, bob])


def test_a_hold_released_in_part_stays_pending_for_the_rest(alice, bob):
    # given 600 held, 200 of it consumed
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=600, description="order"
    )
    post([(alice, 200), (bob, -200)], holds=[(hold, 200)])

    # when 150 of the remaining 400 are released (the holder needs less held)
    services.entries_post([], reduce_holds=[(hold, 150)])

    # then 250 stay pending, the account has the 150 available again, and the check agrees
    hold.refresh_from_db()
    assert (hold.remaining, hold.released, hold.status) == (250, 150, Hold.Status.PENDING)
    assert support.totals(alice) == (200, 1000, 250, 0)
    alice.refresh_from_db()
    assert alice.available == 1000 - 200 - 250
    assert ledger_problems() == []

    # and releasing all that is left voids it, consumed and released within its amount
    post([(alice, 50), (bob, -50)], holds=[(hold, 50)])
    services.entries_post([], reduce_holds=[(hold, 200)])
    hold.refresh_from_db()
    assert (hold.remaining, hold.released, hold.status) == (0, 350, Hold.Status.VOIDED)
    assert hold.resolved_at is not None
    assert support.totals(alice) == (250, 1000, 0, 0)
    assert ledger_problems() == []
    support.assert_consistent([alice, bob])


def test_releasing_more_than_a_hold_has_left_is_refused(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    for amount in (101, 0, -5):
        with refused(Code.HOLD_AMOUNT_EXCEEDED):
            services.entries_post([], reduce_holds=[(hold, amount)])
    services.hold_void(hold=hold)
    with refused(Code.HOLD_NOT_PENDING):
        services.entries_post([], reduce_holds=[(hold, 1)])


def test_a_release_the_check_cannot_account_for_is_a_problem(alice):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    Hold.objects.filter(pk=hold.pk).update(released=30)  # Released without lowering remaining.

    assert any(f"hold #{hold.pk}" in problem for problem in ledger_problems())


def test_consumption_may_post_more_than_it_consumes(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    post([(alice, 300), (bob, -300)], holds=[(hold, 100)])
    assert support.totals(alice) == (300, 1000, 0, 0)
    support.assert_consistent([alice, bob])


def test_release_holds_releases_the_rest(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=500, description="h"
    )
    post([(alice, 120), (bob, -120)], holds=[(hold, 120)], release_holds=True)
    hold.refresh_from_db()
    assert (hold.remaining, hold.status) == (0, Hold.Status.POSTED)
    assert support.totals(alice) == (120, 1000, 0, 0)
    alice.refresh_from_db()
    assert alice.available == 880
    with refused(Code.HOLD_NOT_PENDING):
        post([(alice, 1), (bob, -1)], holds=[(hold, 1)])
    support.assert_consistent([alice, bob])


def test_consuming_more_than_remaining_is_refused(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    post([(alice, 60), (bob, -60)], holds=[(hold, 60)])
    with refused(Code.HOLD_AMOUNT_EXCEEDED):
        post([(alice, 41), (bob, -41)], holds=[(hold, 41)])
    # Two entries of one batch cannot together consume more than remains.
    a = EntrySpec(unique("k"), "a", ((alice, 30), (bob, -30)), ((hold, 30),))
    b = EntrySpec(unique("k"), "b", ((alice, 30), (bob, -30)), ((hold, 30),))
    with refused(Code.HOLD_AMOUNT_EXCEEDED):
        services.entries_post([a, b])
    a = EntrySpec(unique("k"), "a", ((alice, 40), (bob, -40)), ((hold, 40),))
    b = EntrySpec(unique("k"), "b", ((alice, 1), (bob, -1)), ((hold, 1),))
    with refused(Code.HOLD_NOT_PENDING):
        services.entries_post([a, b])


def test_consuming_a_voided_hold_is_refused(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    services.hold_void(hold=hold)
    with refused(Code.HOLD_NOT_PENDING):
        post([(alice, 10), (bob, -10)], holds=[(hold, 10)])


def test_consumption_must_post_on_the_hold_side(alice, bob, bank):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    with refused(Code.HOLD_ACCOUNT_NOT_IN_ENTRY):  # Not in the entry at all.
        post([(bank, 10), (bob, -10)], holds=[(hold, 10)])
    with refused(Code.HOLD_ACCOUNT_NOT_IN_ENTRY):  # On the other side.
        post([(bob, 10), (alice, -10)], holds=[(hold, 10)])
    with refused(Code.HOLD_ACCOUNT_NOT_IN_ENTRY):  # Too little.
        post([(alice, 9), (bob, -9)], holds=[(hold, 10)])


def test_consumptions_together_must_be_posted(alice, bob):
    first = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    second = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    with refused(Code.HOLD_ACCOUNT_NOT_IN_ENTRY):
        post([(alice, 100), (bob, -100)], holds=[(first, 100), (second, 100)])


def test_void_releases_and_twice_is_noop(alice):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=300, description="h"
    )
    voided = services.hold_void(hold=hold)
    assert (voided.status, voided.remaining) == (Hold.Status.VOIDED, 0)
    assert support.totals(alice) == (0, 1000, 0, 0)
    before = snapshot()
    again = services.hold_void(hold=hold)
    assert again.status == Hold.Status.VOIDED
    assert snapshot() == before


def test_void_after_partial_consumption_releases_the_rest(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=300, description="h"
    )
    post([(alice, 100), (bob, -100)], holds=[(hold, 100)])
    services.hold_void(hold=hold)
    hold.refresh_from_db()
    assert (hold.status, hold.remaining, hold.amount) == (Hold.Status.VOIDED, 0, 300)
    assert support.totals(alice) == (100, 1000, 0, 0)
    support.assert_consistent([alice, bob])


def test_void_of_posted_hold_is_refused(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=10, description="h"
    )
    post([(alice, 10), (bob, -10)], holds=[(hold, 10)])
    with refused(Code.HOLD_NOT_PENDING):
        services.hold_void(hold=hold)


def test_holds_expire(alice, gpuh):
    holder, source = support.holding(gpuh), support.account(gpuh)
    post([(holder, 50), (source, -50)])
    early = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h", expires_at=T0
    )
    late = services.hold_create(
        key=unique("h"),
        account=alice,
        side=DEBIT,
        amount=200,
        description="h",
        expires_at=T0 + timedelta(hours=1),
    )
    credit = services.hold_create(
        key=unique("h"), account=holder, side=CREDIT, amount=20, description="h", expires_at=T0
    )
    never = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=300, description="h"
    )
    voided = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=5, description="h", expires_at=T0
    )
    services.hold_void(hold=voided)
    assert services.holds_expire(now=T0 - timedelta(seconds=1)) == 0
    assert services.holds_expire(now=T0) == 2
    statuses = {h.pk: h.status for h in Hold.objects.all()}
    assert statuses[early.pk] == statuses[credit.pk] == Hold.Status.EXPIRED
    assert statuses[late.pk] == statuses[never.pk] == Hold.Status.PENDING
    assert statuses[voided.pk] == Hold.Status.VOIDED
    assert support.totals(alice) == (0, 1000, 500, 0)
    assert support.totals(holder) == (50, 0, 0, 0)
    assert services.holds_expire(now=T0) == 0
    assert services.holds_expire(now=T0 + timedelta(days=1)) == 1
    assert support.totals(alice) == (0, 1000, 300, 0)
    with refused(Code.HOLD_NOT_PENDING):
        services.hold_void(hold=early)
    support.assert_consistent([alice, holder, source])


def test_hold_key_idempotency(alice, bob):
    key = unique("h")
    hold = services.hold_create(
        key=key, account=alice, side=DEBIT, amount=100, description="h", expires_at=T0
    )
    before = snapshot()
    again = services.hold_create(
        key=key, account=alice, side=DEBIT, amount=100, description="other words", expires_at=T0
    )
    assert again.pk == hold.pk
    assert snapshot() == before
    for changes in (
        {"amount": 101},
        {"side": CREDIT},
        {"account": bob},
        {"expires_at": None},
        {"expires_at": T0 + timedelta(seconds=1)},
    ):
        kwargs = {"account": alice, "side": DEBIT, "amount": 100, "expires_at": T0} | changes
        with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
            services.hold_create(key=key, description="h", **kwargs)


def test_hold_invalid_side_is_refused(alice):
    with refused(Code.AMOUNT_INVALID):
        services.hold_create(
            key=unique("h"), account=alice, side="sideways", amount=1, description="h"
        )


def test_entry_consuming_hold_is_idempotent(alice, bob):
    hold = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=100, description="h"
    )
    key = unique("k")
    first = post([(alice, 40), (bob, -40)], key=key, holds=[(hold, 40)])
    before = snapshot()
    assert post([(alice, 40), (bob, -40)], key=key, holds=[(hold, 40)]).pk == first.pk
    assert snapshot() == before
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        post([(alice, 40), (bob, -40)], key=key, holds=[(hold, 30)])
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        post([(alice, 40), (bob, -40)], key=key, holds=[(hold, 40)], release_holds=True)


# Reversals.


def test_entry_reverse_restores_balances(alice, bob, bank):
    before = [support.totals(a) for a in (alice, bob)]
    entry = move(alice, bob, 400)
    key = unique("r")
    reversal = services.entry_reverse(entry=entry, key=key)
    assert reversal.reverses_id == entry.pk
    entry.refresh_from_db()
    assert entry.reversed_by == reversal
    assert sorted(reversal.postings.values_list("account_id", "amount")) == sorted(
        [(alice.pk, -400), (bob.pk, 400)]
    )
    for acc, (dp, cp, _, _) in zip((alice, bob), before, strict=True):
        dp2, cp2, _, _ = support.totals(acc)
        assert dp2 - cp2 == dp - cp
    snap = snapshot()
    assert services.entry_reverse(entry=entry, key=key).pk == reversal.pk
    assert snapshot() == snap
    support.assert_consistent([alice, bob, bank])


def test_reversal_respects_limits(alice, bob):
    entry = move(alice, bob, 400)
    move(bob, alice, 300)  # Bob spends what he received.
    with refused(Code.INSUFFICIENT_FUNDS):
        services.entry_reverse(entry=entry, key=unique("r"))


def test_second_reversal_is_refused_with_ledger_error(usd):
    a, b = support.account(usd), support.account(usd)
    entry = move(a, b, 400)
    services.entry_reverse(entry=entry, key=unique("r"))
    with refused(Code.ENTRY_ALREADY_REVERSED):
        services.entry_reverse(entry=entry, key=unique("r"))


# Definitions.


def test_commodity_define_is_idempotent_and_refuses_conflicts(db):
    code = unique("C")
    usd = services.commodity_define(code=code, name="Dollar", kind="currency", scale=2)
    before = snapshot()
    assert services.commodity_define(code=code, name="Dollar", kind="currency", scale=2) == usd
    assert snapshot() == before
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        services.commodity_define(code=code, name="Dollar", kind="currency", scale=4)
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        services.commodity_define(code=code, name="Dollar", kind="position", scale=2)
    assert Commodity.objects.get(code=code).scale == 2


def test_account_open_is_idempotent_and_refuses_conflicts(usd, gpuh):
    code = unique("acct")
    kwargs = {
        "code": code,
        "owner": "o1",
        "commodity": usd,
        "type": Account.Type.LIABILITY,
        "limit": Limit.DEBITS_MUST_NOT_EXCEED_CREDITS,
    }
    acct = services.account_open(**kwargs)
    before = snapshot()
    assert services.account_open(**kwargs).pk == acct.pk
    assert snapshot() == before
    for changes in (
        {"owner": "o2"},
        {"commodity": gpuh},
        {"type": Account.Type.ASSET},
        {"limit": Limit.NONE},
        {"limit": Limit.CREDITS_MUST_NOT_EXCEED_DEBITS},
    ):
        with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
            services.account_open(**(kwargs | changes))
    assert (
        services.account_open(code=unique("acct"), owner="o", commodity=usd, type="asset").limit
        == Limit.NONE
    )


def test_error_carries_code_message_and_field(alice, bob):
    with pytest.raises(LedgerError) as info:
        move(alice, bob, 5000)
    assert info.value.code == Code.INSUFFICIENT_FUNDS
    assert info.value.field == "postings"
    assert str(info.value).startswith("LEDGER_INSUFFICIENT_FUNDS: ")
    assert Posting.objects.filter(account=bob).count() == 0
    assert HoldConsumption.objects.count() == 0


def test_expiry_skips_a_hold_resolved_meanwhile(alice, monkeypatch):
    first = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=10, description="h", expires_at=T0
    )
    second = services.hold_create(
        key=unique("h"), account=alice, side=DEBIT, amount=20, description="h", expires_at=T0
    )
    release = services._hold_release

    def racing(hold, status):
        if status == Hold.Status.EXPIRED and hold.pk == first.pk:
            services.hold_void(hold=hold)  # Another transaction voids it first.
        return release(hold, status)

    monkeypatch.setattr(services, "_hold_release", racing)
    with transaction.atomic():
        expired = services.holds_expire(now=T0)
    assert expired == 1
    second.refresh_from_db()
    assert second.status == Hold.Status.EXPIRED


def test_expired_hold_cannot_be_consumed(alice, bob):
    # given a hold whose expiry has passed but which no sweep has expired yet
    hold = services.hold_create(
        key=unique("h"),
        account=alice,
        side=DEBIT,
        amount=50,
        description="h",
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )

    # then an entry consuming it is refused and writes nothing
    with refused(Code.HOLD_NOT_PENDING):
        post([(alice, 50), (bob, -50)], holds=[(hold, 50)])


def test_same_key_with_other_metadata_is_refused(alice, bob):
    key = unique("e")
    services.entry_post(
        key=key, description="m", postings=[(alice, 5), (bob, -5)], metadata={"trade": 1}
    )
    with refused(Code.EXISTS_WITH_DIFFERENT_CONTENT):
        services.entry_post(
            key=key, description="m", postings=[(alice, 5), (bob, -5)], metadata={"trade": 2}
        )
