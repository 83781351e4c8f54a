"""Ledger services: every change of the ledger goes through these functions.

Each runs in ``transaction.atomic()`` (plain, not durable) so that it composes with the caller's
transaction: a trade and the entry it causes commit together.

Locking, one global order in every function here, so two transactions can never each hold a
lock the other waits for and concurrent entries never deadlock: first the holds an operation
touches (``select_for_update``, ascending id), then the accounts, in ascending id order, by the
conditional UPDATEs that apply their new running totals (``_Deltas``). Those UPDATEs come last
in each operation: an account row, the hottest row of the ledger, stays locked only from its
UPDATE to the commit.

Refusals raise ``LedgerError`` with a ``LedgerErrorCode``. Input is checked before anything is
written; an account limit is checked by the UPDATE itself, on the new totals, and a refusal
there rolls back what the operation wrote (its atomic block).
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from django.db import connection, transaction
from django.utils import timezone

from ledger.errors import LedgerError, LedgerErrorCode
from ledger.models import Account, Commodity, Entry, Hold, HoldConsumption, Posting
from statements import Select, insert_rows

KEY_LENGTH_MAX = 200
# An entry touches few accounts, except end-of-day entries that settle every position of one
# trading account at once (a market maker may hold a few hundred instruments).
POSTINGS_PER_ENTRY_MAX = 4096
ENTRIES_PER_BATCH_MAX = 10_000
HOLDS_EXPIRED_PER_CALL_MAX = 10_000
# Amounts fit PostgreSQL's bigint with room for the running totals of many entries.
AMOUNT_MAX = 2**62


@dataclass(frozen=True)
class EntrySpec:
    """One entry to post. ``postings``: (account, signed amount), positive debits.

    ``holds``: (hold, amount) pairs this entry consumes: the amount moves from pending to posted
    on the hold's account, so the entry must post at least that much on the hold's side of that
    account. With ``release_holds`` the rest of each hold is released (TigerBeetle's post of a
    pending transfer); otherwise a hold stays pending until consumed in full or voided.
    """

    key: str
    description: str
    postings: tuple[tuple[Account, int], ...]
    holds: tuple[tuple[Hold, int], ...] = ()
    release_holds: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    reverses: Entry | None = None

    def digest(self) -> str:
        content = {
            "description": self.description,
            "postings": sorted((account.pk, amount) for account, amount in self.postings),
            "holds": sorted((hold.pk, amount) for hold, amount in self.holds),
            "release_holds": self.release_holds,
            "reverses": self.reverses.pk if self.reverses else None,
            "metadata": self.metadata,
        }
        encoded = json.dumps(content, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()


def _refuse(code: LedgerErrorCode, message: str, field_name: str = "") -> None:
    raise LedgerError(code, message, field=field_name)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_LENGTH_MAX:
        _refuse(
            LedgerErrorCode.KEY_INVALID,
            f"An idempotency key has 1 to {KEY_LENGTH_MAX} characters.",
            "key",
        )


def _check_amount(amount: object, *, signed: bool) -> None:
    valid = (
        isinstance(amount, int) and not isinstance(amount, bool) and 0 < abs(amount) < AMOUNT_MAX
    )
    if not valid or (not signed and amount < 0):  # type: ignore[operator]
        _refuse(LedgerErrorCode.AMOUNT_INVALID, f"{amount!r} is not a valid amount.", "amount")


def _check_spec(spec: EntrySpec) -> None:
    _check_key(spec.key)
    if not spec.postings:
        _refuse(LedgerErrorCode.ENTRY_EMPTY, "An entry needs postings.", "postings")
    if len(spec.postings) > POSTINGS_PER_ENTRY_MAX:
        _refuse(
            LedgerErrorCode.AMOUNT_INVALID,
            f"At most {POSTINGS_PER_ENTRY_MAX} postings.",
            "postings",
        )
    sums: dict[int, int] = defaultdict(int)
    for account, amount in spec.postings:
        _check_amount(amount, signed=True)
        sums[account.commodity_id] += amount
    unbalanced = [commodity for commodity, total in sums.items() if total]
    if unbalanced:
        _refuse(
            LedgerErrorCode.ENTRY_UNBALANCED,
            f"Postings do not sum to zero for commodities {unbalanced}.",
            "postings",
        )
    consumed: dict[tuple[int, str], int] = defaultdict(int)
    for hold, amount in spec.holds:
        _check_amount(amount, signed=False)
        consumed[(hold.account_id, hold.side)] += amount
    # Everything the entry consumes on one side of one account must be posted there: several
    # holds (or one listed twice) cannot together move more from pending than the entry posts.
    for (account_id, side), amount in consumed.items():
        side_total = sum(
            abs(posted)
            for account, posted in spec.postings
            if account.pk == account_id and (posted > 0) == (side == Hold.Side.DEBIT)
        )
        if side_total < amount:
            _refuse(
                LedgerErrorCode.HOLD_ACCOUNT_NOT_IN_ENTRY,
                f"The entry posts {side_total} on the {side} side of account {account_id}, "
                f"less than the {amount} it consumes from holds there.",
                "holds",
            )


class _Deltas:
    """Changes to accounts' running totals, applied last, by one conditional UPDATE each.

    Each UPDATE adds its deltas only if the account's limit holds on the new totals (and, when
    it posts or adds a pending amount, the account is open), so reading, checking and writing
    a total is one statement under the row lock, and an account row stays locked only from its
    UPDATE to the commit. Accounts are updated in ascending id order. The limit conditions are
    the model's CHECK constraints (``ledger/models.py``) with the deltas added, so a refusal is
    named here instead of surfacing as a constraint violation.
    """

    def __init__(self) -> None:
        # Account id: [debits posted, credits posted, debits pending, credits pending, opens].
        self.rows: dict[int, list[int]] = {}

    def _row(self, account_id: int) -> list[int]:
        return self.rows.setdefault(account_id, [0, 0, 0, 0, 0])

    def post(self, account_id: int, amount: int) -> None:
        row = self._row(account_id)
        row[0 if amount > 0 else 1] += abs(amount)
        row[4] = 1

    def pend(self, account_id: int, side: str, amount: int) -> None:
        """Add (or with a negative amount, release) a pending amount."""
        row = self._row(account_id)
        row[2 if side == Hold.Side.DEBIT else 3] += amount
        if amount > 0:
            row[4] = 1

    def apply(self) -> None:
        table = connection.ops.quote_name(Account._meta.db_table)
        sql = (
            f"UPDATE {table} SET debits_posted = debits_posted + %s, "
            "credits_posted = credits_posted + %s, debits_pending = debits_pending + %s, "
            "credits_pending = credits_pending + %s WHERE id = %s AND (%s = 0 OR NOT closed) "
            "AND (\"limit\" <> 'debits_must_not_exceed_credits' "
            "OR credits_posted + %s - debits_posted - %s - debits_pending - %s >= 0) "
            "AND (\"limit\" <> 'credits_must_not_exceed_debits' "
            "OR debits_posted + %s - credits_posted - %s - credits_pending - %s >= 0)"
        )
        ids = sorted(self.rows)
        params = []
        for account_id in ids:
            dd, dc, dpd, dpc, opens = self.rows[account_id]
            params.append((dd, dc, dpd, dpc, account_id, opens, dc, dd, dpd, dd, dc, dpc))
        if not params:
            return
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql" and len(params) > 1:
                # One round trip for all the accounts (psycopg pipelines ``executemany``), in
                # the order given; the ids returned say which UPDATEs passed their condition.
                # psycopg's own cursor: Django's exceptions are raised as its cursor raises them.
                raw = cursor.cursor
                updated: set[int] = set()
                with connection.wrap_database_errors:
                    raw.executemany(sql + " RETURNING id", params, returning=True)
                    while True:
                        updated.update(account_id for (account_id,) in raw.fetchall())
                        if not raw.nextset():
                            break
                refused = [account_id for account_id in ids if account_id not in updated]
                if refused:
                    self._refuse_for(refused[0])
                return
            for row in params:
                cursor.execute(sql, row)
                if cursor.rowcount != 1:
                    self._refuse_for(row[4])

    def _refuse_for(self, account_id: int) -> None:
        account = Account.objects.get(pk=account_id)
        dd, dc, dpd, dpc, opens = self.rows[account_id]
        if account.closed and opens:
            _refuse(
                LedgerErrorCode.ACCOUNT_CLOSED, f"Account {account.code} is closed.", "postings"
            )
        account.debits_posted += dd
        account.credits_posted += dc
        account.debits_pending += dpd
        account.credits_pending += dpc
        code = (
            LedgerErrorCode.INSUFFICIENT_FUNDS
            if account.limit == Account.Limit.DEBITS_MUST_NOT_EXCEED_CREDITS
            else LedgerErrorCode.CREDITS_EXCEED_DEBITS
        )
        _refuse(code, f"Account {account.code} would be short by {-account.available}.", "postings")


def _holds_write(holds: list[Hold]) -> None:
    """Write the holds' remaining amount and status (one statement per hold, sent together:
    the ORM's ``bulk_update`` builds a CASE expression per column, costlier than the write)."""
    table = connection.ops.quote_name(Hold._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET remaining = %s, released = %s, status = %s, resolved_at = %s "
            "WHERE id = %s",
            [
                (hold.remaining, hold.released, hold.status, adapt(hold.resolved_at), hold.pk)
                for hold in holds
            ],
        )


