"""Benchmark of the matching engine on a standard seeded command stream.

Usage: ``python -m matching.bench [--commands N] [--seed S] [--instruments K]``

The stream (about 60% limit orders around a random-walk mid, 30% cancels of live orders and
10% marketable IOC or market orders) is generated up front and is not timed. Two timed passes
run over fresh engines: the first times the whole loop for throughput, the second times each
`Engine.process` call with ``perf_counter_ns`` for latency (the per-call timer itself costs
about 0.1 us, which would skew the throughput figure). The last line printed is
``commands_per_second=<integer>`` from the throughput pass.
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace

from matching.engine import Engine
from matching.model import Command, Trade
from matching.streams import BENCH_PROFILE, generate

NANOSECONDS_PER_SECOND = 1_000_000_000
NANOSECONDS_PER_MICROSECOND = 1_000


def _throughput_pass(commands: list[Command]) -> int:
    """Run every command through a fresh engine; return the elapsed nanoseconds."""
    engine = Engine()
    process = engine.process
    start = time.perf_counter_ns()
    for command in commands:
        process(command)
    return time.perf_counter_ns() - start


def _latency_pass(commands: list[Command]) -> tuple[list[int], int]:
    """Time each command on a fresh engine; return sorted latencies (ns) and trade count."""
    engine = Engine()
    process = engine.process
    clock = time.perf_counter_ns
    latencies = [0] * len(commands)
    trades = 0
    trade_class = Trade
    for position, command in enumerate(commands):
        start = clock()
        events = process(command)
        latencies[position] = clock() - start
        for event in events:
            if type(event) is trade_class:
                trades += 1
    latencies.sort()
    return latencies, trades


def _percentile(sorted_values: list[int], percent: float) -> int:
    """Nearest-rank percentile of already sorted values."""
    rank = max(0, min(len(sorted_values) - 1, int(len(sorted_values) * percent / 100)))
    return sorted_values[rank]


def main(argv: list[str] | None = None) -> int:
    """Generate the stream, run both passes and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instruments", type=int, default=1)
    arguments = parser.parse_args(argv)
    assert arguments.commands > 0 and arguments.instruments > 0

    profile = replace(BENCH_PROFILE, instruments=tuple(range(1, arguments.instruments + 1)))
    generation_start = time.perf_counter_ns()
    commands = generate(profile, arguments.commands, arguments.seed)
    generation_ns = time.perf_counter_ns() - generation_start
    # The pre-built stream is a benchmark artefact: moving it out of the collector's view
    # keeps its million objects from being rescanned by every full collection.
    gc.collect()
    gc.freeze()

    elapsed_ns = _throughput_pass(commands)
    latencies, trades = _latency_pass(commands)
    count = len(commands)
    seconds = elapsed_ns / NANOSECONDS_PER_SECOND
    commands_per_second = count * NANOSECONDS_PER_SECOND // elapsed_ns
    trades_per_second = trades * NANOSECONDS_PER_SECOND // elapsed_ns
    latency_total_ns = sum(latencies)

    print(f"commands={count} instruments={arguments.instruments} seed={arguments.seed}")
    print(f"generation_seconds={generation_ns / NANOSECONDS_PER_SECOND:.2f} (not timed)")
    print(
        f"throughput pass: {seconds:.3f} s, {commands_per_second} commands/s, "
        f"{trades} trades, {trades_per_second} trades/s"
    )
    print(
        f"latency pass (per-call timer): {latency_total_ns / NANOSECONDS_PER_SECOND:.3f} s "
        f"inside process(), "
        f"{count * NANOSECONDS_PER_SECOND // max(1, latency_total_ns)} commands/s"
    )
    for label, percent in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
        microseconds = _percentile(latencies, percent) / NANOSECONDS_PER_MICROSECOND
        print(f"latency_{label}_us={microseconds:.2f}")
    print(f"latency_max_us={latencies[-1] / NANOSECONDS_PER_MICROSECOND:.2f}")
    print(f"commands_per_second={commands_per_second}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
