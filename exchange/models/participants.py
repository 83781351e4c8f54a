"""Organizations, the people in them, and the trading accounts they hold."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class Organization(models.Model):
    class Kind(models.TextChoices):
        STARTUP = "startup", "Startup (buyer)"
        PROVIDER = "provider", "Cloud / provider (seller)"
        TRADING_FIRM = "trading_firm", "Trading firm"
        SPONSOR = "sponsor", "Portfolio program sponsor"
        EXCHANGE = "exchange", "Exchange operator"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Set by staff only (the admin), never by sign-up or the organization itself.
    position_limit_exempt = models.BooleanField(
        default=False,
        help_text=(
            "Exempt from the futures' position limits (a bona fide aggregator or hedger, such "
            "as a portfolio program buying for its startups): its orders are not refused with "
            "RISK_POSITION_LIMIT. Granted by exchange staff."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # People tell organizations apart by name: one spelling whatever the case (the
            # services strip surrounding blanks, and so do the admin's forms).
            models.UniqueConstraint(
                Lower("name"),
                name="organization_name_unique_case_insensitive",
                violation_error_message="An organization of this name already exists.",
            ),
            # The exchange is run by one operator: its organization is opened once, at set-up.
            # Another would hold accounts that may not trade (ORDER_ACCOUNT_IS_OPERATOR) and
            # staff who would look the operator's.
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(kind="exchange"),
                name="organization_one_exchange_operator",
                violation_error_message="The exchange operator's organization already exists: "
                "an organization added here is a participant.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        TRADER = "trader", "Trader"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.TRADER)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"], name="membership_unique_user_org"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


class Account(models.Model):
    """A trading account: what orders are placed by and positions are held in.

    An organization usually has one; a portfolio sponsor also holds one per pool.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended (no new orders)"
        CLOSED = "closed", "Closed"

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="accounts"
    )
    name = models.CharField(max_length=100, default="main")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    # The ledger account of its dollars (``ledger_accounts.cash_account``), set when that is
    # opened: the order path then names it for collateral without looking it up by code.
    cash_ledger_account = models.OneToOneField(
        "ledger.Account",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="account_unique_org_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.name}"