def _reduce(hold: Hold, amount: int, totals: _Deltas, now: datetime) -> Hold:
    """Release ``amount`` of a locked pending hold, the rest staying pending (in memory: the
    caller writes it); all that is left voids it."""
    if hold.status != Hold.Status.PENDING:
        _refuse(LedgerErrorCode.HOLD_NOT_PENDING, f"Hold #{hold.pk} is {hold.status}.", "holds")
    if not 0 < amount <= hold.remaining:
        _refuse(
            LedgerErrorCode.HOLD_AMOUNT_EXCEEDED,
            f"Hold #{hold.pk} has {hold.remaining} pending: {amount} cannot be released.",
            "holds",
        )
    totals.pend(hold.account_id, hold.side, -amount)
    hold.remaining -= amount
    hold.released += amount
    if hold.remaining == 0:
        hold.status, hold.resolved_at = Hold.Status.VOIDED, now
    return hold


def _release(hold: Hold, status: str, totals: _Deltas, now: datetime) -> None:
    """Release what is left of a locked pending hold (in memory: the caller writes it)."""
    totals.pend(hold.account_id, hold.side, -hold.remaining)
    hold.remaining, hold.status, hold.resolved_at = 0, status, now


# The matcher locks the holds of every batch's trades: a prepared statement, as the ORM
# compiled this query afresh for each batch.
HOLDS_BY_IDS = Select([Hold], "{t0}", "WHERE {t0}.id IN ({values}) ORDER BY {t0}.id")


