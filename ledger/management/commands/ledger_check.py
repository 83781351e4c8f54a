"""Check the ledger's consistency: cached totals, balanced entries, commodities and holds."""

from django.core.management.base import BaseCommand, CommandError

from ledger.models import Account, Entry, Posting
from ledger.selectors import PROBLEMS_MAX, ledger_problems


class Command(BaseCommand):
    help = "Recompute the ledger's totals from its postings and holds; exit non-zero on problems."

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit",
            type=int,
            default=PROBLEMS_MAX,
            help=f"Report at most this many problems (default {PROBLEMS_MAX}).",
        )

    def handle(self, *args, limit, **options):
        problems = ledger_problems(limit=limit)
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"ledger check failed: {len(problems)} problem(s)")
        self.stdout.write(
            f"ledger ok: {Account.objects.count()} accounts, {Entry.objects.count()} entries, "
            f"{Posting.objects.count()} postings"
        )
