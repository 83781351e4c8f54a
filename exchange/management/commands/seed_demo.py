from typing import Any

from django.core.management.base import BaseCommand

from exchange.demo import load_demo


class Command(BaseCommand):
    help = (
        "Load the demo market (idempotent): SKUs, regions, strips, options, resale, "
        "demo users and opening quotes."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        summary = load_demo()
        self.stdout.write(
            f"demo market ready: {summary['instruments']} instruments, "
            f"{summary['orders_placed']} opening orders placed"
        )
