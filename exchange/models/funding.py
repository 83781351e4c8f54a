"""Money in and out of trading accounts: deposits, withdrawals and the Stripe events behind them.

These rows record requests and their outcome; the money itself is in the ledger (the ids of the
entries and holds are kept here). Only ``exchange.services.funding`` writes them.
"""

from django.conf import settings
from django.db import models

from exchange.models.participants import Account


class Deposit(models.Model):
    class Method(models.TextChoices):
        TEST_FUNDS = "test_funds", "Test funds (no Stripe keys configured)"
        STRIPE_CHECKOUT = "stripe_checkout", "Stripe Checkout"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CREDITED = "credited", "Credited"
        REFUNDED = "refunded", "Refunded or disputed (credit reversed)"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="deposits")
    amount = models.DecimalField(max_digits=14, decimal_places=2, help_text="USD, whole cents.")
    method = models.CharField(max_length=16, choices=Method.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    stripe_checkout_session_id = models.CharField(
        max_length=255, unique=True, null=True, blank=True
    )
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    ledger_entry_id = models.BigIntegerField(null=True, blank=True)
    reversal_entry_id = models.BigIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="funding_deposit_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"deposit #{self.pk} {self.amount} USD to {self.account_id} ({self.status})"


class Withdrawal(models.Model):
    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested (funds held)"
        APPROVED = "approved", "Approved (payout under way)"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed (funds released)"
        REJECTED = "rejected", "Rejected (funds released)"
        CANCELLED = "cancelled", "Cancelled by the customer (funds released)"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="withdrawals")
    amount = models.DecimalField(max_digits=14, decimal_places=2, help_text="USD, whole cents.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    ledger_hold_id = models.BigIntegerField(null=True, blank=True)
    ledger_entry_id = models.BigIntegerField(null=True, blank=True)
    stripe_payout_id = models.CharField(max_length=255, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    requested_with = models.ForeignKey(
        "exchange.ApiKey",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The API key of a request made through the API (a key made on the command "
        "line has no user: this says who asked).",
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="funding_withdrawal_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"withdrawal #{self.pk} {self.amount} USD from {self.account_id} ({self.status})"

    @property
    def requester(self) -> str:
        """Who asked: the user, else the API key it came with, else the system."""
        if self.requested_by is not None:
            return self.requested_by.get_username()
        if self.requested_with is not None:
            return f"API key {self.requested_with.prefix}"
        return "system"


class StripeEvent(models.Model):
    """One verified Stripe webhook event, stored once: a repeated event id is not applied again."""

    class Status(models.TextChoices):
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (type or state needs no action)"
        UNMATCHED = "unmatched", "Stored, no matching deposit"
        FAILED = "failed", "Failed (needs staff review)"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IGNORED)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} ({self.status})"
