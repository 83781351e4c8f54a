"""What the exchange tells an organization's members when something happens to its accounts
that they did not do themselves: a margin call, its cure, a liquidation, a deposit credited or
reversed, a withdrawal paid or refused, a delivery they failed, what a pool's round allocated
them."""

from django.db import models


class Notice(models.Model):
    """One notice to an organization: kept here (the API and the portfolio page list them),
    sent on its private feed channel at the commit that made it, and emailed to its members
    by a Celery task (``emailed_at`` once sent)."""

    class Kind(models.TextChoices):
        MARGIN_CALL = "margin_call", "Margin call"
        MARGIN_CALL_CURED = "margin_call_cured", "Margin call cured"
        LIQUIDATION = "liquidation", "Liquidation"
        DEPOSIT_CREDITED = "deposit_credited", "Deposit credited"
        DEPOSIT_FAILED = "deposit_failed", "Deposit not paid"
        DEPOSIT_REVERSED = "deposit_reversed", "Deposit reversed"
        WITHDRAWAL_PAID = "withdrawal_paid", "Withdrawal paid"
        WITHDRAWAL_REFUSED = "withdrawal_refused", "Withdrawal rejected or failed"
        DELIVERY_FAILED = "delivery_failed", "Delivery failure penalty"
        POOL_ALLOCATION = "pool_allocation", "Pool allocation"

    organization = models.ForeignKey(
        "exchange.Organization", on_delete=models.PROTECT, related_name="notices"
    )
    account = models.ForeignKey(
        "exchange.Account", on_delete=models.PROTECT, related_name="notices"
    )
    kind = models.CharField(max_length=30, choices=Kind.choices)
    # What the notice is of, once: a service that runs again (a retried task, a replayed
    # webhook) finds it and tells nobody twice.
    key = models.CharField(max_length=120, unique=True)
    subject = models.CharField(max_length=200)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the email went to the members (null: not yet)."
    )
    email_recipients = models.PositiveIntegerField(
        default=0, help_text="Members it was emailed to (those with an address)."
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["organization", "-id"], name="notice_by_organization")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} to {self.organization_id}: {self.subject}"
