"""Orders, the commands that change them, their recorded transitions, and trades."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Order(models.Model):
    class Type(models.TextChoices):
        LIMIT = "limit", "Limit"
        MARKET = "market", "Market"

    class TimeInForce(models.TextChoices):
        GTC = "gtc", "Good till cancelled"
        GTD = "gtd", "Good till date"
        IOC = "ioc", "Immediate or cancel"
        FOK = "fok", "Fill or kill"

    class SelfTradePrevention(models.TextChoices):
        CANCEL_NEWEST = "cancel_newest", "Cancel newest"
        CANCEL_OLDEST = "cancel_oldest", "Cancel oldest"
        CANCEL_BOTH = "cancel_both", "Cancel both"
        DECREMENT = "decrement", "Decrement both"

    class Status(models.TextChoices):
        NEW = "new", "New (awaiting the matcher)"
        OPEN = "open", "Open"
        PARTIALLY_FILLED = "partially_filled", "Partially filled"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"
        REJECTED = "rejected", "Rejected"

    # No single-column indexes: (account, status) and the resting-order index lead with these
    # columns, and every index of an order is rewritten on each of its status changes.
    account = models.ForeignKey(
        "exchange.Account", on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    client_order_id = models.CharField(max_length=64, null=True, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=6, choices=Type.choices)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices)
    post_only = models.BooleanField(default=False)
    self_trade_prevention = models.CharField(
        max_length=16,
        choices=SelfTradePrevention.choices,
        default=SelfTradePrevention.CANCEL_NEWEST,
    )
    price = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="$/GPU-hr; empty for market orders.",
    )
    quantity = models.PositiveIntegerField(
        help_text="Contracts: filled + cancelled + still open; a rejected order keeps the quantity "
        "it asked for."
    )
    filled_quantity = models.PositiveIntegerField(default=0)
    cancelled_quantity = models.PositiveIntegerField(default=0)
    filled_notional = models.DecimalField(
        max_digits=24,
        decimal_places=6,
        default=0,
        help_text="Sum of fill price x fill quantity, for the average price.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    # Collateral terms, fixed when the order is accepted (a replace may change the margin):
    # what each fill may take from the order's holds (see ``exchange.services.collateral``).
    protection_price = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Market orders: the worst price they may fill at, $/GPU-hr.",
    )
    margin_per_contract = models.BigIntegerField(
        default=0, help_text="Initial margin per opening contract, micro-USD."
    )
    maker_fee_rate = models.DecimalField(
        max_digits=16, decimal_places=8, default=0, help_text="From the fee schedule at acceptance."
    )
    taker_fee_rate = models.DecimalField(
        max_digits=16, decimal_places=8, default=0, help_text="From the fee schedule at acceptance."
    )
    reduce_only = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Accepted as reducing a position (under a margin call, or staff's liquidation): "
        "it holds no margin and pays no fee, so the matcher lets it fill no more than closes "
        "the account's position at the time (the rest is cancelled: reduce_only_exceeded).",
    )
    fee_rates_tiered = models.BooleanField(
        default=False,
        help_text="Its rates already carry the block tier of its size (accepted before the tier "
        "followed what an order fills): its fills pay them as they are.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    reject_code = models.CharField(max_length=64, blank=True)
    done_reason = models.CharField(
        max_length=64,
        blank=True,
        help_text=(
            "Why the order left the book, set with its final status: filled; a cancel's reason "
            "(CancelReason); the engine's (ioc_remainder, market_remainder, fok_not_fillable, "
            "self_trade, replaced_to_zero); expired; or the matcher's rejection code."
        ),
    )
    # The instrument sequence at which the order took its current place in the queue; the book is
    # rebuilt in this order after a restart, so FIFO priority survives it.
    priority_sequence = models.BigIntegerField(null=True, blank=True)
    request_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the request as placed (client order id retries).",
    )
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "client_order_id"],
                condition=models.Q(client_order_id__isnull=False),
                name="order_unique_client_order_id",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    filled_quantity__lte=models.F("quantity") - models.F("cancelled_quantity")
                ),
                name="order_fills_within_quantity",
            ),
            models.CheckConstraint(
                condition=models.Q(type="market", price__isnull=True)
                | models.Q(type="limit", price__gt=0),
                name="order_price_matches_type",
            ),
        ]
        indexes = [
            # The resting orders of a book, for rebuilding it and for market data.
            models.Index(
                fields=["instrument", "side", "price"],
                condition=models.Q(status__in=["open", "partially_filled"]),
                name="order_resting",
            ),
            # The resting GTD orders by expiry, for the inline mode's sweep every second.
            models.Index(
                fields=["expires_at"],
                condition=models.Q(
                    status__in=["open", "partially_filled"], expires_at__isnull=False
                ),
                name="order_resting_expiry",
            ),
            models.Index(fields=["account", "status"], name="order_account_status"),
            # An account's live orders on one instrument: a position limit counts the
            # organization's on a future and its options (``positions.organization_exposure``)
            # for every order it applies to, without reading its other live orders.
            models.Index(
                fields=["account", "instrument"],
                condition=models.Q(status__in=["new", "open", "partially_filled"]),
                name="order_live_by_instrument",
            ),
            # The orders that ended, the latest to end first ("ended lately"). Partial: a live
            # order, whose updated_at changes on every fill, is not in it.
            models.Index(
                "account",
                models.F("updated_at").desc(),
                models.F("id").desc(),
                condition=~models.Q(status__in=["new", "open", "partially_filled"]),
                name="order_ended",
            ),
        ]

    # Not a column: set on the order that order_cancel and order_replace return when their
    # command still waits for an external matcher (it had not answered within their wait).
    command_pending = False

    def __str__(self) -> str:
        price = self.price or "market"
        return f"#{self.pk} {self.side} {self.quantity} {self.instrument_id} @ {price}"

    @property
    def open_quantity(self) -> int:
        """What may still trade: nothing once the order has ended (a rejected order keeps its
        quantity and no cancelled quantity, yet none of it is open)."""
        if self.status not in (
            self.Status.NEW,
            self.Status.OPEN,
            self.Status.PARTIALLY_FILLED,
        ):
            return 0
        return self.quantity - self.filled_quantity - self.cancelled_quantity

    def margin_call_replace_refusal(self, *, price: Decimal, quantity: int, resale: bool) -> str:
        """The field of a replace to ``price`` and open ``quantity`` (not 0: a cancel always
        goes through) that would add risk to an account under a margin call, or "" when it adds
        none. Read by ``orders.order_replace`` at acceptance and by the matcher (a replace
        accepted before the call may reach it after the call opened), each refusing with
        ``RISK_REDUCE_ONLY``. ``resale``: the order is of a resale instrument.

        Under a call only what would be accepted anew goes through. The open quantity may not
        go up ("quantity"). The price may change only for an order a call lets be placed: a
        reducing order (``reduce_only``: the matcher holds it to what closes the position) or
        a sell of resale capacity (it raises cash). An ordinary order placed before the call
        keeps its price ("price"): at a new one it could trade where it would not have,
        opening or adding to a position the margin call says the account cannot carry (until
        2026-12-07 only its quantity was held); cancelled, it may be placed again as
        reducing."""
        if quantity > self.open_quantity:
            return "quantity"
        if price == self.price or self.reduce_only or (resale and self.side == Side.SELL):
            return ""
        return "price"

    @property
    def past_expiry(self) -> bool:
        """A live GTD order whose time has come (``expires_at`` itself included). It is out of
        the market already: the book, quotes and depth leave it out
        (``selectors.market.resting_orders``) and the matcher ticks it away before any other
        command of its book, so nothing more of it can trade; yet its status, open quantity
        and collateral holds stay until the matcher sweeps it (within about a second). Pages
        listing open orders say so rather than show it offered."""
        return (
            self.expires_at is not None
            and self.status in (self.Status.NEW, self.Status.OPEN, self.Status.PARTIALLY_FILLED)
            and self.expires_at <= timezone.now()
        )

    @property
    def average_fill_price(self) -> Decimal | None:
        if not self.filled_quantity:
            return None
        return self.filled_notional / self.filled_quantity


LIVE_STATUSES = (Order.Status.NEW, Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)
RESTING_STATUSES = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)


class OrderTransition(models.Model):
    """One recorded change of an order: a status change, or a replace that kept the status."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, choices=Order.Status.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=Order.Status.choices)
    reason = models.CharField(max_length=64)
    sequence = models.BigIntegerField(
        null=True, blank=True, help_text="Instrument sequence of the matcher event."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.order_id}: {self.from_status or '-'} -> {self.to_status} ({self.reason})"


