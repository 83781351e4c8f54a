"""Money in and out: the funding page of the signed-in member's organization, and the Stripe
webhook endpoint.

The page shows the main trading account's cash and its recent deposits and withdrawals.
Traders deposit (Stripe Checkout, or test funds credited at once when no Stripe keys are
configured) and ask for withdrawals, which hold the amount until staff review them. Viewers see
the page; a POST from a viewer is refused (403). The services check the amounts; a refusal is
shown next to the field and writes nothing.
"""

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from exchange.errors import FundingError
from exchange.models import Account, Withdrawal
from exchange.selectors.funding import cash_balance, deposits_of, withdrawals_of
from exchange.services.funding import (
    CENTS,
    CHECKOUT_AMOUNT_MAX,
    CHECKOUT_AMOUNT_MIN,
    TEST_FUNDS_AMOUNT_MAX,
    WITHDRAWAL_AMOUNT_MAX,
    deposit_request,
    stripe_webhook_handle,
    test_mode_active,
    withdrawal_cancel,
    withdrawal_request,
)
from exchange.web.membership import (
    can_trade,
    forbidden,
    membership_of,
    signed_in_user,
    trading_account_of,
)
from exchange.web.portfolio import quantity_text
from exchange.web.refusals import refusal_text

RECENT_FUNDING_ROWS = 20
ACTION_DEPOSIT = "deposit"
ACTION_WITHDRAWAL = "withdrawal"
ACTION_CANCEL_WITHDRAWAL = "cancel_withdrawal"
CHECKOUT_RETURN_PARAMETER = "checkout"  # Stripe sends the payer back with ?checkout=...
CHECKOUT_RETURNS = {
    "success": "Payment received by Stripe. The deposit is credited as soon as Stripe "
    "confirms it, usually within a minute.",
    "cancel": "Checkout cancelled: nothing was charged.",
}


class AmountForm(forms.Form):
    """A positive amount in whole cents; the service enforces each mode's maximum."""

    amount = forms.DecimalField(
        decimal_places=2,
        min_value=Decimal("0.01"),
        error_messages={
            "required": "Give an amount in USD.",
            "invalid": "Give an amount in USD, such as 2500.00.",
            "min_value": "Give a positive amount, at least 0.01 USD.",
            "max_decimal_places": "Give whole cents: at most 2 decimals.",
        },
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0.01", "inputmode": "decimal"}),
    )

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        prefix: str,
        label: str,
        amount_max: Decimal,
        amount_min: Decimal = CENTS,
    ) -> None:
        super().__init__(data, prefix=prefix)
        field = self.fields["amount"]
        field.label = label
        field.help_text = f"At most {quantity_text(amount_max)} USD."
        if amount_min > CENTS:
            field.help_text = (
                f"At least {quantity_text(amount_min)} and at most {quantity_text(amount_max)} USD."
            )
        field.widget.attrs["max"] = str(amount_max)
        field.widget.attrs["min"] = str(amount_min)


def _deposit_form(data: QueryDict | None = None) -> AmountForm:
    test_mode = test_mode_active()
    return AmountForm(
        data,
        prefix=ACTION_DEPOSIT,
        label="Test funds amount (USD)" if test_mode else "Deposit amount (USD)",
        amount_max=TEST_FUNDS_AMOUNT_MAX if test_mode else CHECKOUT_AMOUNT_MAX,
        amount_min=CENTS if test_mode else CHECKOUT_AMOUNT_MIN,
    )


def _withdrawal_form(data: QueryDict | None = None) -> AmountForm:
    return AmountForm(
        data,
        prefix=ACTION_WITHDRAWAL,
        label="Withdrawal amount (USD)",
        amount_max=WITHDRAWAL_AMOUNT_MAX,
    )


def _refused(form: AmountForm, error: FundingError) -> None:
    """The service's refusal next to its field, or above the form for one it does not show."""
    form.add_error(error.field if error.field in form.fields else None, refusal_text(error))


