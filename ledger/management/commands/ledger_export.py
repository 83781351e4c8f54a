"""Export the ledger to a Beancount file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ledger.export import export_beancount
from ledger.models import Account


class Command(BaseCommand):
    help = "Export the ledger (or the entries touching some accounts) as a Beancount file."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["beancount"], default="beancount")
        parser.add_argument(
            "--account",
            action="append",
            default=[],
            metavar="CODE",
            help="Export only entries touching this account (repeatable).",
        )
        parser.add_argument("--output", help="File to write (default: standard output).")

    def handle(self, *args, format, account, output, **options):
        try:
            if output:
                path = Path(output)
                temporary = path.with_name(path.name + ".partial")
                try:
                    with temporary.open("w", encoding="utf-8") as out:
                        count = export_beancount(out, account_codes=account)
                    temporary.replace(path)
                except BaseException as error:
                    # A refused or failed export leaves nothing behind, not half a file.
                    temporary.unlink(missing_ok=True)
                    if isinstance(error, OSError):  # No such folder, no right to write there.
                        raise CommandError(
                            f"--output {output}: {error.strerror or error}"
                        ) from error
                    raise
                self.stderr.write(f"{count} transactions written to {path}")
            else:
                # Every line written ends with a newline, so OutputWrapper adds none.
                export_beancount(self.stdout, account_codes=account)
        except Account.DoesNotExist as error:
            raise CommandError(str(error)) from error
