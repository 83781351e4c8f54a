from django.db import migrations, models


def amounts_called(apps, schema_editor):
    """Calls made before this migration kept only their latest figures: what those say is due
    is the best record of what was called."""
    MarginCall = apps.get_model("exchange", "MarginCall")
    for call in MarginCall.objects.only("required", "held", "deficit").iterator():
        called = max(call.required - call.held, 0) + call.deficit
        MarginCall.objects.filter(pk=call.pk).update(amount_called=called)


class Migration(migrations.Migration):
    dependencies = [("exchange", "0016_trade_fees")]

    operations = [
        migrations.AddField(
            model_name="margincall",
            name="amount_called",
            field=models.BigIntegerField(
                default=0,
                help_text="What the call asked for when it was made, micro-USD: initial margin "
                "required less margin held, plus the deficit. The figures above follow the "
                "account (each later settlement and review); this does not.",
            ),
        ),
        migrations.AddField(
            model_name="margincall",
            name="figured_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When a later daily settlement or a review last set the figures (null: "
                "they are the call's own).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="margincall",
            name="trading_date",
            field=models.DateField(help_text="The daily settlement that made the call."),
        ),
        migrations.RunPython(amounts_called, migrations.RunPython.noop),
    ]
