"""Portfolio programs: a sponsor pools its startups' demand, buys as one big buyer through the
pool's own trading account, and allocates the fills to the members (``exchange.services.pools``).

One cycle of a pool is a round: at the cut-off the open demand is aggregated per instrument into
a few price tiers, one pool order each; when the round closes, whatever is still working is
cancelled and the fills of each tier are allocated to the demand of that tier, in whole lots, by
the pool's rule. Every allocation is one balanced ledger entry (see the service).
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Pool(models.Model):
    class Rule(models.TextChoices):
        PRO_RATA = "pro_rata", "Pro rata by requested quantity"
        PRIORITY = "priority", "By member priority"

    class Status(models.TextChoices):
        OPEN = "open", "Open (taking demand)"
        CLOSED = "closed", "Closed"

    sponsor = models.ForeignKey(
        "exchange.Organization", on_delete=models.PROTECT, related_name="sponsored_pools"
    )
    name = models.CharField(max_length=100)
    account = models.OneToOneField(
        "exchange.Account",
        on_delete=models.PROTECT,
        related_name="pool",
        help_text="The pool's own trading account (the sponsor's): it places the pool orders.",
    )
    rule = models.CharField(max_length=10, choices=Rule.choices, default=Rule.PRO_RATA)
    subsidy_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Share of the cost of each allocation that the sponsor pays, percent.",
    )
    credit_line = models.BigIntegerField(
        default=0,
        validators=[MinValueValidator(0)],
        help_text=(
            "Credit the sponsor guarantees each member for the cash an allocation needs "
            "(margin and fees), micro-USD; 0: none."
        ),
    )
    cutoff_at = models.DateTimeField(
        null=True, blank=True, help_text="The next cut-off; demand is aggregated then."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sponsor__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["sponsor", "name"], name="pool_unique_sponsor_name"),
            models.CheckConstraint(
                condition=models.Q(subsidy_percent__gte=0) & models.Q(subsidy_percent__lte=100),
                name="pool_subsidy_percent_range",
            ),
            models.CheckConstraint(
                condition=models.Q(credit_line__gte=0), name="pool_credit_line_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sponsor.slug}/{self.name}"


class PoolMember(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        GRADUATED = "graduated", "Graduated (left the pool)"

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="members")
    organization = models.ForeignKey(
        "exchange.Organization", on_delete=models.PROTECT, related_name="pool_memberships"
    )
    account = models.ForeignKey(
        "exchange.Account",
        on_delete=models.PROTECT,
        related_name="pool_memberships",
        help_text="The member's trading account that receives allocations and pays for them.",
    )
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower is served first under the priority rule."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    joined_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pool", "priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "organization"], name="pool_member_unique_organization"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug} in {self.pool}"


class PoolRound(models.Model):
    """One cut-off of a pool and the orders it placed."""

    class Status(models.TextChoices):
        WORKING = "working", "Orders working"
        ALLOCATED = "allocated", "Allocated"

    class CloseReason(models.TextChoices):
        """Why the round closed: set once, by the first close (its cancels may wait for an
        external matcher, and the scheduled close that follows keeps the first reason)."""

        OPEN = "", "Not closed"
        SCHEDULED = "scheduled", "Its time was up"
        SPONSOR = "sponsor", "Closed by the sponsor"
        STAFF = "staff", "Closed by exchange staff"
        INSTRUMENT_EXPIRED = "instrument_expired", "A future it was buying stopped trading"

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="rounds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WORKING)
    cut_off_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="When what is still working is cancelled.")
    allocated_at = models.DateTimeField(null=True, blank=True)
    cut_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    close_reason = models.CharField(
        max_length=20, choices=CloseReason.choices, default=CloseReason.OPEN, blank=True
    )
    close_message = models.CharField(
        max_length=300, blank=True, help_text="Why the round closed, in words; empty while open."
    )

    class Meta:
        ordering = ["pool", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "number"], name="pool_round_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.pool} round {self.number}"


class PoolOrder(models.Model):
    """One price tier of one instrument in a round: the pool order and the demand it carries.

    A tier above the instrument's largest order (``quantity_max``) is several of these, each
    one order of at most that size in whole lots at the tier's price; the tier's demand points
    to the first, and the round allocates their fills together (``services.pools._tiers``)."""

    round = models.ForeignKey(PoolRound, on_delete=models.PROTECT, related_name="orders")
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="+"
    )
    price = models.DecimalField(
        max_digits=12, decimal_places=6, help_text="Tier limit, $/GPU-hr: the lowest limit in it."
    )
    quantity = models.PositiveIntegerField(help_text="Contracts: the tier's demand.")
    order = models.OneToOneField(
        "exchange.Order",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pool_order",
    )
    refusal_code = models.CharField(max_length=64, blank=True)
    refusal_message = models.CharField(max_length=300, blank=True)
    placement_note = models.CharField(
        max_length=300,
        blank=True,
        help_text="How the order placed differs from the tier: its price at the future's price "
        "limit, its quantity cut to the room the sponsor's position limit leaves.",
    )

    class Meta:
        ordering = ["round", "instrument", "-price"]

    def __str__(self) -> str:
        return f"{self.round}: {self.quantity} {self.instrument} at {self.price}"


class PoolDemand(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open (until the cut-off)"
        SUBMITTED = "submitted", "In a pool order"
        ALLOCATED = "allocated", "Allocated"
        WITHDRAWN = "withdrawn", "Withdrawn"

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="demands")
    member = models.ForeignKey(PoolMember, on_delete=models.PROTECT, related_name="demands")
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="Contracts (one GPU for the month each)."
    )
    gpu_hours = models.PositiveBigIntegerField(help_text="quantity x the contract's GPU-hours.")
    limit_price = models.DecimalField(max_digits=12, decimal_places=6, help_text="$/GPU-hr.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    pool_order = models.ForeignKey(
        PoolOrder, null=True, blank=True, on_delete=models.PROTECT, related_name="demands"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pool", "instrument", "id"]
        indexes = [models.Index(fields=["pool", "status"], name="pool_demand_pool_status")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="pool_demand_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(limit_price__gt=0), name="pool_demand_limit_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member.organization.slug}: {self.quantity} {self.instrument}"


class PoolAllocation(models.Model):
    """What one demand received in its round, and the ledger entry that moved it.

    Amounts in micro-USD. ``cost`` is the demand's share of the tier's traded value; the
    member pays ``fee`` (its share of the pool's fees) and posts ``margin``, the sponsor pays
    ``subsidy``; ``credit`` is what the pool lent the member to cover it. ``unfunded`` lots
    could not be paid for even with the credit line and stay with the pool.
    """

    class Status(models.TextChoices):
        SETTLED = "settled", "Settled"
        UNFUNDED = "unfunded", "Kept by the pool (member could not pay)"
        NONE = "none", "Nothing filled for this demand"

    round = models.ForeignKey(PoolRound, on_delete=models.PROTECT, related_name="allocations")
    pool_order = models.ForeignKey(PoolOrder, on_delete=models.PROTECT, related_name="allocations")
    demand = models.OneToOneField(PoolDemand, on_delete=models.PROTECT, related_name="allocation")
    member = models.ForeignKey(PoolMember, on_delete=models.PROTECT, related_name="allocations")
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices)
    requested = models.PositiveIntegerField(help_text="Contracts asked for.")
    quantity = models.PositiveIntegerField(help_text="Contracts allocated.")
    cost = models.BigIntegerField(default=0)
    fee = models.BigIntegerField(default=0)
    subsidy = models.BigIntegerField(default=0)
    margin = models.BigIntegerField(default=0)
    credit = models.BigIntegerField(default=0)
    entry = models.OneToOneField(
        "ledger.Entry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "instrument", "member", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__lte=models.F("requested")),
                name="pool_allocation_within_request",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity}/{self.requested} {self.instrument} to {self.member}"

    @property
    def net_cash(self) -> int:
        """Cash from the member to the pool (negative: the pool pays the member)."""
        return self.fee - self.subsidy


class PoolTransfer(models.Model):
    """Capacity moved outside a round: a graduate's contracts taken back into the pool, or the
    pool's contracts reallocated to a member, at the instrument's latest mark."""

    class Kind(models.TextChoices):
        TAKE_BACK = "take_back", "Taken back from a member"
        REALLOCATE = "reallocate", "Reallocated to a member"

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="transfers")
    member = models.ForeignKey(PoolMember, on_delete=models.PROTECT, related_name="transfers")
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=6)
    entry = models.OneToOneField("ledger.Entry", on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
