import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.schedule import ScheduleNotEmbedded, schedule_run


class Command(BaseCommand):
    help = (
        "Run Celery beat's schedule in this process, each due task here (the embedded mode, "
        "where Celery is eager and has no beat): pool cut-offs, GTD expiry, expired holds, "
        "listing rolls, the daily settlement, margin-call reviews. Stops on SIGTERM/SIGINT. "
        "Production runs `celery -A exchange beat` instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seconds", type=float, default=None, help="Stop after this long (for tests)."
        )

    def handle(self, *args: Any, seconds: float | None, **options: Any) -> None:
        # Before any task runs: nan never came to an end, a negative time stopped at once.
        if seconds is not None and not seconds >= 0:
            raise CommandError(f"--seconds must be 0 or more, not {seconds}.")
        # Celery logs every task it applies; this process says itself which did something.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        stop = threading.Event()
        handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
        for number in handlers:
            signal.signal(number, lambda *_: stop.set())
        try:
            scheduler = schedule_run(stop=stop, seconds_max=seconds)
        except ScheduleNotEmbedded as error:
            raise CommandError(str(error)) from error
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
        self.stdout.write(f"schedule stopped: {scheduler.ran} tasks ran, {scheduler.failed} failed")