class CancelReason(models.TextChoices):
    """Who or what asked for a cancel: the order's ``done_reason`` when the cancel ends it."""

    USER = "user", "Asked for by the account"
    CANCEL_ALL = "cancel_all", "The account's cancel-all"
    CANCEL_ALL_AFTER = "cancel_all_after", "The account's cancel-all-after switch fired"
    STAFF = "staff", "Cancelled by exchange staff"
    LIQUIDATION = "liquidation", "Liquidation under a margin call"
    INSTRUMENT_EXPIRED = "instrument_expired", "The instrument expired"
    POOL_ROUND_CLOSED = "pool_round_closed", "The pool's round closed"
    MARGIN_CALL_CURED = (
        "margin_call_cured",
        "Placed to reduce under a margin call, which was cured",
    )
    REDUCE_ONLY_EXCEEDED = (
        "reduce_only_exceeded",
        "Reducing, and more than the account's position left to close",
    )
    FUTURES_DELIVERY = (
        "futures_delivery",
        "Offered GPU-hours its account owes for a futures delivery",
    )
    DELIVERY_PAYMENT = (
        "delivery_payment",
        "Held cash its account owes for a futures delivery",
    )


class OrderCommand(models.Model):
    """A durable request for the matcher. Committed rows in id order are the matcher's input."""

    class Kind(models.TextChoices):
        NEW = "new", "New order"
        CANCEL = "cancel", "Cancel"
        REPLACE = "replace", "Replace"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        REJECTED = "rejected", "Rejected"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="commands")
    # Commands are found through the partial queue index below, never by instrument alone.
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    price = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    quantity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Replace: the new open quantity."
    )
    margin_per_contract = models.BigIntegerField(
        null=True, blank=True, help_text="Replace: the margin per contract at the new price."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    reject_code = models.CharField(max_length=64, blank=True)
    # A database default too: the trigger of migration 0003 inserts NEW commands without it.
    cancel_reason = models.CharField(
        max_length=24,
        choices=CancelReason.choices,
        blank=True,
        default="",
        db_default="",
        help_text="Cancels: who or what asked for it.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The matcher's queue: pending commands of an instrument in id order. Partial, so it
            # stays as small as the queue however many commands are done.
            models.Index(
                fields=["instrument", "id"],
                condition=models.Q(status="pending"),
                name="order_command_queue",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.order_id} ({self.status})"

    @staticmethod
    def replace_cancels(quantity: object) -> bool:
        """Whether a replace to ``quantity`` is a cancel: 0 contracts (not False or 0.0, which
        are no quantities and are refused as such)."""
        return type(quantity) is int and quantity == 0

    @property
    def cancels(self) -> bool:
        """A cancel, or a replace to quantity 0: it cannot trade, so it always goes through
        (on an instrument halted or expired too)."""
        return self.kind == self.Kind.CANCEL or (
            self.kind == self.Kind.REPLACE and self.replace_cancels(self.quantity)
        )


class OrderHold(models.Model):
    """A ledger hold setting aside an order's collateral (cash, or GPU-hour entitlements).

    Placed with the order (``active``), or with a replace that needs more than the order holds
    (inactive until the matcher applies the replace, which then releases the order's former
    holds). The matcher's settlement consumes active holds fill by fill and releases what is
    left when the order leaves the book.
    """

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="holds")
    hold = models.OneToOneField("ledger.Hold", on_delete=models.PROTECT, related_name="+")
    command = models.ForeignKey(
        OrderCommand, null=True, blank=True, on_delete=models.PROTECT, related_name="holds"
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"order #{self.order_id}: hold #{self.hold_id}"


class OrderRejection(models.Model):
    """An order refused at the door: bad input or risk. Nothing else is written for it."""

    account = models.ForeignKey(
        "exchange.Account", on_delete=models.PROTECT, related_name="order_rejections"
    )
    instrument = models.ForeignKey(
        "exchange.Instrument", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    instrument_symbol = models.CharField(max_length=64)
    client_order_id = models.CharField(max_length=64, null=True, blank=True)
    code = models.CharField(max_length=64)
    field = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=300)
    request = models.JSONField(default=dict)
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.code} ({self.instrument_symbol})"


class CancelAllTimer(models.Model):
    """An account's dead man's switch: unless armed again before ``fires_at``, every live order
    of the account is cancelled then (``exchange.services.cancel_after``). An automated trader
    arms it again every few seconds; if it dies or loses its connection, its quotes go."""

    account = models.OneToOneField(
        "exchange.Account",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="cancel_all_timer",
    )
    timeout_seconds = models.PositiveIntegerField()
    fires_at = models.DateTimeField(db_index=True)
    armed_at = models.DateTimeField()
    armed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.account}: cancel all at {self.fires_at:%Y-%m-%d %H:%M:%S}"


