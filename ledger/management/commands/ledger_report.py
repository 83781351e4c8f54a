"""Print the ledger's trial balance, or one account's statement with its running balance.

Amounts are printed in the commodity's units (integers scaled by ``Commodity.scale``).
"""

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from ledger.models import Account
from ledger.selectors import STATEMENT_PAGE_MAX, account_statement, trial_balance


def units(amount: int, scale: int) -> str:
    return f"{Decimal(amount).scaleb(-scale):,.{scale}f}"


class Command(BaseCommand):
    help = "Trial balance (default) or an account statement: ledger_report [--statement CODE]."

    def add_arguments(self, parser):
        parser.add_argument(
            "--statement", metavar="ACCOUNT_CODE", help="Print this account's statement."
        )
        parser.add_argument(
            "--after", type=int, default=None, help="Statement: start after this posting id."
        )
        parser.add_argument(
            "--limit", type=int, default=100, help=f"Statement lines, at most {STATEMENT_PAGE_MAX}."
        )

    def handle(self, *args, statement, after, limit, **options):
        if statement:
            self._statement(statement, after, limit)
        else:
            self._trial_balance()

    def _trial_balance(self) -> None:
        for group in trial_balance():
            scale = group.commodity.scale
            self.stdout.write(f"{group.commodity.code}")
            for line in group.lines:
                self.stdout.write(
                    f"  {line.account.code:<60} debits {units(line.debits_posted, scale):>22}"
                    f"  credits {units(line.credits_posted, scale):>22}"
                    f"  balance {units(line.balance, scale):>22}"
                )
            self.stdout.write(
                f"  {'total (must be zero)':<60} balance {units(group.balance, scale):>22}"
            )

    def _statement(self, code: str, after: int | None, limit: int) -> None:
        account = Account.objects.select_related("commodity").filter(code=code).first()
        if account is None:
            raise CommandError(f"No ledger account {code!r}.")
        if not 1 <= limit <= STATEMENT_PAGE_MAX:
            raise CommandError(f"--limit must be 1 to {STATEMENT_PAGE_MAX}.")
        page = account_statement(account, after_id=after, limit=limit)
        scale = account.commodity.scale
        opening = units(page.opening_balance, scale)
        self.stdout.write(f"{account.code} ({account.commodity.code}); opening balance {opening}")
        for line in page.lines:
            self.stdout.write(
                f"  #{line.posting_id:<8} {line.created_at:%Y-%m-%d %H:%M}"
                f" {line.description[:50]:<50}"
                f" {units(line.amount, scale):>20} {units(line.balance, scale):>22}"
            )
        if page.next_after_id is not None:
            self.stdout.write(f"more: --after {page.next_after_id}")