def _lock_holds(hold_ids: Iterable[int]) -> dict[int, Hold]:
    wanted = sorted(set(hold_ids))
    if not wanted:
        return {}  # Most entries consume no hold: no round trip for them.
    rows = HOLDS_BY_IDS.rows_in(wanted, for_update=True)
    return {hold.pk: cast(Hold, hold) for (hold,) in rows}


def _existing_entries(specs: Sequence[EntrySpec]) -> dict[str, Entry]:
    """Entries already posted under these keys; a key reused for other content is refused."""
    by_key: dict[str, EntrySpec] = {}
    for spec in specs:
        earlier = by_key.setdefault(spec.key, spec)
        if earlier is not spec and earlier.digest() != spec.digest():
            _refuse(
                LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT,
                f"Key {spec.key!r} is used twice in the batch.",
                "key",
            )
    existing = {
        entry.idempotency_key: entry
        for entry in Entry.objects.filter(idempotency_key__in=list(by_key))
    }
    for key, entry in existing.items():
        if entry.content_digest != by_key[key].digest():
            _refuse(
                LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT,
                f"Key {key!r} was posted with other content.",
                "key",
            )
    return existing


def entries_post(
    specs: Sequence[EntrySpec],
    *,
    void_holds: Sequence[Hold] = (),
    reduce_holds: Sequence[tuple[Hold, int]] = (),
    fresh_keys: bool = False,
    savepoint: bool = True,
) -> list[Entry]:
    """Post a batch of entries atomically: all of them or, on any refusal, none.

    An entry whose key exists with the same content is returned as it is, not posted again.
    ``void_holds``: holds whose remainder is released after the entries are posted, under the
    same locks (a hold no longer pending is skipped): a caller settling trades and closing
    orders in one transaction takes every account lock in one ascending pass, so it cannot
    deadlock with another doing the same. ``reduce_holds``: (hold, amount) pairs released in
    part after the entries, before the voids, the rest staying pending (a hold's ``released``
    records it); releasing all that is left voids the hold. ``fresh_keys``: the caller vouches
    that no key was used before (as ``holds_create``); the unique key still refuses a repeat.
    ``savepoint``:
    as ``holds_create``'s, for a caller whose whole transaction rolls back on a refusal.
    """
    if len(specs) > ENTRIES_PER_BATCH_MAX or not (specs or void_holds or reduce_holds):
        _refuse(
            LedgerErrorCode.ENTRY_EMPTY,
            f"A batch has 1 to {ENTRIES_PER_BATCH_MAX} entries, or only holds to void.",
            "entries",
        )
    for spec in specs:
        _check_spec(spec)
    with transaction.atomic(savepoint=savepoint):
        existing = _existing_entries(specs) if specs and not fresh_keys else {}
        fresh: list[EntrySpec] = []
        seen: set[str] = set(existing)
        for spec in specs:
            if spec.key not in seen:
                fresh.append(spec)
                seen.add(spec.key)
        if fresh or void_holds or reduce_holds:
            created = _post_fresh(fresh, list(void_holds), list(reduce_holds))
            existing.update(created)
    return [existing[spec.key] for spec in specs]


