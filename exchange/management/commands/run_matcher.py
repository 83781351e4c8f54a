from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.matcher.lease import LeaseLost, ShardCountMismatch, ShardTaken
from exchange.matcher.process import MatcherLoop


class Command(BaseCommand):
    help = (
        "Run one matcher shard: own instruments with id % shards == shard, rebuild their books "
        "from the open orders, then match committed commands until stopped (SIGTERM/SIGINT)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shard", type=int, default=0)
        parser.add_argument("--shards", type=int, default=1)
        parser.add_argument(
            "--seconds",
            type=float,
            default=None,
            help="Stop after this long (for demos and tests).",
        )
        parser.add_argument(
            "--wait", type=float, default=1.0, help="Longest idle wait between passes, seconds."
        )

    def handle(
        self,
        *args: Any,
        shard: int,
        shards: int,
        seconds: float | None,
        wait: float,
        **options: Any,
    ) -> None:
        if shards < 1 or not 0 <= shard < shards:
            raise CommandError("--shard must be in 0 .. --shards - 1")
        # Checked before the shard is taken: a wait of 0 would spin on an idle shard, and a
        # negative one failed in its first idle wait (a ValueError from sleep), after a pass.
        if not wait > 0:
            raise CommandError(f"--wait must be more than 0 seconds, not {wait}.")
        if seconds is not None and not seconds >= 0:
            raise CommandError(f"--seconds must be 0 or more, not {seconds}.")
        loop = MatcherLoop(shard=shard, shards=shards, wait_seconds_max=wait)
        loop.install_signal_handlers()
        try:
            total = loop.run(seconds_max=seconds)
        except (ShardTaken, ShardCountMismatch, LeaseLost) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"matcher {shard}/{shards} stopped after {total} commands")
