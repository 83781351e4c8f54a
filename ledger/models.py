"""A double-entry, multi-commodity, append-only ledger (after TigerBeetle's account model).

The ledger knows nothing about markets: it moves integer amounts of commodities between
accounts. Amounts are in each commodity's smallest unit (``10 ** -scale`` of one unit).

Conventions:
- a posting's ``amount`` is signed: positive debits its account, negative credits it; the
  postings of an entry sum to zero for each commodity;
- every account keeps four running totals, in the same transaction as its postings and holds:
  ``debits_posted``, ``credits_posted``, ``debits_pending``, ``credits_pending`` (all >= 0);
- an account can forbid going negative on one side, as TigerBeetle's flags:
  ``debits_must_not_exceed_credits`` (cash a customer owns: it can spend only what it has) or
  ``credits_must_not_exceed_debits`` (entitlements a holder owns). Pending amounts count:
  available = posted balance - pending amounts that would reduce it.

Accounts are never deleted; entries and postings are never updated or deleted (the database
refuses it, see migrations); corrections are reversing entries.
"""

from django.db import models


class Commodity(models.Model):
    class Kind(models.TextChoices):
        CURRENCY = "currency", "Currency"
        POSITION = "position", "Contract position"
        ENTITLEMENT = "entitlement", "GPU-hour entitlement"

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    scale = models.PositiveSmallIntegerField(help_text="Decimal places of the smallest unit.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "commodities"

    def __str__(self) -> str:
        return self.code


class Account(models.Model):
    class Type(models.TextChoices):
        ASSET = "asset", "Asset"
        LIABILITY = "liability", "Liability"
        EQUITY = "equity", "Equity"
        INCOME = "income", "Income"
        EXPENSE = "expense", "Expense"

    class Limit(models.TextChoices):
        NONE = "none", "May go either way"
        DEBITS_MUST_NOT_EXCEED_CREDITS = (
            "debits_must_not_exceed_credits",
            "Debits must not exceed credits",
        )
        CREDITS_MUST_NOT_EXCEED_DEBITS = (
            "credits_must_not_exceed_debits",
            "Credits must not exceed debits",
        )

    code = models.CharField(max_length=200, unique=True, help_text="Colon-separated path, unique.")
    owner = models.CharField(max_length=100, db_index=True, help_text="Opaque owner reference.")
    commodity = models.ForeignKey(Commodity, on_delete=models.PROTECT, related_name="accounts")
    type = models.CharField(max_length=10, choices=Type.choices)
    limit = models.CharField(max_length=32, choices=Limit.choices, default=Limit.NONE)
    closed = models.BooleanField(default=False)
    debits_posted = models.BigIntegerField(default=0)
    credits_posted = models.BigIntegerField(default=0)
    debits_pending = models.BigIntegerField(default=0)
    credits_pending = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    debits_posted__gte=0,
                    credits_posted__gte=0,
                    debits_pending__gte=0,
                    credits_pending__gte=0,
                ),
                name="ledger_account_totals_not_negative",
            ),
            models.CheckConstraint(
                condition=~models.Q(limit="debits_must_not_exceed_credits")
                | models.Q(
                    credits_posted__gte=models.F("debits_posted") + models.F("debits_pending")
                ),
                name="ledger_account_debits_within_credits",
            ),
            models.CheckConstraint(
                condition=~models.Q(limit="credits_must_not_exceed_debits")
                | models.Q(
                    debits_posted__gte=models.F("credits_posted") + models.F("credits_pending")
                ),
                name="ledger_account_credits_within_debits",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def balance(self) -> int:
        """Posted debits minus posted credits (positive: a debit balance)."""
        return self.debits_posted - self.credits_posted

    @property
    def available(self) -> int:
        """What the account's limit still allows to move out, pending holds deducted.

        For a ``debits_must_not_exceed_credits`` account: credits - debits - pending debits;
        for a ``credits_must_not_exceed_debits`` account: debits - credits - pending credits;
        for an unlimited account, the debit balance less pending credits plus pending debits is
        not meaningful, so it is the posted balance.
        """
        if self.limit == self.Limit.DEBITS_MUST_NOT_EXCEED_CREDITS:
            return self.credits_posted - self.debits_posted - self.debits_pending
        if self.limit == self.Limit.CREDITS_MUST_NOT_EXCEED_DEBITS:
            return self.debits_posted - self.credits_posted - self.credits_pending
        return self.balance


class Entry(models.Model):
    """One balanced journal entry. Its postings sum to zero per commodity."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    content_digest = models.CharField(
        max_length=64, help_text="SHA-256 of the postings and description."
    )
    description = models.CharField(max_length=300)
    metadata = models.JSONField(default=dict, blank=True)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"#{self.pk} {self.description}"


class Posting(models.Model):
    # Indexed with the commodity below: the database's balance check reads an entry's postings
    # grouped by commodity at every commit, and must never be planned as a wider scan.
    entry = models.ForeignKey(
        Entry, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings")
    # Denormalized from the account so the database can check the balance per commodity.
    commodity = models.ForeignKey(Commodity, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField(help_text="Positive: debit. Negative: credit.")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_posting_not_zero")
        ]
        indexes = [
            models.Index(fields=["account", "id"], name="ledger_posting_account"),
            models.Index(fields=["entry", "commodity"], name="ledger_posting_entry"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount:+d}"


class Hold(models.Model):
    """A pending amount on one side of one account: posted later (wholly or in parts), released in
    part while the rest stays pending (``released``), or voided.

    A hold reserves what an account's limit counts as spent, so that ``available`` is exact at
    every moment; the entries that consume it are ordinary balanced entries.
    """

    class Side(models.TextChoices):
        DEBIT = "debit", "Debit"
        CREDIT = "credit", "Credit"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        POSTED = "posted", "Posted"
        VOIDED = "voided", "Voided"
        EXPIRED = "expired", "Expired"

    idempotency_key = models.CharField(max_length=200, unique=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    side = models.CharField(max_length=6, choices=Side.choices)
    amount = models.BigIntegerField(help_text="Amount first held.")
    remaining = models.BigIntegerField(help_text="Amount still pending.")
    released = models.BigIntegerField(
        default=0,
        help_text="Released while the rest stayed pending: what its holder no longer needed held.",
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="ledger_hold_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0, remaining__lte=models.F("amount")),
                name="ledger_hold_remaining_within_amount",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="pending") | models.Q(remaining__gt=0),
                name="ledger_hold_pending_has_remaining",
            ),
            models.CheckConstraint(
                condition=models.Q(released__gte=0), name="ledger_hold_released_not_negative"
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=models.Q(status="pending"),
                name="ledger_hold_expiring",
            )
        ]

    def __str__(self) -> str:
        return f"hold #{self.pk} {self.side} {self.remaining}/{self.amount} ({self.status})"


class HoldConsumption(models.Model):
    """The part of a hold an entry consumed (append-only), so every hold change is traceable."""

    hold = models.ForeignKey(Hold, on_delete=models.PROTECT, related_name="consumptions")
    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="hold_consumptions")
    amount = models.BigIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="ledger_consumption_positive"
            ),
        ]