@login_required
@require_http_methods(["GET", "POST"])
def funding(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    account = trading_account_of(membership)
    deposit_form, withdrawal_form = _deposit_form(), _withdrawal_form()
    if request.method == "POST":
        if not can_trade(membership):
            return forbidden(request, "Your role is viewer: only traders move money.")
        action = request.POST.get("action")
        if action == ACTION_DEPOSIT:
            deposit_form = _deposit_form(request.POST)
            if deposit_form.is_valid():
                amount = deposit_form.cleaned_data["amount"]
                here = request.build_absolute_uri(reverse("web:funding"))
                try:
                    deposit, checkout_url = deposit_request(
                        account=account,
                        amount=amount,
                        actor=signed_in_user(request),
                        success_url=f"{here}?{CHECKOUT_RETURN_PARAMETER}=success",
                        cancel_url=f"{here}?{CHECKOUT_RETURN_PARAMETER}=cancel",
                    )
                except FundingError as error:
                    _refused(deposit_form, error)
                else:
                    if checkout_url is not None:
                        return redirect(checkout_url)
                    messages.success(
                        request, f"{quantity_text(deposit.amount)} USD of test funds credited."
                    )
                    return redirect("web:funding")
        elif action == ACTION_WITHDRAWAL:
            withdrawal_form = _withdrawal_form(request.POST)
            if withdrawal_form.is_valid():
                try:
                    withdrawal = withdrawal_request(
                        account=account,
                        amount=withdrawal_form.cleaned_data["amount"],
                        actor=signed_in_user(request),
                    )
                except FundingError as error:
                    _refused(withdrawal_form, error)
                else:
                    messages.success(
                        request,
                        f"Withdrawal of {quantity_text(withdrawal.amount)} USD requested: "
                        "the amount is held until staff review it.",
                    )
                    return redirect("web:funding")
        elif action == ACTION_CANCEL_WITHDRAWAL:
            return _cancel_withdrawal(request, account)
        else:
            return HttpResponseBadRequest(
                "Unknown action: deposit, withdrawal or cancel_withdrawal."
            )
    context = {
        "organization": membership.organization,
        "account": account,
        "can_move_money": can_trade(membership),
        "test_funds_mode": test_mode_active(),
        "cash": cash_balance(account),
        "deposit_form": deposit_form,
        "withdrawal_form": withdrawal_form,
        "checkout_return": CHECKOUT_RETURNS.get(request.GET.get(CHECKOUT_RETURN_PARAMETER, "")),
        "deposits": deposits_of(account).order_by("-id")[:RECENT_FUNDING_ROWS],
        "withdrawals": withdrawals_of(account).order_by("-id")[:RECENT_FUNDING_ROWS],
    }
    return render(request, "exchange/funding.html", context)


def _cancel_withdrawal(request: HttpRequest, account: Account) -> HttpResponse:
    """The member takes back a withdrawal staff have not reviewed; another account's id is 404."""
    withdrawal_id = request.POST.get("withdrawal", "")
    if not withdrawal_id.isdigit():
        return HttpResponseBadRequest("Give the withdrawal to cancel.")
    try:
        withdrawal = withdrawal_cancel(
            account=account, withdrawal_id=int(withdrawal_id), actor=signed_in_user(request)
        )
    except Withdrawal.DoesNotExist as error:
        raise Http404(withdrawal_id) from error
    except FundingError as error:
        messages.error(request, refusal_text(error))
    else:
        messages.success(
            request,
            f"Withdrawal of {quantity_text(withdrawal.amount)} USD cancelled: the amount is "
            "available again.",
        )
    return redirect("web:funding")


@csrf_exempt  # Stripe cannot send a CSRF token; the request is authenticated by its signature.
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Thin: the service verifies, stores and applies the event."""
    try:
        event = stripe_webhook_handle(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except FundingError as error:
        return JsonResponse({"error": {"code": error.code, "message": error.message}}, status=400)
    return JsonResponse({"received": True, "event": event.event_id, "status": event.status})