def _post_fresh(
    specs: list[EntrySpec], void_holds: list[Hold], reduce_holds: list[tuple[Hold, int]]
) -> dict[str, Entry]:
    given_holds = [hold for spec in specs for hold, _ in spec.holds] + void_holds
    given_holds += [hold for hold, _ in reduce_holds]
    hold_ids = {hold.pk for hold in given_holds}
    void_hold_ids = [hold.pk for hold in void_holds]
    holds = _lock_holds(hold_ids)
    totals = _Deltas()
    now = timezone.now()
    for spec in specs:
        for account, amount in spec.postings:
            totals.post(account.pk, amount)
        for given, amount in spec.holds:
            hold = holds[given.pk]
            if hold.status != Hold.Status.PENDING:
                _refuse(
                    LedgerErrorCode.HOLD_NOT_PENDING, f"Hold #{hold.pk} is {hold.status}.", "holds"
                )
            if hold.expires_at is not None and hold.expires_at <= now:
                _refuse(LedgerErrorCode.HOLD_NOT_PENDING, f"Hold #{hold.pk} has expired.", "holds")
            if amount > hold.remaining:
                _refuse(
                    LedgerErrorCode.HOLD_AMOUNT_EXCEEDED,
                    f"Hold #{hold.pk} has {hold.remaining} pending, less than {amount}.",
                    "holds",
                )
            hold.remaining -= amount
            released = hold.remaining if spec.release_holds else 0
            totals.pend(hold.account_id, hold.side, -(amount + released))
            hold.remaining -= released
            if hold.remaining == 0:
                hold.status, hold.resolved_at = Hold.Status.POSTED, now
    reduced = [_reduce(holds[given.pk], amount, totals, now) for given, amount in reduce_holds]
    voided = []
    for hold_id in void_hold_ids:
        hold = holds[hold_id]
        if hold.status != Hold.Status.PENDING:
            continue  # Consumed in full above, or released before: nothing left to release.
        _release(hold, Hold.Status.VOIDED, totals, now)
        voided.append(hold)
    entries = [
        Entry(
            idempotency_key=spec.key,
            content_digest=spec.digest(),
            description=spec.description[:300],
            metadata=spec.metadata,
            reverses=spec.reverses,
        )
        for spec in specs
    ]
    insert_rows(Entry, entries, returning=True)
    insert_rows(
        Posting,
        [
            Posting(
                entry=entry, account_id=account.pk, commodity_id=account.commodity_id, amount=amount
            )
            for entry, spec in zip(entries, specs, strict=True)
            for account, amount in spec.postings
        ],
    )
    consumptions = [
        HoldConsumption(hold_id=hold.pk, entry=entry, amount=amount)
        for entry, spec in zip(entries, specs, strict=True)
        for hold, amount in spec.holds
    ]
    insert_rows(HoldConsumption, consumptions)
    if consumptions or voided or reduced:
        _holds_write(list(holds.values()))
    totals.apply()  # Last: the accounts are locked from here to the commit.
    return {entry.idempotency_key: entry for entry in entries}


