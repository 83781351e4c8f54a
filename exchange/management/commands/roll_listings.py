from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.errors import ExchangeError
from exchange.services.listing import listings_roll


class Command(BaseCommand):
    help = (
        "List the futures and option strikes the rolling months call for (idempotent): "
        "strips kept EXCHANGE_LISTED_MONTHS deep, option chains around each near future's "
        "reference price. The Celery beat task instruments_list_upcoming runs the same."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--date",
            dest="day",
            default=None,
            help=(
                "Roll as of this day, YYYY-MM-DD: today or up to 72 months on (default: "
                "today, UTC)."
            ),
        )

    def handle(self, *args: Any, day: str | None, **options: Any) -> None:
        try:
            today = None if day is None else date.fromisoformat(day)
        except ValueError as error:
            raise CommandError(f"--date must be YYYY-MM-DD, not {day!r}.") from error
        try:
            listed = listings_roll(today=today)
        except ExchangeError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        for instrument in listed:
            self.stdout.write(f"listed {instrument.symbol}")
        self.stdout.write(f"{len(listed)} instruments listed")
