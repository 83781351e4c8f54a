"""The Stripe webhook endpoint. Thin: the service verifies, stores and applies the event."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from exchange.errors import FundingError
from exchange.services.funding import stripe_webhook_handle


@csrf_exempt  # Stripe cannot send a CSRF token; the request is authenticated by its signature.
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = stripe_webhook_handle(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except FundingError as error:
        return JsonResponse({"error": {"code": error.code, "message": error.message}}, status=400)
    return JsonResponse({"received": True, "event": event.event_id, "status": event.status})
