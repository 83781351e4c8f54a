import django.db.models.deletion
from django.db import migrations, models


def link_cash_accounts(apps, schema_editor):
    """Name each trading account's existing cash ledger account (code ``trading:<id>:cash:USD``,
    as ``exchange.services.ledger_accounts.cash_account_code`` writes it)."""
    Account = apps.get_model("exchange", "Account")
    LedgerAccount = apps.get_model("ledger", "Account")
    by_code = dict(
        LedgerAccount.objects.filter(
            code__startswith="trading:", code__endswith=":cash:USD"
        ).values_list("code", "pk")
    )
    for account in Account.objects.filter(cash_ledger_account__isnull=True).only("pk"):
        ledger_id = by_code.get(f"trading:{account.pk}:cash:USD")
        if ledger_id is not None:
            Account.objects.filter(pk=account.pk).update(cash_ledger_account_id=ledger_id)


class Migration(migrations.Migration):
    dependencies = [
        ("exchange", "0009_portfolio_pools"),
        ("ledger", "0002_database_guards"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="cash_ledger_account",
            field=models.OneToOneField(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="ledger.account",
            ),
        ),
        migrations.RunPython(link_cash_accounts, migrations.RunPython.noop),
    ]
