"""The portfolio and the ledger statement of the signed-in member's trading accounts.

Every figure comes from the selectors, and only for accounts of organizations the member
belongs to: another organization's account asked for by id is a 404, never its data.

Statement order: newest first, on the page and in the CSV download alike (as the REST API's
statement), with the balance after each line.
"""

import csv
import re
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from exchange.models import Account
from exchange.selectors import entitlements, funding, participants, positions
from exchange.selectors.account import (
    StatementLine,
    StatementSource,
    balances_of,
    statement_lines,
    statement_postings,
    statement_source,
)
from exchange.selectors.notices import notices_of_organizations
from exchange.selectors.orders import (
    STATUS_LIVE,
    fills_in,
    orders_ended_lately,
    orders_of,
    trades_of,
)
from exchange.selectors.risk import margin_call_of
from exchange.services import funding as funding_services
from exchange.services.ledger_accounts import USD_CODE
from exchange.units import usd_figure
from exchange.web.membership import membership_of, trading_account_of
from exchange.web.order_reasons import done_reason_text

RECENT_FUNDING_ROWS = 10
# The newest notices of the member's organizations (all of them: GET /api/v1/account/notices/).
NOTICES_ROWS = 10
OPEN_ORDERS_ROWS_MAX = 50
ENDED_ORDERS_ROWS = 10
RECENT_TRADES_ROWS = 20  # The account's fills in its 20 latest trades.
STATEMENT_PAGE_SIZE = 50
# A download is one response held in memory; a longer statement is read page by page through
# the API instead.
STATEMENT_CSV_ROWS_MAX = 100_000
STATEMENT_CSV_CHUNK_ROWS = 1_000
ASSET_LENGTH_MAX = 64  # The longest commodity code the ledger stores.
MICROS = Decimal("0.000001")
CSV_HEADER = ["posted_at", "entry_id", "description", "asset", "amount", "balance_after"]


def quantity_text(value: Decimal | int) -> str:
    """Dollars with thousands separators: cents when exact, else every micro-dollar (fees are
    not always whole cents, and a statement must not round); GPU-hours as whole numbers."""
    if isinstance(value, Decimal):
        return usd_figure(value)
    return f"{value:,}"


def _decimal_string(value: Decimal | int) -> str:
    """A CSV amount: dollars with six decimals (exact, as the REST API writes them)."""
    if isinstance(value, Decimal):
        return format(value.quantize(MICROS), "f")
    return str(value)


@login_required
@require_GET
def portfolio(request: HttpRequest) -> HttpResponse:
    """The signed-in member's organizations: each trading account's cash, margin, positions,
    entitlements, open orders, fills and recent funding.

    Only the member's own organizations are read, so nobody sees another's money.
    """
    memberships = list(participants.memberships_of(request.user))
    accounts = participants.accounts_of_organizations([m.organization_id for m in memberships])
    rows = [_portfolio_row(account) for account in accounts]
    context = {
        "memberships": memberships,
        "notices": notices_of_organizations([m.organization_id for m in memberships])[
            :NOTICES_ROWS
        ],
        "rows": rows,
        "test_funds_mode": funding_services.test_mode_active(),
        "open_orders_rows_max": OPEN_ORDERS_ROWS_MAX,
        "ended_orders_rows": ENDED_ORDERS_ROWS,
    }
    return render(request, "exchange/portfolio.html", context)


def _portfolio_row(account: Account) -> dict[str, object]:
    account_positions = positions.positions_of(account)
    margin_total, pnl_total = positions.portfolio_totals(account_positions)
    # One row more than shown tells whether there are more.
    open_orders = list(orders_of(account, status=STATUS_LIVE)[: OPEN_ORDERS_ROWS_MAX + 1])
    fills = fills_in(trades_of(account)[:RECENT_TRADES_ROWS], account)
    ended = orders_ended_lately(account)[:ENDED_ORDERS_ROWS]
    return {
        "account": account,
        "cash": funding.cash_balance(account),
        "margin_call": margin_call_of(account),
        "positions": account_positions,
        "margin_total": margin_total,
        "pnl_total": pnl_total,
        "entitlements": entitlements.entitlements_of(account),
        "open_orders": open_orders[:OPEN_ORDERS_ROWS_MAX],
        "open_orders_more": len(open_orders) > OPEN_ORDERS_ROWS_MAX,
        "ended_orders": [{"order": order, "why": done_reason_text(order)} for order in ended],
        "fills": [{"fill": fill, "fee": quantity_text(fill.fee)} for fill in fills],
        "deposits": funding.deposits_of(account).order_by("-id")[:RECENT_FUNDING_ROWS],
        "withdrawals": funding.withdrawals_of(account).order_by("-id")[:RECENT_FUNDING_ROWS],
    }


