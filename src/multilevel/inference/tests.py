"""Test statistics reported with a fit: Wald χ² of the fixed part, LR vs. OLS.

Sources: [ME] mixed, Methods and formulas; Self & Liang (1987, JASA 82) for
the χ̄²(01) mixture when one variance is tested on the boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg.dense import spd_solve
from .distributions import chi2_sf


@dataclass(frozen=True)
class TestResult:
    """A χ² statistic, its degrees of freedom and p-value."""

    stat: float
    df: int
    pvalue: float
    kind: str = "chi2"  # "chi2", "chibar2" or "F"
    df2: float = float("nan")  # denominator DF of an F test


def wald_fixed(names: tuple[str, ...], beta: np.ndarray, vcov: np.ndarray) -> TestResult:
    """Wald χ² that all fixed effects except ``_cons`` are zero: βᵀV⁻¹β."""
    idx = [i for i, n in enumerate(names) if n != "_cons"]
    if not idx:
        return TestResult(np.nan, 0, np.nan)
    b = beta[idx]
    try:
        stat = float(b @ spd_solve(vcov[np.ix_(idx, idx)], b))
    except np.linalg.LinAlgError:  # a singular (or undefined) covariance of the coefficients
        return TestResult(np.nan, len(idx), np.nan)
    return TestResult(stat, len(idx), chi2_sf(stat, len(idx)))


def ols_loglik(gram: np.ndarray, n: int, reml: bool) -> float:
    """Log likelihood of the linear regression of y on X (restricted if ``reml``).

    ``gram`` is [X y]ᵀ[X y]; its Cholesky factor gives RSS (the last diagonal
    element squared) and log|XᵀX|.
    ML: −n/2 (1 + log(2π RSS/n)).  REML: −(n−p)/2 (1 + log(2π RSS/(n−p))) − ½ log|XᵀX|.
    """
    p = gram.shape[0] - 1
    d = np.diag(np.linalg.cholesky(gram))
    rss = d[-1] ** 2
    if not reml:
        return -0.5 * n * (1 + np.log(2 * np.pi * rss / n))
    nu = n - p
    return -0.5 * nu * (1 + np.log(2 * np.pi * rss / nu)) - np.log(d[:-1]).sum()


def lr_vs_linear(loglik: float, loglik0: float, df: int) -> TestResult:
    """LR test against the model without random effects.

    One variance parameter: χ̄²(01), p = ½ P(χ²₁ > LR).  Several: the
    conservative χ²(df) p-value, with Stata's note.
    """
    stat = max(2 * (loglik - loglik0), 0.0)
    if df == 1:
        return TestResult(stat, 1, 0.5 * chi2_sf(stat, 1) if stat > 0 else 1.0, "chibar2")
    return TestResult(stat, df, chi2_sf(stat, df), "chi2")
