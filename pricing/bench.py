"""Benchmark of Black-76 prices and implied volatilities on one core.

Usage: ``python -m pricing.bench [--prices N] [--implied-vols N] [--repeats R] [--seed S]``

Seeded random options (not timed): F uniform in $0.50-$5.00/GPU-hr, K/F log-uniform in
0.5-2, T uniform in 1/365-3 years, r uniform in 0-8%, sigma uniform in 0.05-3, calls and puts
half each. `black76.price` runs over all N options in one vectorized call; `implied_volatility`
over the prices of the second set. Each figure is the best of R repetitions (the least disturbed
by other processes). The implied volatilities are checked against the sigmas that made the
prices. The last line printed is ``prices_per_second=<int> implied_vols_per_second=<int>``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pricing import black76

FloatArray = npt.NDArray[np.float64]

FORWARD_MIN, FORWARD_MAX = 0.5, 5.0
MONEYNESS_MIN, MONEYNESS_MAX = 0.5, 2.0
EXPIRY_MIN_YEARS, EXPIRY_MAX_YEARS = 1.0 / 365.0, 3.0
RATE_MIN, RATE_MAX = 0.0, 0.08
SIGMA_MIN, SIGMA_MAX = 0.05, 3.0
# The round-trip check covers options whose vega is not negligible and whose float price
# carries enough digits to fix sigma: ulp(price) / vega, the limit for any solver, <= 1e-12.
VEGA_NEGLIGIBLE = 1e-8
PRICE_RESOLUTION_IN_SIGMA_MAX = 1e-12


class Options(NamedTuple):
    """A batch of option inputs in the units of `pricing.black76`."""

    forward: FloatArray
    strike: FloatArray
    expiry: FloatArray
    rate: FloatArray
    sigma: FloatArray
    call: npt.NDArray[np.bool_]


def random_options(count: int, generator: np.random.Generator) -> Options:
    """``count`` seeded random options over the benchmark's ranges."""
    forward = generator.uniform(FORWARD_MIN, FORWARD_MAX, count)
    log_moneyness = generator.uniform(np.log(MONEYNESS_MIN), np.log(MONEYNESS_MAX), count)
    return Options(
        forward=forward,
        strike=forward * np.exp(log_moneyness),
        expiry=generator.uniform(EXPIRY_MIN_YEARS, EXPIRY_MAX_YEARS, count),
        rate=generator.uniform(RATE_MIN, RATE_MAX, count),
        sigma=generator.uniform(SIGMA_MIN, SIGMA_MAX, count),
        call=generator.random(count) < 0.5,
    )


def best_seconds(function: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Best and all wall-clock times of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return min(seconds), seconds


def main(argv: list[str] | None = None) -> int:
    """Generate the options, time both passes and print the report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prices", type=int, default=1_000_000)
    parser.add_argument("--implied-vols", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args(argv)
    assert arguments.prices > 0 and arguments.implied_vols > 0 and arguments.repeats > 0

    generator = np.random.default_rng(arguments.seed)
    book = random_options(arguments.prices, generator)
    chain = random_options(arguments.implied_vols, generator)
    chain_prices = black76.price(*chain)
    print(
        f"options: prices={arguments.prices} implied_vols={arguments.implied_vols} "
        f"seed={arguments.seed} repeats={arguments.repeats}"
    )
    print(
        f"inputs: F ${FORWARD_MIN:.2f}-${FORWARD_MAX:.2f}/GPU-hr, K/F {MONEYNESS_MIN}-"
        f"{MONEYNESS_MAX} (log-uniform), T 1/365-{EXPIRY_MAX_YEARS:g} years, "
        f"r {RATE_MIN:.0%}-{RATE_MAX:.0%}, sigma {SIGMA_MIN}-{SIGMA_MAX}, half calls"
    )

    price_seconds, price_runs = best_seconds(lambda: black76.price(*book), arguments.repeats)
    print(
        f"price: best {price_seconds:.4f} s for {arguments.prices} options "
        f"(runs: {', '.join(f'{s:.4f}' for s in price_runs)})"
    )

    def solve() -> None:
        black76.implied_volatility(
            chain_prices, chain.forward, chain.strike, chain.expiry, chain.rate, chain.call
        )

    implied_seconds, implied_runs = best_seconds(solve, arguments.repeats)
    print(
        f"implied_volatility: best {implied_seconds:.4f} s for {arguments.implied_vols} options "
        f"(runs: {', '.join(f'{s:.4f}' for s in implied_runs)})"
    )
    _print_accuracy(chain, chain_prices)

    prices_per_second = int(arguments.prices / price_seconds)
    implied_vols_per_second = int(arguments.implied_vols / implied_seconds)
    print(
        f"prices_per_second={prices_per_second} implied_vols_per_second={implied_vols_per_second}"
    )
    return 0


def _print_accuracy(chain: Options, chain_prices: FloatArray) -> None:
    """Solver steps and the round-trip error of the timed implied volatilities (not timed)."""
    result = black76.implied_volatility_result(
        chain_prices, chain.forward, chain.strike, chain.expiry, chain.rate, chain.call
    )
    vega = black76.greeks(*chain).vega
    with np.errstate(divide="ignore"):
        resolution = np.spacing(chain_prices) / vega
    checked = (vega > VEGA_NEGLIGIBLE) & (resolution <= PRICE_RESOLUTION_IN_SIGMA_MAX)
    error = np.abs(result.sigma - chain.sigma)
    print(
        f"implied_volatility: steps mean {result.iterations.mean():.2f}, max "
        f"{result.iterations.max()}; not solved {int(np.count_nonzero(result.reasons))}; "
        f"round-trip max |error| {error[checked].max():.1e} over {int(checked.sum())} options "
        f"with vega > {VEGA_NEGLIGIBLE:g} and ulp(price)/vega <= {PRICE_RESOLUTION_IN_SIGMA_MAX:g}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