@dataclass(frozen=True)
class _Statement:
    account: Account
    accounts: list[Account]  # Every account the member may read, for the account selector.
    source: StatementSource
    assets: list[str]  # USD first, then the GPU-hour entitlements held.


def _statement_of(request: HttpRequest) -> _Statement:
    """The account and asset asked for in the query string (the member's main account and USD
    by default); 404 for an account that is not the member's or an asset it never held."""
    memberships = list(participants.memberships_of(request.user))
    if not memberships:
        raise Http404("Not a member of any organization.")
    accounts = list(
        participants.accounts_of_organizations([m.organization_id for m in memberships])
    )
    requested = request.GET.get("account", "")
    if requested:
        account = next((row for row in accounts if str(row.pk) == requested), None)
        if account is None:
            raise Http404("No such account of yours.")
    else:
        account = trading_account_of(membership_of(request))
    asset = request.GET.get("asset") or USD_CODE
    source = statement_source(account, asset) if len(asset) <= ASSET_LENGTH_MAX else None
    if source is None:
        raise Http404(f"Account {account} never held {asset}.")
    assets = [balance.asset for balance in balances_of(account)]
    if asset not in assets:  # Held once, sold or delivered since: still has a statement.
        assets.append(asset)
    return _Statement(account=account, accounts=accounts, source=source, assets=assets)


def _line_row(line: StatementLine) -> dict[str, object]:
    return {
        "line": line,
        "amount": quantity_text(line.amount),
        "balance_after": quantity_text(line.balance_after),
        "incoming": line.amount > 0,
    }


@login_required
@require_GET
def statement(request: HttpRequest) -> HttpResponse:
    """One asset's ledger lines of one account, newest first, with the balance after each."""
    found = _statement_of(request)
    paginator = Paginator(statement_postings(found.source), STATEMENT_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    lines = statement_lines(found.source, list(page.object_list))
    context = {
        "account": found.account,
        "accounts": found.accounts,
        "asset": found.source.asset,
        "assets": found.assets,
        "unit": "USD" if found.source.asset == USD_CODE else "GPU-hours",
        "page": page,
        "lines": [_line_row(line) for line in lines],
    }
    return render(request, "exchange/statement.html", context)


@login_required
@require_GET
def statement_csv(request: HttpRequest) -> HttpResponse:
    """The whole statement as CSV, newest first: a header row, then one row per line with the
    amount and the balance after it as decimal strings in the asset's unit."""
    found = _statement_of(request)
    # Pinned at the newest line now, so lines posted during the download do not shift it.
    newest = statement_postings(found.source).first()
    before_id = newest.pk + 1 if newest is not None else 0
    postings = statement_postings(found.source).filter(id__lt=before_id)
    count = postings.count()
    if count > STATEMENT_CSV_ROWS_MAX:
        return HttpResponse(
            f"The statement has {count} lines, more than the {STATEMENT_CSV_ROWS_MAX} a download "
            "holds. Read it page by page through the REST API (/api/v1/account/statement/).",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    name = re.sub(
        r"[^A-Za-z0-9_-]+",
        "-",
        f"statement-{found.account.organization.slug}-{found.account.name}-{found.source.asset}",
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    # Chunks by id (newest first), each with its own running-balance start: the selector
    # computes the balance after a chunk's first line from the ledger, so chunks agree.
    for _ in range(count // STATEMENT_CSV_CHUNK_ROWS + 1):
        rows = list(postings.filter(id__lt=before_id)[:STATEMENT_CSV_CHUNK_ROWS])
        if not rows:
            break
        for line in statement_lines(found.source, rows):
            writer.writerow(
                [
                    line.posted_at.isoformat(),
                    line.entry_id,
                    line.description,
                    found.source.asset,
                    _decimal_string(line.amount),
                    _decimal_string(line.balance_after),
                ]
            )
        before_id = rows[-1].pk
    return response
