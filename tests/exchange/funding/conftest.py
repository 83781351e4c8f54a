"""A fake Stripe API on loopback, signed webhook payloads, and a guard against the network."""

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.contrib.auth import get_user_model

from exchange.models import Organization

WEBHOOK_SECRET = "whsec_test_fake_secret"
SECRET_KEY = "sk_test_fake_key"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Stripe's minimum charge in USD cents: it refuses a Checkout Session for less.
CHECKOUT_CENTS_MIN = 50


@dataclass
class FakeStripe:
    """What the fake server received, and switches that make it fail."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_payouts: bool = False
    # A payout answered without saying whether it was made: "server_error" (500) or
    # "in_progress" (409, another request with the same idempotency key still running), not
    # made; or "made_then_server_error": made, then answered with a 500.
    payout_unconfirmed: str = ""
    counter: int = 0
    # Payouts made, oldest first, and the answers Stripe keeps per idempotency key (for 24
    # hours: ``forget_keys`` is that time passing).
    payouts: list[dict[str, Any]] = field(default_factory=list)
    idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: list[dict[str, list[str]]] = field(default_factory=list)

    def forget_keys(self) -> None:
        self.idempotent.clear()

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_test_{self.counter:06d}"


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # Keep test output quiet.
            pass

        def _reply(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_fake")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {
                key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()
            }
            fake.requests.append(
                {
                    "path": self.path,
                    "form": form,
                    "idempotency_key": self.headers.get("Idempotency-Key"),
                    "authorization": self.headers.get("Authorization"),
                }
            )
            if self.path == "/v1/checkout/sessions":
                amount = int(form["line_items[0][price_data][unit_amount]"])
                if amount < CHECKOUT_CENTS_MIN:
                    self._reply(
                        400,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "code": "amount_too_small",
                                "message": "The Checkout Session's total amount due must add "
                                "up to at least $0.50 usd",
                            }
                        },
                    )
                    return
                session_id = fake.next_id("cs")
                self._reply(
                    200,
                    {
                        "id": session_id,
                        "object": "checkout.session",
                        "amount_total": amount,
                        "currency": form["line_items[0][price_data][currency]"],
                        "client_reference_id": form.get("client_reference_id"),
                        "mode": "payment",
                        "payment_status": "unpaid",
                        "status": "open",
                        "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                    },
                )
            elif (
                self.path == "/v1/payouts"
                and self.headers.get("Idempotency-Key") in fake.idempotent
            ):
                self._reply(200, fake.idempotent[self.headers["Idempotency-Key"]])
            elif self.path == "/v1/payouts" and fake.payout_unconfirmed == "made_then_server_error":
                self._payout_made(form)
                self._reply(
                    500,
                    {"error": {"type": "api_error", "message": "Try again with the same key."}},
                    {"Stripe-Should-Retry": "false"},
                )
            elif self.path == "/v1/payouts" and fake.payout_unconfirmed:
                status, kind = {
                    "server_error": (500, "api_error"),
                    "in_progress": (409, "idempotency_error"),
                }[fake.payout_unconfirmed]
                self._reply(
                    status,
                    {"error": {"type": kind, "message": "Try again with the same key."}},
                    # The client would retry at once; the test retries itself.
                    {"Stripe-Should-Retry": "false"},
                )
            elif self.path == "/v1/payouts" and fake.fail_payouts:
                self._reply(
                    400,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "balance_insufficient",
                            "message": "You have insufficient funds in your Stripe account.",
                        }
                    },
                )
            elif self.path == "/v1/payouts":
                self._reply(200, self._payout_made(form))
            else:
                self._reply(404, {"error": {"type": "invalid_request_error", "message": "?"}})

        def _payout_made(self, form: dict[str, str]) -> dict[str, Any]:
            payout = {
                "id": fake.next_id("po"),
                "object": "payout",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "status": "pending",
                "created": int(time.time()),
                "metadata": {
                    key[len("metadata[") : -1]: value
                    for key, value in form.items()
                    if key.startswith("metadata[")
                },
            }
            fake.payouts.append(payout)
            key = self.headers.get("Idempotency-Key")
            if key:
                fake.idempotent[key] = payout
            return payout

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            params = parse_qs(query)
            fake.lists.append(params)
            if path != "/v1/payouts":
                self._reply(404, {"error": {"type": "invalid_request_error", "message": "?"}})
                return
            since = int(params.get("created[gte]", ["0"])[0])
            limit = int(params.get("limit", ["10"])[0])
            newest_first = [p for p in reversed(fake.payouts) if p["created"] >= since]
            after = params.get("starting_after", [""])[0]
            if after:
                ids = [p["id"] for p in newest_first]
                newest_first = newest_first[ids.index(after) + 1 :]
            page = newest_first[:limit]
            self._reply(
                200,
                {
                    "object": "list",
                    "url": "/v1/payouts",
                    "data": page,
                    "has_more": len(newest_first) > limit,
                },
            )

    return Handler


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any connection to a host other than loopback fails the test."""
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK_HOSTS:
            raise AssertionError(f"test tried to reach the network: {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def test_funds_mode(settings):
    """The embedded default: no Stripe keys."""
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = ""


@pytest.fixture
def fake_stripe(settings):
    """Stripe mode, with the client pointed at a fake Stripe API on 127.0.0.1."""
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake.url
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def sign(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(event_id: str, type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": int(time.time()),
            "livemode": False,
            "type": type,
            "data": {"object": obj},
        }
    ).encode()


def session_paid(deposit, *, payment_intent: str = "pi_test_1", **changes) -> dict[str, Any]:
    obj = {
        "id": deposit.stripe_checkout_session_id,
        "object": "checkout.session",
        "amount_total": int(deposit.amount * 100),
        "currency": "usd",
        "client_reference_id": str(deposit.pk),
        "payment_intent": payment_intent,
        "payment_status": "paid",
        "status": "complete",
    }
    obj.update(changes)
    return obj


def deliver(client, body: bytes, signature: str | None = None):
    return client.post(
        "/stripe/webhook/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": signature if signature is not None else sign(body)},
    )


@pytest.fixture
def staff(db):
    """Staff with the finance role, which reviews withdrawals."""
    from exchange.backoffice.roles import Role
    from exchange.services.staff import staff_roles_grant

    user = get_user_model().objects.create_user("finance", is_staff=True)
    staff_roles_grant(user=user, roles=[Role.FINANCE], actor=None)
    return user


@pytest.fixture
def customer(db):
    return get_user_model().objects.create_user("alice")


def funding_rows() -> dict[str, int]:
    """Row counts of everything funding can write, to assert that a refusal wrote nothing."""
    from exchange.models import AuditEntry, Deposit, StripeEvent, Withdrawal
    from ledger.models import Account, Entry, Hold, Posting

    return {
        "deposits": Deposit.objects.count(),
        "withdrawals": Withdrawal.objects.count(),
        "events": StripeEvent.objects.count(),
        "audit": AuditEntry.objects.count(),
        "ledger_accounts": Account.objects.count(),
        "entries": Entry.objects.count(),
        "postings": Posting.objects.count(),
        "holds": Hold.objects.count(),
    }


# The funding tests start from empty accounts (the shared fixtures are funded for trading).


@pytest.fixture
def buyer(db):
    from tests.exchange.conftest import _account

    return _account("lumen", Organization.Kind.STARTUP, funded=False)


@pytest.fixture
def seller(db):
    from tests.exchange.conftest import _account

    return _account("northwind", Organization.Kind.PROVIDER, funded=False)
