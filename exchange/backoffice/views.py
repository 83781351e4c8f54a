"""The back office's pages. Each checks the staff role it needs (roles.py), reads through
``exchange.selectors.backoffice`` or the ledger's selectors, and changes state only through a
service (halt and resume: ``exchange.services.instruments``), after a confirmation step."""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from exchange.backoffice.forms import AuditFilterForm, InstrumentFilterForm, StatusChangeForm
from exchange.backoffice.paging import AppendOnlyPaginator
from exchange.backoffice.roles import ALL_ROLES, Role, role_required, roles_of
from exchange.errors import ExchangeError
from exchange.models import AuditEntry, Instrument
from exchange.selectors import backoffice
from exchange.services.instruments import (
    instrument_halt,
    instrument_resume,
    instrument_status_refusal,
)
from ledger.selectors import TrialBalanceCommodity, trial_balance

PAGE_SIZE = 100


@dataclass(frozen=True)
class Function:
    """A back-office function linked from the dashboard."""

    label: str
    url_name: str
    role: Role
    description: str
    query: str = ""

    def url(self) -> str:
        return reverse(self.url_name) + (f"?{self.query}" if self.query else "")


FUNCTIONS = [
    Function(
        "Trading status",
        "backoffice:instruments",
        Role.OPERATIONS,
        "halt and resume trading per instrument, with a reason",
    ),
    Function(
        "List the next months and strikes",
        "admin:exchange_instrument_roll",
        Role.OPERATIONS,
        "list new futures months and option strikes (idempotent)",
    ),
    Function(
        "List a futures strip",
        "admin:exchange_instrument_list_strip",
        Role.OPERATIONS,
        "list a SKU x region's monthly futures on chosen terms (cash or physical, tick, lot, "
        "price limit); the roll continues them on those terms",
    ),
    Function(
        "Orders",
        "admin:exchange_order_changelist",
        Role.OPERATIONS,
        "browse orders, cancel on a customer's behalf",
    ),
    Function(
        "API keys",
        "admin:exchange_apikey_changelist",
        Role.OPERATIONS,
        "revoke a customer's key at once (a leaked key, a program running wild), with a reason",
        "revoked_at__isempty=1",
    ),
    Function(
        "Pool rounds",
        "admin:exchange_poolround_changelist",
        Role.OPERATIONS,
        "close a portfolio pool's working round and allocate its fills",
        "status__exact=working",
    ),
    Function(
        "Run the daily settlement",
        "admin:exchange_riskcycle_run",
        Role.RISK,
        "preview prices and variation margin, then confirm; runs the day's option and futures "
        "expiry",
    ),
    Function(
        "Settlement prices",
        "admin:exchange_settlementprice_changelist",
        Role.RISK,
        "override a price with a reason until its day is settled",
    ),
    Function(
        "Margin calls",
        "admin:exchange_margincall_changelist",
        Role.RISK,
        "review (top up from cash) or liquidate",
        "status__exact=open",
    ),
    Function(
        "Position limit exemptions",
        "admin:exchange_organization_changelist",
        Role.RISK,
        "exempt an organization from the position limits, or end its exemption",
        "position_limit_exempt__exact=1",
    ),
    Function(
        "Open interest and exposure",
        "backoffice:exposure",
        Role.RISK,
        "per instrument and per account, with margin calls flagged",
    ),
    Function(
        "Withdrawals to review",
        "admin:exchange_withdrawal_changelist",
        Role.FINANCE,
        "approve (pay out) or reject (release the funds)",
        "status__exact=requested",
    ),
    Function(
        "Payouts to retry",
        "admin:exchange_withdrawal_changelist",
        Role.FINANCE,
        "approved withdrawals whose payout Stripe did not confirm, funds still held: approve "
        "again (it pays at most once)",
        "status__exact=approved",
    ),
    Function(
        "Trial balance",
        "backoffice:trial_balance",
        Role.FINANCE,
        "every ledger account per commodity, netting to zero; CSV",
    ),
]


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    roles = roles_of(request.user)
    return render(request, template, {**context, "roles": sorted(roles)}, status=status)


@role_required(*ALL_ROLES)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    roles = roles_of(request.user)
    functions = [(function, function.role in roles) for function in FUNCTIONS]
    context = {
        "today": backoffice.market_today(timezone.now()),
        "open_interest": backoffice.open_interest(),
        "functions": functions,
    }
    return _render(request, "backoffice/dashboard.html", context)


# Trading status --------------------------------------------------------------------------

STATUS_CHANGES = {
    "halt": (instrument_halt, "Halt trading", "halted", Instrument.Status.HALTED),
    "resume": (instrument_resume, "Resume trading", "resumed", Instrument.Status.ACTIVE),
}


@role_required(Role.OPERATIONS)
@require_GET
def instruments(request: HttpRequest) -> HttpResponse:
    form = InstrumentFilterForm(request.GET or None)
    # A refused filter (a status or kind that does not exist) matches nothing, as on the
    # audit log: not every instrument, as if it matched.
    rows: QuerySet[Instrument]
    if form.is_bound and not form.is_valid():
        rows = Instrument.objects.none()
    else:
        rows = backoffice.instruments_listed(**(form.cleaned_data if form.is_bound else {}))
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return _render(request, "backoffice/instruments.html", context)


