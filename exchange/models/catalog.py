"""The instrument catalog: GPU SKUs, regions, reserved capacity and tradable instruments."""

from datetime import UTC, datetime, time
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from exchange import calendar


class Interconnect(models.TextChoices):
    NVLINK = "nvlink", "NVLink"
    INFINIBAND = "infiniband", "InfiniBand"
    ROCE = "roce", "RoCE"
    PCIE = "pcie", "PCIe only"
    INFINITY_FABRIC = "infinity_fabric", "AMD Infinity Fabric"


class Sku(models.Model):
    """A GPU model as capacity is sold: what makes one GPU-hour differ from another."""

    code = models.CharField(
        max_length=16, unique=True, help_text="Upper-case letters and digits, used in symbols."
    )
    name = models.CharField(max_length=100)
    vendor = models.CharField(max_length=40)
    generation = models.CharField(max_length=40, help_text="Architecture, e.g. Hopper, Blackwell.")
    memory_gb = models.PositiveIntegerField()
    interconnect = models.CharField(max_length=20, choices=Interconnect.choices)
    release_date = models.DateField()
    power_watts = models.PositiveIntegerField()
    on_demand_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=(
            "Typical on-demand list price at the large clouds, $/GPU-hr: the benchmark pool "
            "reports measure savings against."
        ),
    )

    class Meta:
        ordering = ["release_date", "code"]
        verbose_name = "SKU"

    def __str__(self) -> str:
        return self.name


class Region(models.Model):
    class Compliance(models.TextChoices):
        SOC2 = "soc2", "SOC 2"
        HIPAA = "hipaa", "HIPAA"
        EU_SOVEREIGN = "eu_sovereign", "EU sovereignty"
        ISO27001 = "iso27001", "ISO 27001"
        FEDRAMP = "fedramp", "FedRAMP"

    code = models.CharField(
        max_length=16, unique=True, help_text="Upper-case letters and digits, used in symbols."
    )
    name = models.CharField(max_length=100)
    compliance = models.JSONField(default=list, blank=True, help_text="List of compliance tags.")
    power_price_usd_per_kwh = models.DecimalField(max_digits=8, decimal_places=4)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class ReservedCapacity(models.Model):
    """One reserved block of GPUs: a provider's cluster, rented by a holder for a term."""

    provider = models.ForeignKey(
        "exchange.Organization", on_delete=models.PROTECT, related_name="provided_capacity"
    )
    holder = models.ForeignKey(
        "exchange.Organization", on_delete=models.PROTECT, related_name="held_capacity"
    )
    cluster = models.CharField(max_length=100)
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT)
    region = models.ForeignKey(Region, on_delete=models.PROTECT)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    gpus = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    interconnect = models.CharField(max_length=20, choices=Interconnect.choices)
    contiguous_block_gpus = models.PositiveIntegerField(
        validators=[MinValueValidator(1)], help_text="GPUs per contiguous interconnected block."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "reserved capacity"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="reserved_capacity_ends_after_start",
            ),
            models.CheckConstraint(
                condition=models.Q(contiguous_block_gpus__lte=models.F("gpus")),
                name="reserved_capacity_block_within_gpus",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gpus}x {self.sku.code} {self.cluster} ({self.region.code})"


class InstrumentQuerySet(models.QuerySet["Instrument"]):
    def trading_at(self, moment: datetime) -> "InstrumentQuerySet":
        """Those that still trade at ``moment``: before the close of their last trading day
        (``calendar.trading_day_floor``), whatever their status says until the daily cycle
        expires them. An order on one that ended is refused (``ORDER_INSTRUMENT_EXPIRED``)."""
        return self.filter(last_trading_day__gte=calendar.trading_day_floor(moment))

    @staticmethod
    def halted_condition() -> models.Q:
        """The instruments that are halted as trading sees them: halted themselves, or an
        option whose own status says active while its future is halted (``halted_by``: a halt
        of the future leaves its options' status as it is). An expired option is expired."""
        Status, Kind = Instrument.Status, Instrument.Kind
        return models.Q(status=Status.HALTED) | models.Q(
            status=Status.ACTIVE, kind=Kind.OPTION, underlying__status=Status.HALTED
        )

    def settled_by(self, close: datetime) -> "InstrumentQuerySet":
        """The futures and options a trading day whose close is ``close`` settles (a price, a
        position's variation margin): those listed by that close (``Instrument.settled_by``).
        One listed after it is not the day's: what is held of it traded after the close, and
        the next day settles it."""
        return self.filter(
            kind__in=[Instrument.Kind.FUTURE, Instrument.Kind.OPTION], created_at__lte=close
        )

    def in_trading_status(self, status: str) -> "InstrumentQuerySet":
        """Those whose status is ``status`` as trading sees it (``halted_condition``): an
        option of a halted future is halted, not active. The dashboard, the trading status
        page and the admin's filter read an instrument's status this way."""
        if status == Instrument.Status.HALTED:
            return self.filter(self.halted_condition())
        if status == Instrument.Status.ACTIVE:
            return self.filter(status=status).exclude(self.halted_condition())
        return self.filter(status=status)


