"""Export the ledger as a Beancount file (checked with ``bean-check``).

Beancount's sign convention is the ledger's: a debit is a positive number, a credit a negative
one, so amounts are written as they are, divided by ``10 ** scale`` exactly (never floats).
Balance assertions carry an explicit zero tolerance (``~ 0``): Beancount would otherwise accept
a difference of one unit of the last decimal, which is one smallest unit of the commodity.

Names: ledger codes are mapped deterministically onto Beancount's grammar. A commodity code that
is already a valid Beancount commodity is kept; otherwise a sanitized prefix plus a short hash of
the code is used, and the original code is kept as ``code`` metadata. An account code is split on
``:``, each component sanitized (first letter upper-cased, other characters than letters, digits
and ``-`` replaced by ``-``, ``X`` prefixed when it does not start with a letter or digit), under
the root of the account's type; when two codes map to the same name, a short hash of the code is
appended. Accounts carry their ledger code as ``code`` metadata.
"""

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from django.db import connection, transaction
from django.db.models import Min

from ledger.models import Account, Commodity, Entry, Posting


class Writer(Protocol):
    """Anything text can be written to: a file, or a management command's stdout."""

    def write(self, text: str, /) -> object: ...


COMMODITY_NAME = re.compile(r"[A-Z][A-Z0-9'._-]{0,22}[A-Z0-9]")
ACCOUNT_COMPONENT = re.compile(r"[A-Z0-9][A-Za-z0-9-]*")
ACCOUNT_ROOTS = {
    Account.Type.ASSET: "Assets",
    Account.Type.LIABILITY: "Liabilities",
    Account.Type.EQUITY: "Equity",
    Account.Type.INCOME: "Income",
    Account.Type.EXPENSE: "Expenses",
}
HASH_LENGTH = 8


def _hash(text: str, length: int = HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length].upper()


def commodity_name(code: str) -> str:
    """A valid Beancount commodity name for a ledger commodity code (deterministic)."""
    if COMMODITY_NAME.fullmatch(code):
        return code
    prefix = re.sub(r"[^A-Z0-9'._-]", "-", code.upper())
    if not prefix[:1].isalpha() or not prefix[:1].isascii():
        prefix = "X" + prefix
    prefix = prefix[: 24 - 1 - HASH_LENGTH].rstrip("'._-")
    # The hash ends in a letter or digit; the prefix starts with a letter: always valid.
    return f"{prefix}-{_hash(code)}"


def commodity_names(codes: Iterable[str]) -> dict[str, str]:
    """Map codes to unique commodity names. A hashed name cannot equal a kept code unless the
    code itself looks like one; such a clash is broken by a longer hash."""
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for code in sorted(codes):
        name = commodity_name(code)
        length = HASH_LENGTH
        while name in taken:
            length += 2
            name = f"{re.sub(r'[^A-Z0-9]', 'X', code.upper())[:4]}-{_hash(code, length)}"
            name = name if name[0].isalpha() else "X" + name[1:]
        names[code] = taken[name] = name
    return names


def _component(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9-]", "-", text)
    if not text:
        return "X"
    if text[0].isascii() and text[0].islower():
        text = text[0].upper() + text[1:]
    if not ACCOUNT_COMPONENT.fullmatch(text):
        text = "X" + text
    return text


def account_name(code: str, type: str) -> str:
    """A valid Beancount account name for a ledger account (not yet made unique)."""
    return ":".join([ACCOUNT_ROOTS[Account.Type(type)], *map(_component, code.split(":"))])