@role_required(Role.OPERATIONS)
@require_http_methods(["GET", "POST"])
def instrument_status(request: HttpRequest, instrument_id: int, change: str) -> HttpResponse:
    """A GET shows what the change does and asks for a reason; only a POST with one acts."""
    if change not in STATUS_CHANGES:
        raise Http404("Unknown status change.")
    service, title, done, target = STATUS_CHANGES[change]
    instrument = get_object_or_404(Instrument, pk=instrument_id)
    # A change its status rules out is said at once, with no reason asked and no button.
    refusal = instrument_status_refusal(instrument=instrument, status=target)
    form = StatusChangeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            actor = request.user if isinstance(request.user, User) else None  # Staff: a User.
            changed = service(
                instrument=instrument, actor=actor, reason=form.cleaned_data["reason"]
            )
        except ExchangeError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Trading in {changed.symbol} {done}.")
            query = urlencode({"symbol": changed.symbol})
            return redirect(f"{reverse('backoffice:instruments')}?{query}")
    context = {
        "instrument": instrument,
        "change": change,
        "title": title,
        "form": form,
        "resting_orders": backoffice.resting_orders_in(instrument),
        "refusal": refusal.message if refusal is not None and request.method == "GET" else "",
    }
    status = 400 if form.errors else 200
    return _render(request, "backoffice/instrument_status.html", context, status=status)


# Open interest and exposure ---------------------------------------------------------------


@role_required(Role.RISK)
@require_GET
def exposure(request: HttpRequest) -> HttpResponse:
    context = {
        "open_interest": backoffice.open_interest(),
        "exposures": backoffice.exposures(),
        "rows_max": backoffice.EXPOSURE_ROWS_MAX,
    }
    return _render(request, "backoffice/exposure.html", context)


# Trial balance ---------------------------------------------------------------------------


def _units(amount: int, scale: int) -> Decimal:
    return Decimal(amount).scaleb(-scale)


def _amount_text(amount: int, scale: int) -> str:
    """An amount in its commodity's unit for the page, with thousands separators: two decimals
    when that is exact (whole cents of USD), else every decimal of the commodity's scale, so
    that nothing is rounded; whole numbers for a commodity without decimals."""
    places = 2 if scale >= 2 and amount % 10 ** (scale - 2) == 0 else scale
    return f"{_units(amount, scale).quantize(Decimal(1).scaleb(-places)):,}"


def _trial_balance_rows() -> Iterator[tuple[TrialBalanceCommodity, list[dict[str, Any]]]]:
    """Each commodity's lines: amounts as Decimals in the commodity's unit, and ``shown`` the
    same as the page writes them."""
    for group in trial_balance():
        scale = group.commodity.scale
        lines = []
        for line in group.lines:
            amounts = {
                "debits": line.debits_posted,
                "credits": line.credits_posted,
                "balance": line.balance,
                "pending": line.debits_pending - line.credits_pending,
            }
            lines.append(
                {
                    "code": line.account.code,
                    "type": line.account.get_type_display(),
                    **{name: _units(amount, scale) for name, amount in amounts.items()},
                    "shown": {
                        name: _amount_text(amount, scale) for name, amount in amounts.items()
                    },
                }
            )
        yield group, lines


@role_required(Role.FINANCE)
@require_GET
def trial_balance_page(request: HttpRequest) -> HttpResponse:
    groups = [
        {
            "commodity": group.commodity,
            "lines": lines,
            "debits": _units(group.debits_posted, group.commodity.scale),
            "credits": _units(group.credits_posted, group.commodity.scale),
            "balance": _units(group.balance, group.commodity.scale),
            "shown": {
                "debits": _amount_text(group.debits_posted, group.commodity.scale),
                "credits": _amount_text(group.credits_posted, group.commodity.scale),
                "balance": _amount_text(group.balance, group.commodity.scale),
            },
        }
        for group, lines in _trial_balance_rows()
    ]
    context = {"groups": groups, "balanced": all(group["balance"] == 0 for group in groups)}
    return _render(request, "backoffice/trial_balance.html", context)


@role_required(Role.FINANCE)
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


# Audit log ---------------------------------------------------------------------------------


def _target_url(entry: AuditEntry) -> str | None:
    """The admin page of an audit row's target, when the admin has one."""
    for app_label in ("exchange", "auth"):
        try:
            return reverse(
                f"admin:{app_label}_{entry.target_type.lower()}_change", args=[entry.target_id]
            )
        except NoReverseMatch:
            continue
    return None


def _as_text(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, ensure_ascii=False) if values else ""


@role_required(*ALL_ROLES)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    actions, target_types = backoffice.audit_choices()
    form = AuditFilterForm(request.GET or None, target_types=target_types)
    # A filter the form refuses (a target type not in the log, an over-long actor) matches
    # nothing: the page shows the error and no rows, not the whole log as if it matched.
    entries: QuerySet[AuditEntry]
    if form.is_bound and not form.is_valid():
        entries = AuditEntry.objects.none()
    else:
        entries = backoffice.audit_entries(**(form.cleaned_data if form.is_bound else {}))
    # The whole log is not counted: its size is read from its key's ends (AppendOnlyPaginator).
    page = AppendOnlyPaginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "entry": entry,
            "before": _as_text(entry.before),
            "after": _as_text(entry.after),
            "target_url": _target_url(entry),
        }
        for entry in page
    ]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "actions": actions,
        "query": query.urlencode(),
    }
    return _render(request, "backoffice/audit_log.html", context)
