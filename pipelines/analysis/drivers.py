"""Key-driver analysis: how much of an outcome's explained variance each SERVQUAL perception carries.

The method is the Shapley decomposition of R² of a linear regression (LMG, Lindeman-Merenda-Gold; also called
dominance analysis's general dominance): a predictor's share is its increase in R² when it joins a subset of the
other predictors, averaged over all orders of entry. With five predictors that is exact over the 2^5 = 32 subsets,
and the shares always sum to the full model's R². Each subset's R² comes from the correlation matrix
(R²(S) = r_S' R_SS⁻¹ r_S), so a bootstrap resample costs one weighted sum of the rows' products plus 32 tiny
solves.

    >>> result = key_drivers(perceptions, csat, ("reliability", ...))   # doctest: +SKIP
    >>> result.shares.sum() == result.r2   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import factorial

import numpy as np

MIN_RESPONSES = 10  # fewer complete responses than this: no model (every share is null)


@dataclass(frozen=True)
class DriverResult:
    """Shapley shares of R² (in the predictors' order), with bootstrap intervals and standardised coefficients."""

    predictors: tuple[str, ...]
    responses: int
    r2: float | None
    shares: np.ndarray  # sums to r2
    share_low: np.ndarray  # bootstrap percentile interval of each share (nan when not computed)
    share_high: np.ndarray
    standardized_coefficients: np.ndarray
    resamples: int


class _Moments:
    """First and second moments of the rows of [X, y] (centred once), so that the correlation matrix of any
    weighting of the rows (a bootstrap resample) is one vector-matrix product away."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        data = np.column_stack([x, y])
        data = data - data.mean(axis=0)  # a constant column becomes exact zeros
        self.width = data.shape[1]
        self.upper = np.triu_indices(self.width)
        self.products = np.column_stack([data, data[:, self.upper[0]] * data[:, self.upper[1]]])

    def correlation(self, weights: np.ndarray | None = None) -> np.ndarray | None:
        """Correlation matrix of [X, y] (y last) under row weights; None when y is constant."""
        if weights is None:
            total, sums = float(len(self.products)), self.products.sum(axis=0)
        else:
            total, sums = float(weights.sum()), np.einsum("i,ij->j", weights, self.products)  # faster than @ here
        mean = sums[: self.width] / total
        second = np.zeros((self.width, self.width))
        second[self.upper] = sums[self.width:] / total
        second = second + np.triu(second, 1).T
        cov = second - np.outer(mean, mean)
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        if sd[-1] <= 1e-12:
            return None
        constant = sd <= 1e-12  # a constant predictor explains nothing: zero correlations
        sd[constant] = 1.0
        corr = cov / np.outer(sd, sd)
        corr[constant, :] = 0.0
        corr[:, constant] = 0.0
        corr[constant, constant] = 1.0
        return corr


def _subset_r2(corr: np.ndarray, subset: tuple[int, ...]) -> float:
    if not subset:
        return 0.0
    idx = list(subset)
    r_xy = corr[idx, -1]
    beta = np.linalg.lstsq(corr[np.ix_(idx, idx)], r_xy, rcond=None)[0]
    return float(np.clip(r_xy @ beta, 0.0, 1.0))


def shapley_shares(corr: np.ndarray) -> tuple[float, np.ndarray]:
    """(R² of the full model, each predictor's Shapley share of it) from the correlation matrix of [X, y]."""
    p = corr.shape[0] - 1
    r2 = {s: _subset_r2(corr, s) for k in range(p + 1) for s in combinations(range(p), k)}
    shares = np.zeros(p)
    for j in range(p):
        others = [i for i in range(p) if i != j]
        for k in range(p):
            weight = factorial(k) * factorial(p - k - 1) / factorial(p)
            for subset in combinations(others, k):
                shares[j] += weight * (r2[tuple(sorted((*subset, j)))] - r2[subset])
    return r2[tuple(range(p))], shares


def standardized_coefficients(corr: np.ndarray) -> np.ndarray:
    """Coefficients of the regression on standardised predictors and outcome (beta weights)."""
    p = corr.shape[0] - 1
    return np.linalg.lstsq(corr[:p, :p], corr[:p, -1], rcond=None)[0]


def key_drivers(x: np.ndarray, y: np.ndarray, predictors: tuple[str, ...], *, resamples: int = 200,
                seed: int = 7, interval: float = 0.90) -> DriverResult:
    """Shapley shares of R² for the regression of `y` on the columns of `x` (rows with a nan are the caller's to drop).

    `resamples` bootstrap resamples (rows drawn with replacement, `np.random.default_rng(seed)`) give each share's
    central `interval`. With fewer than MIN_RESPONSES rows, or a constant outcome, every figure is nan.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n, p = x.shape
    nothing = np.full(p, np.nan)
    moments = _Moments(x, y) if n >= MIN_RESPONSES else None
    corr = moments.correlation() if moments else None
    if corr is None:
        return DriverResult(predictors, n, None, nothing, nothing, nothing, nothing, 0)
    r2, shares = shapley_shares(corr)
    low, high = nothing, nothing
    if resamples > 0:
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(resamples):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)  # rows drawn with replacement
            resampled = moments.correlation(counts)
            if resampled is not None:
                boot.append(shapley_shares(resampled)[1])
        if boot:
            tail = (1.0 - interval) / 2 * 100
            low, high = np.percentile(np.array(boot), [tail, 100 - tail], axis=0)
    return DriverResult(predictors, n, r2, shares, low, high, standardized_coefficients(corr), resamples)


OUTCOMES = ("csat", "nps", "ces")


def driver_rows(perceptions: dict[str, np.ndarray], outcomes: dict[str, np.ndarray], *, resamples: int = 200,
                seed: int = 7) -> list[dict]:
    """Rows of the `key_drivers` mart: one per outcome and dimension (columns: pipelines.views.KEY_DRIVERS_SCHEMA).

    `perceptions` maps each dimension to one float per response (nan = not rated), `outcomes` each outcome to one
    float per response (nan = not answered). For an outcome, the responses that answered it and rated every
    dimension are used; those that answered it but miss a perception are counted as left out. `rank` 1 is the
    largest share (equal shares to 12 decimals rank in the dimensions' order); `relative_share` is share / R².
    """
    dimensions = tuple(perceptions)
    x = np.column_stack([perceptions[d] for d in dimensions]) if dimensions else np.empty((0, 0))
    complete = ~np.isnan(x).any(axis=1)
    rows = []
    for outcome in OUTCOMES:
        y = outcomes[outcome]
        answered = ~np.isnan(y)
        used = answered & complete
        result = key_drivers(x[used], y[used], dimensions, resamples=resamples, seed=seed)
        order = np.argsort(-np.round(np.nan_to_num(result.shares, nan=-np.inf), 12), kind="stable")  # float noise ties
        ranks = np.empty(len(dimensions), dtype=int)
        ranks[order] = np.arange(1, len(dimensions) + 1)
        for j, dimension in enumerate(dimensions):
            known = result.r2 is not None
            rows.append({
                "outcome": outcome, "dimension": dimension, "rank": int(ranks[j]) if known else None,
                "share": _number(result.shares[j]),
                "relative_share": _number(result.shares[j] / result.r2) if known and result.r2 > 0 else None,
                "share_low": _number(result.share_low[j]), "share_high": _number(result.share_high[j]),
                "standardized_coefficient": _number(result.standardized_coefficients[j]),
                "r2": result.r2, "responses_used": int(used.sum()), "responses_left_out": int((answered & ~complete).sum()),
                "resamples": result.resamples, "seed": seed,
            })
    return rows


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
