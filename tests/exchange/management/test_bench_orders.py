"""bench_orders builds a scratch database, places a stream of orders through ``order_place``
and prints its figures; run as its own process, as ``make bench-orders`` runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_one_order_gives_its_latency_as_every_percentile(tmp_path):
    """A run of one order (--orders 1) printed nothing: percentiles need two latencies, and
    statistics.quantiles raised StatisticsError after the order was placed."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["EXCHANGE_VAR_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "manage.py", "bench_orders", "--mode", "inline", "--orders", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "database=sqlite mode=inline clients=1 orders=1 " in lines[0]
    p50, p99 = re.fullmatch(r"order_place latency_ms p50=([\d.]+) p99=([\d.]+)", lines[1]).groups()
    assert p50 == p99
    assert re.fullmatch(r"orders_per_second=\d+", lines[2])
