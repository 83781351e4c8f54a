"""Random sequences of ledger operations against a model of the totals.

Each example opens its own commodities and accounts and runs in a savepoint rolled back at its
end. After every operation the services must agree with a plain-Python model (what is accepted,
what is refused and with which code); a refused operation must write nothing; at the end every
account's cached totals equal the model and the sums recomputed from postings and pending holds,
every commodity's postings sum to zero and no limited account is past its limit.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import services
from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account, Commodity, Entry, Hold
from ledger.services import EntrySpec
from tests.ledger import support
from tests.ledger.support import CREDIT, DEBIT, Limit, snapshot, unique

Code = LedgerErrorCode
T0 = datetime(2030, 1, 1, tzinfo=UTC)
# Per commodity: two unlimited accounts, then one of each limit.
LIMITS = [Limit.NONE, Limit.NONE, Limit.DEBITS_MUST_NOT_EXCEED_CREDITS,
          Limit.CREDITS_MUST_NOT_EXCEED_DEBITS]  # fmt: skip

amounts = st.integers(-60, -1) | st.integers(1, 60)
group = st.tuples(
    st.integers(0, 1),  # commodity
    st.lists(st.tuples(st.integers(0, 3), amounts), min_size=1, max_size=3),
    st.integers(0, 3),  # the account that balances the group
)
operation = st.one_of(
    st.tuples(st.just("entry"), st.lists(group, min_size=1, max_size=2), st.integers(0, 9)),
    st.tuples(
        st.just("batch"),
        st.lists(
            st.tuples(st.lists(group, min_size=1, max_size=2), st.integers(0, 19)),
            min_size=2,
            max_size=3,
        ),
    ),
    st.tuples(st.just("replay"), st.integers(0, 100)),
    st.tuples(
        st.just("hold"),
        st.integers(0, 1),
        st.integers(0, 3),
        st.sampled_from([DEBIT, CREDIT]),
        st.integers(1, 80),
        st.none() | st.integers(0, 4),
    ),
    st.tuples(
        st.just("consume"),
        st.integers(0, 100),
        st.integers(1, 25) | st.integers(1, 90),
        st.integers(0, 3),
        st.booleans(),
    ),
    st.tuples(st.just("void"), st.integers(0, 100)),
    st.tuples(st.just("expire"), st.integers(0, 4)),
)


@dataclass
class ModelHold:
    hold: Hold
    account: int  # index into the example's accounts
    side: str
    remaining: int
    status: str = Hold.Status.PENDING
    expires_hour: int | None = None


@dataclass
class Model:
    accounts: list[Account]
    totals: list[list[int]]
    holds: list[ModelHold] = field(default_factory=list)
    posted: list[tuple[dict, int]] = field(default_factory=list)  # (entry_post kwargs, entry id)

    def limit_code(self, candidate: list[list[int]], touched: set[int]) -> Code | None:
        for i in sorted(touched, key=lambda i: self.accounts[i].pk):
            dp, cp, dpend, cpend = candidate[i]
            limit = self.accounts[i].limit
            if limit == Limit.DEBITS_MUST_NOT_EXCEED_CREDITS and cp - dp - dpend < 0:
                return Code.INSUFFICIENT_FUNDS
            if limit == Limit.CREDITS_MUST_NOT_EXCEED_DEBITS and dp - cp - cpend < 0:
                return Code.CREDITS_EXCEED_DEBITS
        return None


def index(commodity: int, account: int) -> int:
    return commodity * len(LIMITS) + account


def run(model: Model, op: tuple) -> None:
    """Apply ``op`` to the ledger and the model; check the outcome the model predicts."""
    kind = op[0]
    expected: Code | None = None
    candidate = [list(t) for t in model.totals]
    touched: set[int] = set()
    hold_updates: list[tuple[ModelHold, int, str]] = []
    call = None

    def apply_posting(i: int, amount: int) -> None:
        if amount > 0:
            candidate[i][0] += amount
        else:
            candidate[i][1] -= amount
        touched.add(i)

    def pend(i: int, side: str, amount: int) -> None:
        candidate[i][2 if side == DEBIT else 3] += amount
        touched.add(i)

    def entry_kwargs(groups: list, unbalanced: int) -> dict:
        nonlocal expected
        postings: list[tuple[int, int]] = []
        for commodity, pairs, balancing in groups:
            group_postings = [(index(commodity, a), amount) for a, amount in pairs]
            rest = -sum(amount for _, amount in group_postings)
            if rest:
                group_postings.append((index(commodity, balancing), rest))
            postings += group_postings
        if unbalanced == 0:  # One in ten is off by one.
            postings.append((postings[0][0], 1))
            expected = Code.ENTRY_UNBALANCED
        for i, amount in postings:
            apply_posting(i, amount)
        return {
            "key": unique("e"),
            "description": "random",
            "postings": [(model.accounts[i], amount) for i, amount in postings],
        }

    if kind == "entry":
        kwargs = entry_kwargs(*op[1:])
    elif kind == "batch":
        batch = [entry_kwargs(*entry) for entry in op[1]]

        def call():
            specs = [EntrySpec(k["key"], k["description"], tuple(k["postings"])) for k in batch]
            entries = services.entries_post(specs)
            model.posted.extend((k, e.pk) for k, e in zip(batch, entries, strict=True))

    elif kind == "replay":
        if not model.posted:
            return
        kwargs, entry_id = model.posted[op[1] % len(model.posted)]
        before = snapshot()
        assert services.entry_post(**kwargs).pk == entry_id
        assert snapshot() == before
        return
    elif kind == "hold":
        _, commodity, a, side, amount, expires = op
        i = index(commodity, a)
        pend(i, side, amount)
        key = unique("h")

        def call():
            hold = services.hold_create(
                key=key,
                account=model.accounts[i],
                side=side,
                amount=amount,
                description="random",
                expires_at=None if expires is None else T0 + timedelta(hours=expires),
            )
            model.holds.append(ModelHold(hold, i, side, amount, expires_hour=expires))

    elif kind == "consume":
        if not model.holds:
            return
        _, h, amount, other, release = op
        mh = model.holds[h % len(model.holds)]
        counter = mh.account - mh.account % len(LIMITS) + other
        sign = 1 if mh.side == DEBIT else -1
        postings = [(mh.account, sign * amount), (counter, -sign * amount)]
        for i, posted in postings:
            apply_posting(i, posted)
        if mh.status != Hold.Status.PENDING:
            expected = Code.HOLD_NOT_PENDING
        elif amount > mh.remaining:
            expected = Code.HOLD_AMOUNT_EXCEEDED
        else:
            released = mh.remaining - amount if release else 0
            pend(mh.account, mh.side, -(amount + released))
            left = mh.remaining - amount - released
            hold_updates.append((mh, left, Hold.Status.POSTED if left == 0 else mh.status))
        kwargs = {
            "key": unique("c"),
            "description": "consume",
            "postings": [(model.accounts[i], posted) for i, posted in postings],
            "holds": [(mh.hold, amount)],
            "release_holds": release,
        }
    elif kind == "void":
        if not model.holds:
            return
        mh = model.holds[op[1] % len(model.holds)]
        if mh.status == Hold.Status.PENDING:
            pend(mh.account, mh.side, -mh.remaining)
            hold_updates.append((mh, 0, Hold.Status.VOIDED))
        elif mh.status != Hold.Status.VOIDED:
            expected = Code.HOLD_NOT_PENDING

        def call():
            assert services.hold_void(hold=mh.hold).status == Hold.Status.VOIDED

    elif kind == "expire":
        hour = op[1]
        due = [
            mh
            for mh in model.holds
            if mh.status == Hold.Status.PENDING
            and mh.expires_hour is not None
            and mh.expires_hour <= hour
        ]
        for mh in due:
            pend(mh.account, mh.side, -mh.remaining)
            hold_updates.append((mh, 0, Hold.Status.EXPIRED))

        def call():
            assert services.holds_expire(now=T0 + timedelta(hours=hour)) == len(due)

    if kind in ("entry", "consume"):

        def call():
            entry = services.entry_post(**kwargs)
            model.posted.append((kwargs, entry.pk))

    if expected is None:
        expected = model.limit_code(candidate, touched)
    event(f"{kind}: {expected or 'accepted'}")
    if expected is None:
        call()
        model.totals = candidate
        for mh, remaining, status in hold_updates:
            mh.remaining, mh.status = remaining, status
        # No limited account is past its limit after any accepted operation.
        for acc in Account.objects.filter(pk__in=[a.pk for a in model.accounts]):
            if acc.limit != Limit.NONE:
                assert acc.available >= 0, acc.code
    else:
        before = snapshot()
        with pytest.raises(LedgerError) as info:
            call()
        assert info.value.code == expected, (op, str(info.value))
        assert snapshot() == before


def check_end(model: Model) -> None:
    for acc, expected in zip(model.accounts, model.totals, strict=True):
        assert support.totals(acc) == tuple(expected), acc.code
    support.assert_consistent(model.accounts)
    for mh in model.holds:
        mh.hold.refresh_from_db()
        assert (mh.hold.remaining, mh.hold.status) == (mh.remaining, mh.status)
    for kwargs, entry_id in model.posted:
        assert Entry.objects.get(idempotency_key=kwargs["key"]).pk == entry_id


@pytest.mark.django_db
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    operations=st.lists(operation, min_size=1, max_size=30),
    funding=st.sampled_from([0, 50, 300]),
)
def test_random_operations_keep_the_ledger_consistent(operations, funding):
    with transaction.atomic():
        commodities = [
            support.commodity(Commodity.Kind.CURRENCY, 2),
            support.commodity(Commodity.Kind.ENTITLEMENT, 0),
        ]
        accounts = [support.account(c, limit) for c in commodities for limit in LIMITS]
        model = Model(accounts, [[0, 0, 0, 0] for _ in accounts])
        for c in range(len(commodities) if funding else 0):  # Fund the limited accounts.
            run(model, ("entry", [(c, [(2, -funding)], 0), (c, [(3, funding)], 0)], 1))
        assert model.totals[index(0, 2)] == [0, funding, 0, 0]
        for op in operations:
            run(model, op)
        check_end(model)
        transaction.set_rollback(True)
