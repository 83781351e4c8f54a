from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.models import Account, Instrument
from exchange.selectors.integrity import order_book_problems
from exchange.simulation import MarketSimulation

INSTRUMENTS_DEFAULT = 12


class Command(BaseCommand):
    help = (
        "Drive random trading among the demo accounts through the real order services, "
        "then check invariants."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--symbols", nargs="*", help="Instruments to trade (default: the front futures)."
        )

    def handle(
        self, *args: Any, orders: int, seed: int, symbols: list[str] | None, **options: Any
    ) -> None:
        accounts = list(
            Account.objects.filter(status=Account.Status.ACTIVE).exclude(
                organization__kind="exchange"
            )
        )
        if symbols:
            instruments = list(Instrument.objects.filter(symbol__in=symbols))
        else:
            instruments = list(
                Instrument.objects.filter(
                    kind=Instrument.Kind.FUTURE, status=Instrument.Status.ACTIVE
                ).order_by("delivery_start", "pk")[:INSTRUMENTS_DEFAULT]
            )
        if len(accounts) < 2 or not instruments:
            raise CommandError(
                "Needs at least two active accounts and one instrument: "
                "run `manage.py seed_demo` first."
            )
        report = MarketSimulation(accounts=accounts, instruments=instruments, seed=seed).run(orders)
        self.stdout.write(
            "actions: "
            + ", ".join(f"{key}={value}" for key, value in sorted(report.actions.items()))
        )
        self.stdout.write(
            "rejections: "
            + (
                ", ".join(f"{key}={value}" for key, value in sorted(report.rejections.items()))
                or "none"
            )
        )
        problems = order_book_problems()
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"{len(problems)} invariant violations")
        self.stdout.write("invariants: ok")
