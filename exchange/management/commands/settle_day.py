from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.errors import ExchangeError
from exchange.selectors.risk import day_prices, prices_missing, variation_preview
from exchange.services.ledger_accounts import micros_to_usd
from exchange.services.risk_cycle import daily_settlement_run
from exchange.services.settlement_prices import last_closed_day, settlement_prices_set


class Command(BaseCommand):
    help = (
        "Run the daily risk cycle for a trading day (default: the latest business day whose "
        "close has passed, as --date says): settlement prices, "
        "variation margin, option and futures expiry, margin and margin calls. Idempotent: a "
        "settled day is left as it is. --preview sets the prices and prints them with the "
        "variation margin the day would post, without settling."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--date",
            help="Trading day, YYYY-MM-DD (default: the latest business day whose close has "
            "passed: today after the close, else the business day before; UTC).",
        )
        parser.add_argument("--preview", action="store_true", help="Set prices only; show them.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            trading_date = (
                date.fromisoformat(options["date"]) if options["date"] else last_closed_day()
            )
        except ValueError as error:
            raise CommandError(f"--date: {error}") from error
        try:
            if options["preview"]:
                cycle = settlement_prices_set(trading_date=trading_date)
                self._preview(trading_date)
                self.stdout.write(f"{trading_date}: {cycle.get_status_display()}")
                return
            cycle = daily_settlement_run(trading_date=trading_date)
        except ExchangeError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        summary = cycle.summary
        self.stdout.write(
            f"{trading_date} settled: {summary.get('variation_entries', 0)} variation margin "
            f"entries, {len(summary.get('options_expired', []))} options and "
            f"{len(summary.get('futures_expired', []))} futures expired, "
            f"{len(summary.get('margin_calls', []))} margin calls"
        )
        for penalty in summary.get("delivery_penalties", []):
            failed = "not delivered" if penalty["side"] == "short" else "not paid for"
            self.stdout.write(
                f"delivery failure penalty on {penalty['symbol']}: account {penalty['account']} "
                f"paid {micros_to_usd(penalty['amount'])} USD, {penalty['contracts']} "
                f"contract(s) {failed}"
            )

    def _preview(self, trading_date: date) -> None:
        for price_row in day_prices(trading_date):
            price = price_row.settlement
            change = "" if price_row.change is None else f" ({price_row.change:+})"
            self.stdout.write(
                f"{price.instrument.symbol:40} {price.price:>12}{change} {price.source}"
            )
        for variation in variation_preview(trading_date):
            self.stdout.write(
                f"variation {variation.account} {variation.symbol} {variation.contracts:+d} "
                f"contracts: {variation.amount:+} USD"
            )
        for instrument in prices_missing(trading_date):
            self.stdout.write(
                f"missing {instrument.symbol}: held, without a price (set one by override)"
            )
