"""The operations dashboard for staff: the market today, open interest, exposure per account,
the ledger's trial balance (page and CSV), and links to the back-office functions in the admin
(the daily cycle with its preview and confirm step, listings, halts, withdrawals, margin calls,
settlement prices, the audit log). Staff only: anyone else is sent to the admin's sign-in."""

import csv
from decimal import Decimal

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from exchange.selectors import backoffice
from ledger.selectors import trial_balance


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        "today": backoffice.market_today(timezone.now().date()),
        "open_interest": backoffice.open_interest(),
        "exposures": backoffice.exposures(),
    }
    return render(request, "backoffice/dashboard.html", context)


def _units(amount: int, scale: int) -> Decimal:
    return Decimal(amount).scaleb(-scale)


def _trial_balance_rows():
    for group in trial_balance():
        scale = group.commodity.scale
        yield (
            group,
            [
                {
                    "code": line.account.code,
                    "type": line.account.get_type_display(),
                    "debits": _units(line.debits_posted, scale),
                    "credits": _units(line.credits_posted, scale),
                    "balance": _units(line.balance, scale),
                    "pending": _units(line.debits_pending - line.credits_pending, scale),
                }
                for line in group.lines
            ],
        )


@staff_member_required
@require_GET
def trial_balance_page(request: HttpRequest) -> HttpResponse:
    groups = [
        {
            "commodity": group.commodity,
            "lines": lines,
            "debits": _units(group.debits_posted, group.commodity.scale),
            "credits": _units(group.credits_posted, group.commodity.scale),
            "balance": _units(group.balance, group.commodity.scale),
        }
        for group, lines in _trial_balance_rows()
    ]
    return render(
        request,
        "backoffice/trial_balance.html",
        {"groups": groups, "balanced": all(group["balance"] == 0 for group in groups)},
    )


@staff_member_required
@require_GET
def trial_balance_csv(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="trial-balance-{stamp}.csv"'
    writer = csv.writer(response)
    writer.writerow(["commodity", "account", "type", "debits", "credits", "balance", "pending"])
    for group, lines in _trial_balance_rows():
        for line in lines:
            writer.writerow(
                [
                    group.commodity.code,
                    line["code"],
                    line["type"],
                    f"{line['debits']:f}",
                    f"{line['credits']:f}",
                    f"{line['balance']:f}",
                    f"{line['pending']:f}",
                ]
            )
    return response
