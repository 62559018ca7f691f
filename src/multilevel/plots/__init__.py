"""Plots of a fitted mixed model (matplotlib; ``pip install "multilevel[plot]"``).

Each function draws on ``ax`` (a new figure when it is ``None``) and returns
the matplotlib Axes.  matplotlib is imported only when a plot is drawn.

- ``caterpillar``: BLUPs of one level and term, sorted, with intervals
- ``residuals_vs_fitted``: residuals against fitted values
- ``qq``: normal quantile plot of standardized residuals or BLUPs
- ``trajectories``: observed values and fitted lines per group over time
"""
from __future__ import annotations

from .diagnostics import caterpillar, qq, residuals_vs_fitted
from .trajectories import trajectories

__all__ = ["caterpillar", "qq", "residuals_vs_fitted", "trajectories"]
KINDS = {"caterpillar": caterpillar, "qq": qq, "residuals": residuals_vs_fitted,
         "residuals_vs_fitted": residuals_vs_fitted, "trajectories": trajectories}


def plot(res, kind: str = "caterpillar", **options):
    """Dispatch ``res.plot(kind, ...)`` to the function of that name."""
    if kind not in KINDS:
        raise ValueError(f"unknown plot {kind!r}; choose one of {', '.join(sorted(KINDS))}")
    return KINDS[kind](res, **options)
