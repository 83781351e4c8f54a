from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.errors import ExchangeError
from exchange.models import Organization
from exchange.services.api_keys import api_key_create


class Command(BaseCommand):
    help = (
        "Create an API key for an organization and print it once (it is not stored: keep it). "
        "Example: create_api_key --org helix --scopes read,trade"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization slug.")
        parser.add_argument("--scopes", required=True, help="Comma-separated: read,trade,transfer")
        parser.add_argument("--name", default="command line", help="A name to recognise it by.")
        parser.add_argument(
            "--ip", action="append", default=[], help="Allowed network (CIDR); repeat for more."
        )
        parser.add_argument(
            "--require-signature", action="store_true", help="Refuse unsigned requests."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(slug=options["org"]).first()
        if organization is None:
            raise CommandError(f"No organization {options['org']!r}.")
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        try:
            created = api_key_create(
                organization=organization,
                name=options["name"],
                scopes=scopes,
                ip_allowlist=options["ip"],
                require_signature=options["require_signature"],
            )
        except ExchangeError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        self.stderr.write(
            f"API key {created.key.prefix} for {organization.slug} "
            f"({', '.join(created.key.scopes)}): shown once, keep it."
        )
        self.stdout.write(created.token)
