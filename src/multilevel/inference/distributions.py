"""The few distribution functions inference needs, from scipy.special.

scipy.stats takes about half a second to import; these are the same
functions without that cost.
"""
from __future__ import annotations

import numpy as np
from scipy import special


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p)."""
    return float(special.ndtri(p))


def critical_value(level: float) -> float:
    """Two-sided normal critical value for a ``level``% interval (1.96 for 95)."""
    return normal_quantile(0.5 + level / 200)


def normal_two_sided_p(z: np.ndarray) -> np.ndarray:
    """P(|Z| > |z|) = 2Φ(−|z|)."""
    return 2 * special.ndtr(-np.abs(z))


def chi2_sf(x: float, df: float) -> float:
    """P(χ²_df > x)."""
    return float(special.chdtrc(df, x))


def t_two_sided_p(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """P(|T_df| > |t|)."""
    return 2 * special.stdtr(df, -np.abs(t))


def t_critical(level: float, df: np.ndarray) -> np.ndarray:
    """Two-sided t critical values for a ``level``% interval."""
    return special.stdtrit(df, 0.5 + level / 200)


def f_sf(x: float, df1: float, df2: float) -> float:
    """P(F_{df1, df2} > x)."""
    return float(special.fdtrc(df1, df2, x))