class Trade(models.Model):
    instrument = models.ForeignKey(
        "exchange.Instrument", on_delete=models.PROTECT, related_name="trades"
    )
    sequence = models.BigIntegerField(help_text="Instrument sequence of the matcher event.")
    price = models.DecimalField(max_digits=18, decimal_places=6)
    quantity = models.PositiveIntegerField(help_text="Contracts.")
    maker_order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="maker_trades")
    taker_order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="taker_trades")
    taker_side = models.CharField(max_length=4, choices=Side.choices)
    buyer_account = models.ForeignKey(
        "exchange.Account", on_delete=models.PROTECT, related_name="buys"
    )
    seller_account = models.ForeignKey(
        "exchange.Account", on_delete=models.PROTECT, related_name="sells"
    )
    executed_at = models.DateTimeField()
    buyer_fee = models.BigIntegerField(
        help_text="Micro-USD the buyer paid on this fill, after its order's block tier."
    )
    seller_fee = models.BigIntegerField(
        help_text="Micro-USD the seller paid on this fill, after its order's block tier."
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "sequence"], name="trade_unique_instrument_sequence"
            ),
            models.CheckConstraint(
                condition=models.Q(buyer_fee__gte=0, seller_fee__gte=0),
                name="trade_fees_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="trade_quantity_positive"
            ),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="trade_price_positive"),
        ]
        indexes = [
            models.Index(fields=["instrument", "-executed_at"], name="trade_instrument_time")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.instrument_id} @ {self.price}"