def account_names(accounts: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Map (code, type) pairs to unique Beancount account names, deterministically."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for code, type in sorted(accounts):
        name = account_name(code, type)
        length = HASH_LENGTH
        while name in taken:
            name = f"{account_name(code, type)}-{_hash(code, length)}"
            length += 2
        names[code] = name
        taken.add(name)
    return names


def format_amount(amount: int, scale: int) -> str:
    """``amount / 10 ** scale`` written exactly, e.g. (-1500000, 6) -> ``-1.500000``."""
    sign = "-" if amount < 0 else ""
    units, fraction = divmod(abs(amount), 10**scale)
    return f"{sign}{units}.{fraction:0{scale}d}" if scale else f"{sign}{units}"


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def export_beancount(out: Writer, *, account_codes: Sequence[str] = ()) -> int:
    """Write the ledger (or the entries touching ``account_codes``) to ``out``.

    Returns the number of transactions written. Raises ``Account.DoesNotExist`` for an unknown
    code.
    """
    owns_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if owns_transaction and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _export(out, account_codes)


def _export(out: Writer, account_codes: Sequence[str]) -> int:
    all_accounts = {account.pk: account for account in Account.objects.order_by("id")}
    commodities = {commodity.pk: commodity for commodity in Commodity.objects.order_by("code")}
    commodity_name_of = commodity_names(c.code for c in commodities.values())
    account_name_of = account_names((a.code, a.type) for a in all_accounts.values())

    entries = Entry.objects.order_by("id")
    selected: list[Account] = list(all_accounts.values())
    if account_codes:
        by_code = {account.code: account for account in all_accounts.values()}
        missing = sorted(set(account_codes) - set(by_code))
        if missing:
            raise Account.DoesNotExist(f"No ledger account {', '.join(missing)}.")
        selected = [by_code[code] for code in sorted(set(account_codes))]
        entries = entries.filter(
            id__in=Posting.objects.filter(account__in=selected).values("entry_id")
        )

    postings_by_entry: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    postings = Posting.objects.order_by("id").values_list(
        "entry_id", "account_id", "commodity_id", "amount"
    )
    if account_codes:
        postings = postings.filter(entry__in=entries)
    for entry_id, account_id, commodity_id, amount in postings.iterator(chunk_size=5000):
        postings_by_entry[entry_id].append((account_id, commodity_id, amount))

    # Accounts to open: every account touched by an exported entry, and the selected ones.
    touched = {account_id for rows in postings_by_entry.values() for account_id, _, _ in rows}
    opened = sorted(touched | {account.pk for account in selected})
    first_use = dict(
        Posting.objects.filter(account_id__in=opened)
        .order_by()
        .values("account_id")
        .annotate(first=Min("entry__created_at"))
        .values_list("account_id", "first")
    )
    open_day = {
        account_id: min(
            _day(all_accounts[account_id].created_at),
            _day(first_use.get(account_id) or all_accounts[account_id].created_at),
        )
        for account_id in opened
    }
    entry_rows = list(entries.values_list("id", "created_at", "description", "reverses_id"))
    last_day = max(
        [_day(row[1]) for row in entry_rows] + list(open_day.values()),
        default=datetime.now(UTC).date(),
    )
    earliest = min(
        [*open_day.values(), *(_day(c.created_at) for c in commodities.values())],
        default=last_day,
    )

    write = out.write
    write(";; Exported from the ledger.\n")
    usd = next((c for c in commodities.values() if c.code == "USD"), None)
    if usd is not None:
        write(f'option "operating_currency" "{commodity_name_of[usd.code]}"\n')
    write("\n")
    for commodity in commodities.values():
        write(f"{earliest.isoformat()} commodity {commodity_name_of[commodity.code]}\n")
        write(f"  code: {_string(commodity.code)}\n")
        write(f"  name: {_string(commodity.name)}\n")
        write(f"  scale: {commodity.scale}\n")
    write("\n")
    for account_id in opened:
        account = all_accounts[account_id]
        currency = commodity_name_of[commodities[account.commodity_id].code]
        name = account_name_of[account.code]
        write(f"{open_day[account_id].isoformat()} open {name} {currency}\n")
        write(f"  code: {_string(account.code)}\n")
    write("\n")
    for entry_id, created_at, description, reverses_id in entry_rows:
        write(f"{_day(created_at).isoformat()} * {_string(description)}\n")
        write(f"  ledger_entry: {entry_id}\n")
        if reverses_id is not None:
            write(f"  ledger_reverses: {reverses_id}\n")
        for account_id, commodity_id, amount in postings_by_entry[entry_id]:
            commodity = commodities[commodity_id]
            name = account_name_of[all_accounts[account_id].code]
            number = format_amount(amount, commodity.scale)
            write(f"  {name}  {number} {commodity_name_of[commodity.code]}\n")
        write("\n")
    as_of = last_day + timedelta(days=1)
    for account in sorted(selected, key=lambda a: a.code):
        commodity = commodities[account.commodity_id]
        number = format_amount(account.balance, commodity.scale)
        write(
            f"{as_of.isoformat()} balance {account_name_of[account.code]}  "
            f"{number} ~ 0 {commodity_name_of[commodity.code]}\n"
        )
    return len(entry_rows)
