"""The daily risk cycle's records: settlement prices, the cycle run of each trading day, and
margin calls. Money in the ledger's unit, micro-USD; prices in $/GPU-hr."""

from django.conf import settings
from django.db import models


class SettlementPrice(models.Model):
    """An instrument's settlement price for one trading day: the price variation margin, margin
    and expiry use. Set once per day (``source``); staff may override it with a reason until
    the day is settled."""

    class Source(models.TextChoices):
        VWAP = "vwap", "Closing-window VWAP"
        MID = "mid", "Mid of best bid and ask"
        MODEL = "model", "Model (forward curve or Black-76)"
        PREVIOUS = "previous", "Previous settlement"
        LAST_TRADE = "last_trade", "Last trade"
        OVERRIDE = "override", "Staff override"

    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="settlement_prices"
    )
    trading_date = models.DateField()
    price = models.DecimalField(max_digits=18, decimal_places=6, help_text="$/GPU-hr.")
    source = models.CharField(max_length=12, choices=Source.choices)
    volume = models.PositiveIntegerField(default=0, help_text="Contracts in the closing window.")
    implied_volatility = models.DecimalField(
        max_digits=10,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Options: the annualized volatility the price implies (or the model used).",
    )
    reason = models.CharField(max_length=300, blank=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-trading_date", "instrument_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "trading_date"], name="settlement_price_unique_day"
            ),
            models.CheckConstraint(
                condition=models.Q(price__gte=0), name="settlement_price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.trading_date}: {self.price} ({self.source})"


class RiskCycle(models.Model):
    """One trading day's cycle: prices set, then settled (variation margin, expiry, margin)."""

    class Status(models.TextChoices):
        PRICED = "priced", "Prices set (preview)"
        SETTLED = "settled", "Settled"

    trading_date = models.DateField(unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PRICED)
    close_at = models.DateTimeField(help_text="End of the closing window the prices come from.")
    priced_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    summary = models.JSONField(default=dict, blank=True, help_text="What the settlement did.")

    class Meta:
        ordering = ["-trading_date"]

    def __str__(self) -> str:
        return f"{self.trading_date} ({self.status})"


class MarginCall(models.Model):
    """An account whose margin fell below maintenance: reduce-only until cured."""

    class Status(models.TextChoices):
        OPEN = "open", "Open (reduce-only)"
        CURED = "cured", "Cured"
        LIQUIDATED = "liquidated", "Liquidated"

    account = models.ForeignKey(
        "exchange.Account", on_delete=models.PROTECT, related_name="margin_calls"
    )
    trading_date = models.DateField(help_text="The daily settlement that made the call.")
    required = models.BigIntegerField(help_text="Initial margin required, micro-USD.")
    maintenance = models.BigIntegerField(help_text="Maintenance margin, micro-USD.")
    held = models.BigIntegerField(help_text="Margin held after the top-up, micro-USD.")
    deficit = models.BigIntegerField(
        default=0, help_text="Losses the account could not pay, micro-USD (owed to the exchange)."
    )
    amount_called = models.BigIntegerField(
        default=0,
        help_text="What the call asked for when it was made, micro-USD: initial margin required "
        "less margin held, plus the deficit. The figures above follow the account (each later "
        "settlement and review); this does not.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    reviews = models.PositiveIntegerField(default=0, help_text="Top-ups posted since the call.")
    created_at = models.DateTimeField(auto_now_add=True)
    figured_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a later daily settlement or a review last set the figures (null: "
        "they are the call's own).",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(status="open"),
                name="margin_call_one_open_per_account",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.trading_date} ({self.status})"

    @property
    def amount(self) -> int:
        """What the account must bring to cure the call, micro-USD."""
        return max(self.required - self.held, 0) + self.deficit
