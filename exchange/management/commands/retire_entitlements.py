from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange import calendar
from exchange.services.capacity import entitlements_retire


class Command(BaseCommand):
    help = (
        "Retire the GPU-hours of every month that has ended: what each holder still has of such "
        "a month goes back to the month's issuance account, one ledger entry per commodity "
        "(gpuh-retire:<commodity>:<total>), and prints each commodity retired. The schedule "
        "does this daily at 00:20 UTC (retire-ended-months-gpu-hours); run it by hand to catch "
        "up after beat was down. Running it twice posts nothing twice. Hours under a pending "
        "hold are kept until the hold is released, and a later run retires them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--before",
            metavar="YYYY-MM-DD",
            help="Retire only the months before this day's month (default: today, UTC: every "
            "month that has ended). A day after today is refused: its month has not begun.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            before = date.fromisoformat(options["before"]) if options["before"] else None
        except ValueError as error:
            raise CommandError(f"--before: {error}") from error
        try:
            retired = entitlements_retire(today=before)
        except ValueError as error:  # A day after today.
            raise CommandError(f"--before: {error}") from error
        for row in retired:
            self.stdout.write(
                f"{row.commodity}: {row.gpu_hours} GPU-hours retired from {row.accounts} account(s)"
            )
        month = calendar.month_start(before) if before else None
        until = f" before {month:%Y-%m}" if month else ""
        if not retired:
            self.stdout.write(f"Nothing to retire{until}: no GPU-hours are left of ended months.")
            return
        total = sum(row.gpu_hours for row in retired)
        self.stdout.write(f"{total} GPU-hours retired{until}, {len(retired)} commodity(ies)")
