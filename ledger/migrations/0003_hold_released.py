from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0002_database_guards"),
    ]

    operations = [
        migrations.AddField(
            model_name="hold",
            name="released",
            field=models.BigIntegerField(
                default=0,
                help_text=(
                    "Released while the rest stayed pending: what its holder no longer needed held."
                ),
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.CheckConstraint(
                condition=models.Q(("released__gte", 0)), name="ledger_hold_released_not_negative"
            ),
        ),
    ]