class Instrument(models.Model):
    """A tradable instrument. Prices are USD per GPU-hour; quantities are contracts.

    The matching engine sees integers: price in ticks (``price / tick_size``) and quantity in
    lots (``quantity / lot_size``); ``exchange.units`` converts.
    """

    class Kind(models.TextChoices):
        FUTURE = "future", "Future"
        OPTION = "option", "Option"
        RESALE = "resale", "Reserved resale"

    class Status(models.TextChoices):
        ACTIVE = "active", "Trading"
        HALTED = "halted", "Halted"
        EXPIRED = "expired", "Expired"

    class Settlement(models.TextChoices):
        CASH = "cash", "Cash"
        PHYSICAL = "physical", "Physical (GPU-hour entitlements)"

    class OptionType(models.TextChoices):
        CALL = "call", "Call"
        PUT = "put", "Put"

    symbol = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="instruments")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="instruments")
    tick_size = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal("0.000001"))]
    )
    lot_size = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Contracts per lot."
    )
    gpu_hours_per_contract = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    price_max = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("1000"),
        help_text="Highest accepted price, $/GPU-hr.",
    )
    quantity_max = models.PositiveIntegerField(
        default=100_000, help_text="Largest accepted order, contracts."
    )
    # Futures only: read by ``orders.position_limit`` for the future and its options.
    position_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Futures only: the most contracts one organization may hold net in this future, "
            "its options counted one contract each on the side of their exposure, worst case "
            "with its resting orders. Empty: the exchange's default (EXCHANGE_POSITION_LIMIT); "
            "0: no limit on this future."
        ),
    )
    delivery_start = models.DateField()
    delivery_end = models.DateField(help_text="Exclusive end of the delivery period.")
    last_trading_day = models.DateField()
    settlement = models.CharField(
        max_length=10, choices=Settlement.choices, default=Settlement.CASH
    )
    # Options only.
    underlying = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="options"
    )
    option_type = models.CharField(max_length=4, choices=OptionType.choices, blank=True)
    strike = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Reserved resale only. A block is listed before its term starts, for the whole term, and
    # during the term from a day's start (00:00 UTC) to its end: one listing at a time, each
    # delivering from its own start (``resale_starts_at``).
    reservation = models.ForeignKey(
        ReservedCapacity, null=True, blank=True, on_delete=models.PROTECT, related_name="listings"
    )
    # The number of matcher events applied to this book; the matcher compares it with its
    # in-memory book to detect a book that another process or a rolled-back transaction changed.
    sequence = models.BigIntegerField(default=0)
    # Bumped by the risk cycle when it moves this instrument's margin outside the matcher (daily
    # margin, variation margin, expiry), under the same row lock: the matcher then reloads the
    # positions and margin it keeps in memory.
    risk_version = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        ordering = [
            "sku__release_date",
            "sku__code",
            "region__code",
            "delivery_start",
            "kind",
            "option_type",
            "strike",
        ]
        indexes = [models.Index(fields=["kind", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(delivery_end__gt=models.F("delivery_start")),
                name="instrument_delivery_period",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="option")
                | (models.Q(underlying__isnull=False) & models.Q(strike__gt=0)),
                name="instrument_option_has_underlying_and_strike",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="resale") | models.Q(reservation__isnull=False),
                name="instrument_resale_has_reservation",
            ),
            models.UniqueConstraint(
                fields=["reservation", "delivery_start"],
                condition=models.Q(reservation__isnull=False),
                name="instrument_one_listing_per_block_start",
            ),
        ]

    def __str__(self) -> str:
        return self.symbol

    @property
    def trading_ends_at(self) -> datetime:
        """When it stops trading: the close of its last trading day
        (``calendar.trading_ends_at``), whatever its status says until the daily cycle
        expires it."""
        return calendar.trading_ends_at(self.last_trading_day)

    def settled_by(self, close: datetime) -> bool:
        """Whether a trading day whose close is ``close`` settles it
        (``InstrumentQuerySet.settled_by``, the same rule)."""
        return (
            self.kind in (Instrument.Kind.FUTURE, Instrument.Kind.OPTION)
            and self.created_at <= close
        )

    @property
    def resale_starts_at(self) -> datetime:
        """A resale listing's first hour: its block's term start for a listing made before the
        term, otherwise the start (00:00 UTC) of the day it delivers from (a month's first, or
        a day of the month under way when it was listed). Its contracts are 1 GPU of the block
        from then to the end of the term."""
        reservation = self.reservation
        assert reservation is not None, f"{self.symbol} is no resale listing"
        month_start = datetime.combine(self.delivery_start, time.min, tzinfo=UTC)
        return max(reservation.starts_at, month_start)

    @property
    def halted_by(self) -> "Instrument | None":
        """The future that halts this option: an option trades only while its future is not
        halted, whatever its own status (which a halt or a resume of the future leaves as it
        is). None for a future, or while the future is not halted. Reads the future unless it
        was selected with the option (``select_related("underlying")``)."""
        if self.kind != Instrument.Kind.OPTION or self.underlying_id is None:
            return None
        underlying = self.underlying
        if underlying is None or underlying.status != Instrument.Status.HALTED:
            return None
        return underlying
