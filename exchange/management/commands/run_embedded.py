import logging
import threading
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from exchange.schedule import ScheduleNotEmbedded, check_embedded, schedule_run

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "The embedded mode in one process (what `make run` serves): the development server "
        "(Daphne: pages, the API and the WebSocket feed) with Celery beat's schedule in a "
        "thread beside it. One process, because the embedded feed's channel layer lives in "
        "memory: what the schedule does (the dead man's switch, GTD expiry, pool cut-offs, the "
        "daily cycle) reaches the feed's clients only from the server's own process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, addrport: str, **options: Any) -> None:
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        stop = threading.Event()

        def schedule() -> None:
            try:
                scheduler = schedule_run(stop=stop)
            except BaseException:
                logger.exception("the schedule stopped")
            else:
                logger.info(
                    "schedule stopped: %s tasks ran, %s failed", scheduler.ran, scheduler.failed
                )
            finally:
                connections.close_all()  # This thread's own.

        try:
            check_embedded()  # Production runs celery beat, and gunicorn.
        except ScheduleNotEmbedded as error:
            raise CommandError(str(error)) from error
        thread = threading.Thread(target=schedule, name="schedule", daemon=True)
        thread.start()
        try:
            # No autoreloader: it would serve from a child process, apart from the schedule.
            call_command("runserver", addrport, use_reloader=False)
        finally:
            stop.set()
            thread.join(timeout=5)
