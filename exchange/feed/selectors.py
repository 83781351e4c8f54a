"""The feed's reads: the book snapshot a listener starts from, and whose accounts are whose."""

from exchange.feed.messages import BOOK_LEVELS, Message, book_message
from exchange.models import Account, Instrument
from exchange.selectors.market import book_depth

# Accounts never change organization or name and are never deleted, so whose channel hears
# them is remembered for the life of the process; the bound only keeps a long-lived matcher's
# memory flat (the map is emptied and refilled when it is reached).
ACCOUNT_ORGANIZATIONS_MAX = 100_000
_account_organizations: dict[int, int | None] = {}
# The account whose orders an organization trades through the API (``account_main``).
MAIN_ACCOUNT_NAME = "main"


def book_snapshot(instrument: Instrument) -> Message:
    """The committed top of ``instrument``'s book, as a "book" message.

    The sequence is read before the levels: a batch committing in between then shows in the
    levels with the older sequence, and its own update (sequence above the snapshot's) repeats
    the same book. The other order could pair old levels with a newer sequence, and a client
    dropping updates at or below the snapshot's sequence would keep a stale book.
    """
    sequence = Instrument.objects.filter(pk=instrument.pk).values_list("sequence", flat=True)[0]
    bids, asks = book_depth(instrument, levels=BOOK_LEVELS)
    return book_message(instrument.symbol, sequence, bids, asks)


def account_organizations(account_ids: set[int]) -> dict[int, int | None]:
    """The organization whose orders channel hears each account: its organization for a main
    account, None for another (a sponsor's pool account), whose orders and fills the REST API's
    orders and fills do not list either. One query for accounts not seen before."""
    missing = account_ids - _account_organizations.keys()
    if missing:
        if len(_account_organizations) + len(missing) > ACCOUNT_ORGANIZATIONS_MAX:
            _account_organizations.clear()
            missing = set(account_ids)
        accounts = Account.objects.filter(pk__in=missing).values_list(
            "pk", "organization_id", "name"
        )
        _account_organizations.update(
            (account_id, organization_id if name == MAIN_ACCOUNT_NAME else None)
            for account_id, organization_id, name in accounts
        )
    return {account_id: _account_organizations[account_id] for account_id in account_ids}


def account_organizations_forget() -> None:
    """Forget the remembered accounts (tests that empty the database call this)."""
    _account_organizations.clear()