def entry_post(
    *,
    key: str,
    description: str,
    postings: Sequence[tuple[Account, int]],
    holds: Sequence[tuple[Hold, int]] = (),
    release_holds: bool = False,
    metadata: dict[str, Any] | None = None,
    reverses: Entry | None = None,
) -> Entry:
    """Post one balanced entry (see ``EntrySpec``); idempotent on ``key``."""
    spec = EntrySpec(
        key, description, tuple(postings), tuple(holds), release_holds, metadata or {}, reverses
    )
    return entries_post([spec])[0]


def entry_reverse(
    *, entry: Entry, key: str, description: str = "", metadata: dict[str, Any] | None = None
) -> Entry:
    """Post the exact opposite of ``entry``: the way to correct an append-only ledger."""
    earlier = Entry.objects.filter(reverses=entry).first()
    if earlier is not None and earlier.idempotency_key != key:
        _refuse(
            LedgerErrorCode.ENTRY_ALREADY_REVERSED,
            f"Entry #{entry.pk} was already reversed by entry #{earlier.pk}.",
            "entry",
        )
    postings = [
        (posting.account, -posting.amount) for posting in entry.postings.select_related("account")
    ]
    return entry_post(
        key=key,
        description=description or f"Reversal of entry #{entry.pk}",
        postings=postings,
        metadata=metadata,
        reverses=entry,
    )


@dataclass(frozen=True)
class HoldSpec:
    """One hold to create: ``amount`` pending on ``side`` of ``account``."""

    key: str
    account: Account
    side: str
    amount: int
    description: str
    expires_at: datetime | None = None


def hold_create(
    *,
    key: str,
    account: Account,
    side: str,
    amount: int,
    description: str,
    expires_at: datetime | None = None,
) -> Hold:
    """Reserve ``amount`` on one side of ``account``; refused if its limit would be exceeded."""
    return holds_create([HoldSpec(key, account, side, amount, description, expires_at)])[0]


