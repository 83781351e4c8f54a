import importlib
from decimal import ROUND_CEILING, Decimal

from django.db import migrations, models

# SQLite adds the order's column by rebuilding its table, which drops the trigger of 0003 that
# queues each NEW order's command: restored as 0005 and 0012 do.
ORDER_COLLATERAL = importlib.import_module("exchange.migrations.0005_order_collateral")
sqlite_trigger_restore = ORDER_COLLATERAL.sqlite_trigger_restore

MICROS_PER_USD = 10**6
BATCH_SIZE = 2000


def _fee(kind, rate, quantity, price, hours):
    """The fee the settlement charged before fees were stored: the order's rate (its block tier
    then came from the order's size), per contract for futures and options, rounded up on the
    notional for resale (``collateral.fee_micros`` when this migration was written)."""
    if kind in ("future", "option"):
        return int(rate * MICROS_PER_USD) * quantity
    notional = price * quantity * hours * MICROS_PER_USD
    return int((rate * notional).to_integral_value(rounding=ROUND_CEILING))


def fees_stored(apps, schema_editor):
    """Each trade's fees as the ledger posted them, from its orders' stored rates."""
    Trade = apps.get_model("exchange", "Trade")
    trades = Trade.objects.select_related("instrument", "maker_order", "taker_order").order_by("pk")
    batch = []
    for trade in trades.iterator(chunk_size=BATCH_SIZE):
        instrument = trade.instrument
        for order in (trade.maker_order, trade.taker_order):
            maker = order.pk == trade.maker_order_id
            rate = Decimal(order.maker_fee_rate if maker else order.taker_fee_rate)
            fee = _fee(
                instrument.kind,
                rate,
                trade.quantity,
                Decimal(trade.price),
                instrument.gpu_hours_per_contract,
            )
            if order.side == "buy":
                trade.buyer_fee = fee
            else:
                trade.seller_fee = fee
        batch.append(trade)
        if len(batch) == BATCH_SIZE:
            Trade.objects.bulk_update(batch, ["buyer_fee", "seller_fee"])
            batch = []
    if batch:
        Trade.objects.bulk_update(batch, ["buyer_fee", "seller_fee"])


LIVE_STATUSES = ("new", "open", "partially_filled")


def live_orders_keep_their_tiered_rates(apps, schema_editor):
    """Orders still live were accepted with their size's block tier already in their rates, and
    their holds were computed on those rates: their fills pay them as they are, not tiered
    again on what they fill."""
    Order = apps.get_model("exchange", "Order")
    Order.objects.filter(status__in=LIVE_STATUSES).update(fee_rates_tiered=True)


class Migration(migrations.Migration):
    dependencies = [
        ("exchange", "0015_organization_name_unique"),
    ]

    operations = [
        migrations.AddField(
            model_name="trade",
            name="buyer_fee",
            field=models.BigIntegerField(
                default=0,
                help_text="Micro-USD the buyer paid on this fill, after its order's block tier.",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="trade",
            name="seller_fee",
            field=models.BigIntegerField(
                default=0,
                help_text="Micro-USD the seller paid on this fill, after its order's block tier.",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fees_stored, migrations.RunPython.noop),
        # Unapplying rebuilds the table too: this operation, undone after the field's removal,
        # restores the trigger then.
        migrations.RunPython(migrations.RunPython.noop, sqlite_trigger_restore),
        migrations.AddField(
            model_name="order",
            name="fee_rates_tiered",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Its rates already carry the block tier of its size (accepted before the tier "
                    "followed what an order fills): its fills pay them as they are."
                ),
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="quantity",
            field=models.PositiveIntegerField(
                help_text=(
                    "Contracts: filled + cancelled + still open; a rejected order keeps the "
                    "quantity it asked for."
                )
            ),
        ),
        migrations.RunPython(sqlite_trigger_restore, migrations.RunPython.noop),
        migrations.RunPython(live_orders_keep_their_tiered_rates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="trade",
            constraint=models.CheckConstraint(
                condition=models.Q(("buyer_fee__gte", 0), ("seller_fee__gte", 0)),
                name="trade_fees_not_negative",
            ),
        ),
    ]
