"""Hedge recommendations: costs with and without hedges, and the minimum-variance ratio."""

import numpy as np
import pytest

from pricing.hedge import (
    HedgeInputError,
    PlannedNeed,
    minimum_variance_hedge_ratio,
    recommend,
    simulate_prices,
)

# 64 H100s for three months from next month, on a gently falling curve (MARKET.md prices).
NEED = PlannedNeed(
    gpus=64,
    hours=(744, 720, 744),
    forwards=(2.45, 2.40, 2.36),
    years_to_delivery=(1.5 / 12, 2.5 / 12, 3.5 / 12),
)
FIXED_COST = 64 * (744 * 2.45 + 720 * 2.40 + 744 * 2.36)


def test_the_simulation_is_seeded_and_centred_on_the_forwards():
    first = simulate_prices(NEED, sigma=0.6, paths=50_000, seed=7)
    again = simulate_prices(NEED, sigma=0.6, paths=50_000, seed=7)

    assert np.array_equal(first, again)
    # The forward is the expected price: within 4 standard errors of the sample mean.
    standard_error = first.std(axis=0) / np.sqrt(first.shape[0])
    assert np.all(np.abs(first.mean(axis=0) - NEED.forwards) < 4 * standard_error)


def test_a_full_futures_hedge_fixes_the_cost():
    result = recommend(NEED, sigma=0.6)

    futures = result.costs["futures"]
    assert futures.expected == pytest.approx(FIXED_COST)
    assert futures.worst_case == pytest.approx(FIXED_COST)
    assert result.futures_per_month == (64, 64, 64)


def test_options_cut_the_worst_case_and_the_collar_bounds_it():
    result = recommend(NEED, sigma=0.6)
    none, cap, collar = (result.costs[name] for name in ("none", "cap", "collar"))

    # Unhedged the expected cost is the forward cost (Monte Carlo error aside)...
    assert none.expected == pytest.approx(FIXED_COST, rel=0.01)
    # ...but its worst case is far above; a cap and a collar bring it down.
    assert none.worst_case > FIXED_COST * 1.2
    assert cap.worst_case < none.worst_case
    assert collar.worst_case <= cap.worst_case
    # The collar never costs more than the cap strikes plus the net premium.
    volume = 64 * np.array(NEED.hours)
    ceiling = float(np.array(result.cap_strikes) @ volume) + collar.premium
    assert collar.worst_case <= ceiling + 1e-6
    assert cap.premium > collar.premium > -cap.premium


def test_the_hedge_ratio_scales_the_strip():
    result = recommend(NEED, sigma=0.6, hedge_ratio=0.5)

    assert result.futures_per_month == (32, 32, 32)
    assert result.costs["futures"].worst_case < result.costs["none"].worst_case


def test_minimum_variance_ratio_recovers_a_known_relation():
    # given a need whose returns are 0.8 x the hedge's plus independent noise
    rng = np.random.default_rng(3)
    hedge_returns = rng.normal(0, 0.03, 20_000)
    need_returns = 0.8 * hedge_returns + rng.normal(0, 0.01, 20_000)
    hedge = 2.4 * np.exp(np.concatenate([[0.0], np.cumsum(hedge_returns)]))
    need = 2.6 * np.exp(np.concatenate([[0.0], np.cumsum(need_returns)]))

    ratio, correlation = minimum_variance_hedge_ratio(need, hedge)

    assert ratio == pytest.approx(0.8, abs=0.01)
    expected_correlation = 0.8 * 0.03 / np.sqrt((0.8 * 0.03) ** 2 + 0.01**2)
    assert correlation == pytest.approx(expected_correlation, abs=0.01)


@pytest.mark.parametrize(
    "changes",
    [
        {"gpus": 0},
        {"hours": (744, 720)},
        {"forwards": (2.45, -1.0, 2.36)},
        {"years_to_delivery": (0.3, 0.2, 0.4)},
    ],
)
def test_bad_needs_are_refused(changes):
    fields = {
        "gpus": NEED.gpus,
        "hours": NEED.hours,
        "forwards": NEED.forwards,
        "years_to_delivery": NEED.years_to_delivery,
    }
    with pytest.raises(HedgeInputError):
        PlannedNeed(**{**fields, **changes})


def test_bad_strategy_inputs_are_refused():
    with pytest.raises(HedgeInputError):
        recommend(NEED, sigma=0.6, cap_moneyness=0.9)
    with pytest.raises(HedgeInputError):
        minimum_variance_hedge_ratio([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(HedgeInputError):
        minimum_variance_hedge_ratio([1.0, 2.0, float("nan"), 3.0], [1.0, 2.0, 2.5, 3.0])