def holds_create(
    specs: Sequence[HoldSpec], *, fresh_keys: bool = False, savepoint: bool = True
) -> list[Hold]:
    """Create several holds atomically (all or none).

    Idempotent per key: a key that exists with the same content returns the existing hold.
    ``fresh_keys``: the caller vouches that no key was used before (each carries the id of a
    row it just inserted), so the lookup is skipped; the unique key still refuses a repeat.
    ``savepoint=False`` saves two round trips inside a caller's transaction that rolls back
    on a refusal anyway (order acceptance); the transaction is then unusable until rolled back.
    """
    for spec in specs:
        _check_key(spec.key)
        _check_amount(spec.amount, signed=False)
        if spec.side not in Hold.Side.values:
            _refuse(
                LedgerErrorCode.AMOUNT_INVALID, f"Side must be one of {Hold.Side.values}.", "side"
            )
    if len({spec.key for spec in specs}) != len(specs):
        _refuse(LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT, "A hold key is used twice.", "key")
    with transaction.atomic(savepoint=savepoint):
        existing = (
            {}
            if fresh_keys
            else {
                hold.idempotency_key: hold
                for hold in Hold.objects.filter(idempotency_key__in=[spec.key for spec in specs])
            }
        )
        for key, hold in existing.items():
            spec = next(spec for spec in specs if spec.key == key)
            same = (hold.account_id, hold.side, hold.amount, hold.expires_at) == (
                spec.account.pk,
                spec.side,
                spec.amount,
                spec.expires_at,
            )
            if not same:
                _refuse(
                    LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT,
                    f"Hold key {key!r} exists with other content.",
                    "key",
                )
        fresh = [spec for spec in specs if spec.key not in existing]
        if fresh:
            created = [
                Hold(
                    idempotency_key=spec.key,
                    account=spec.account,
                    side=spec.side,
                    amount=spec.amount,
                    remaining=spec.amount,
                    expires_at=spec.expires_at,
                    description=spec.description[:300],
                )
                for spec in fresh
            ]
            insert_rows(Hold, created, returning=True)
            existing.update((hold.idempotency_key, hold) for hold in created)
            totals = _Deltas()
            for spec in fresh:
                totals.pend(spec.account.pk, spec.side, spec.amount)
            totals.apply()
    return [existing[spec.key] for spec in specs]


def _hold_release(hold: Hold, status: str) -> tuple[Hold, bool]:
    """Release what is left of a hold; also say whether this call changed it."""
    with transaction.atomic():
        locked = _lock_holds([hold.pk])[hold.pk]
        if locked.status != Hold.Status.PENDING:
            if locked.status == status or status == Hold.Status.EXPIRED:
                # Voiding twice is a repeat, not an error; and a hold consumed or voided
                # between the expiry sweep's read and its lock simply has nothing to expire.
                return locked, False
            _refuse(
                LedgerErrorCode.HOLD_NOT_PENDING, f"Hold #{locked.pk} is {locked.status}.", "hold"
            )
        totals = _Deltas()
        _release(locked, status, totals, timezone.now())
        _holds_write([locked])
        totals.apply()
    return locked, True


def hold_void(*, hold: Hold) -> Hold:
    """Release what is left of a hold."""
    return _hold_release(hold, Hold.Status.VOIDED)[0]


def holds_expire(*, now: datetime | None = None) -> int:
    """Release every pending hold whose expiry has passed. Returns how many expired."""
    now = now or timezone.now()
    due = list(
        Hold.objects.filter(status=Hold.Status.PENDING, expires_at__lte=now).order_by("pk")[
            :HOLDS_EXPIRED_PER_CALL_MAX
        ]
    )
    return sum(1 for hold in due if _hold_release(hold, Hold.Status.EXPIRED)[1])


def commodity_define(*, code: str, name: str, kind: str, scale: int) -> Commodity:
    """Get or create a commodity; its scale can never change once defined."""
    commodity, created = Commodity.objects.get_or_create(
        code=code, defaults={"name": name, "kind": kind, "scale": scale}
    )
    if not created and (commodity.kind, commodity.scale) != (kind, scale):
        _refuse(
            LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT,
            f"Commodity {code} exists with another kind or scale.",
            "code",
        )
    return commodity


def account_open(
    *, code: str, owner: str, commodity: Commodity, type: str, limit: str = Account.Limit.NONE
) -> Account:
    """Get or create an account; an existing one must match what is asked."""
    account, created = Account.objects.get_or_create(
        code=code, defaults={"owner": owner, "commodity": commodity, "type": type, "limit": limit}
    )
    if not created and (account.owner, account.commodity_id, account.type, account.limit) != (
        owner,
        commodity.pk,
        type,
        limit,
    ):
        _refuse(
            LedgerErrorCode.EXISTS_WITH_DIFFERENT_CONTENT,
            f"Account {code} exists with other attributes.",
            "code",
        )
    return account
