"""Key-driver analysis (pipelines/analysis/drivers.py): Shapley shares of R² against hand-computed regressions."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from pipelines.analysis.drivers import driver_rows, key_drivers

DIMS = ("reliability", "responsiveness", "assurance", "empathy", "tangibles")

# Columns 1..6 of the 8 x 8 Sylvester-Hadamard matrix: +-1, mean 0, mutually orthogonal.
H = np.array([[1 if bin(r & c).count("1") % 2 == 0 else -1 for c in range(8)] for r in range(8)], dtype=float)


def test_uncorrelated_predictors_share_their_squared_correlations():
    # y = 3 h1 + 2 h2 + h3 + h6: var parts 9 : 4 : 1 (+ 1 unexplained), so r_j^2 = 9/15, 4/15, 1/15, 0, 0 and,
    # predictors being orthogonal, each Shapley share is its r_j^2; R^2 = 14/15.
    x = H[:, 1:6]
    y = 3 * H[:, 1] + 2 * H[:, 2] + H[:, 3] + H[:, 6]
    x, y = np.vstack([x, x]), np.concatenate([y, y])  # 16 rows: at least MIN_RESPONSES, same correlations
    result = key_drivers(x, y, DIMS, resamples=0)
    assert result.r2 == pytest.approx(14 / 15)
    assert result.shares == pytest.approx([9 / 15, 4 / 15, 1 / 15, 0, 0], abs=1e-12)
    # standardised coefficients of orthogonal predictors are their correlations: 3/sqrt(15), ...
    assert result.standardized_coefficients == pytest.approx([3 / 15 ** 0.5, 2 / 15 ** 0.5, 1 / 15 ** 0.5, 0, 0], abs=1e-12)


def test_two_correlated_predictors_match_the_closed_form():
    x1 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    x2 = [2, 1, 4, 3, 6, 5, 9, 7, 8, 12, 10, 11]
    y = [1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 11.0, 12.0, 10.0]
    r1, r2, rho = statistics.correlation(x1, y), statistics.correlation(x2, y), statistics.correlation(x1, x2)
    r2_both = (r1 ** 2 + r2 ** 2 - 2 * r1 * r2 * rho) / (1 - rho ** 2)
    # two predictors: share_1 = (R²(1) + R²(1,2) - R²(2)) / 2, and symmetrically
    expected = [(r1 ** 2 + r2_both - r2 ** 2) / 2, (r2 ** 2 + r2_both - r1 ** 2) / 2]
    result = key_drivers(np.column_stack([x1, x2]), np.array(y), ("a", "b"), resamples=0)
    assert result.r2 == pytest.approx(r2_both)
    assert result.shares == pytest.approx(expected)
    beta = [(r1 - rho * r2) / (1 - rho ** 2), (r2 - rho * r1) / (1 - rho ** 2)]
    assert result.standardized_coefficients == pytest.approx(beta)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shares_always_sum_to_r2_and_intervals_hold_the_share(seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(300, 1))
    x = base + rng.normal(size=(300, 5))  # correlated predictors
    y = x @ np.array([0.5, 0.3, 0.1, 0.0, -0.2]) + rng.normal(size=300)
    result = key_drivers(x, y, DIMS, resamples=50, seed=seed)
    assert result.shares.sum() == pytest.approx(result.r2)
    full = np.column_stack([np.ones(300), x])
    residual = y - full @ np.linalg.lstsq(full, y, rcond=None)[0]
    assert result.r2 == pytest.approx(1 - residual.var() / y.var())  # the plain OLS R²
    assert np.all(result.share_low <= result.shares) and np.all(result.shares <= result.share_high)


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    y = x[:, 0] + rng.normal(size=80)
    first, again, other = (key_drivers(x, y, DIMS, resamples=30, seed=s) for s in (7, 7, 8))
    assert first.share_low.tolist() == again.share_low.tolist()
    assert first.share_high.tolist() == again.share_high.tolist()
    assert first.share_low.tolist() != other.share_low.tolist()


def test_too_few_responses_or_a_constant_outcome_give_no_model():
    x = H[:, 1:6]
    assert key_drivers(x, H[:, 1], DIMS).r2 is None  # 8 rows < MIN_RESPONSES
    flat = key_drivers(np.vstack([x, x]), np.full(16, 4.0), DIMS)
    assert flat.r2 is None and np.isnan(flat.shares).all()


def test_a_constant_predictor_carries_no_share():
    x = np.vstack([H[:, 1:6]] * 2)
    x[:, 4] = 5.0
    result = key_drivers(x, 2 * x[:, 0] + x[:, 1] + np.tile(H[:, 6], 2), DIMS, resamples=0)
    assert result.shares[4] == 0.0
    assert result.shares.sum() == pytest.approx(result.r2)


def test_driver_rows_leave_out_and_count_incomplete_responses():
    n = 16
    x = np.vstack([H[:, 1:6]] * 2)
    perceptions = {d: x[:, j].copy() for j, d in enumerate(DIMS)}
    csat = 3 * x[:, 0] + 2 * x[:, 1] + x[:, 2] + np.tile(H[:, 6], 2)
    # two more responses: one misses a perception (left out), one has no csat (not counted for csat)
    perceptions = {d: np.append(v, [np.nan if d == "empathy" else 1.0, 1.0]) for d, v in perceptions.items()}
    outcomes = {"csat": np.append(csat, [4.0, np.nan]), "nps": np.full(n + 2, np.nan), "ces": np.full(n + 2, np.nan)}
    rows = driver_rows(perceptions, outcomes, resamples=0)
    csat_rows = {r["dimension"]: r for r in rows if r["outcome"] == "csat"}
    assert [csat_rows[d]["rank"] for d in DIMS] == [1, 2, 3, 4, 5]  # the two zero shares keep the dimensions' order
    assert csat_rows["reliability"]["share"] == pytest.approx(9 / 15)
    assert csat_rows["reliability"]["relative_share"] == pytest.approx(9 / 14)
    assert {(r["responses_used"], r["responses_left_out"]) for r in csat_rows.values()} == {(16, 1)}
    assert [r["r2"] for r in csat_rows.values()] == pytest.approx([14 / 15] * 5)
    nps_rows = [r for r in rows if r["outcome"] == "nps"]
    assert len(nps_rows) == 5 and all(r["share"] is None and r["rank"] is None and r["r2"] is None for r in nps_rows)
    assert {(r["responses_used"], r["responses_left_out"]) for r in nps_rows} == {(0, 0)}
