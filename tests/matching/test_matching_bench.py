"""Smoke test of the benchmark entry point."""

from __future__ import annotations

import re

import pytest

from matching import bench


def test_bench_prints_commands_per_second_last(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a tiny run of the benchmark
    assert bench.main(["--commands", "3000", "--seed", "4", "--instruments", "2"]) == 0
    # Then its last line is the machine-readable throughput figure
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"commands_per_second=\d+", lines[-1])
    assert any(line.startswith("latency_p99_us=") for line in lines)
