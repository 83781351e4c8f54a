from typing import Any

from django.core.management.base import BaseCommand

from exchange.models import MarginCall
from exchange.services.risk_cycle import margin_calls_review


class Command(BaseCommand):
    help = (
        "Top up the margin of accounts with an open margin call from their cash, at the latest "
        "settlement prices, and cure the calls that are covered."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        cured = margin_calls_review()
        still_open = MarginCall.objects.filter(status=MarginCall.Status.OPEN).count()
        self.stdout.write(f"{cured} margin calls cured, {still_open} open")
