"""The iteration log, as Stata prints it, read from an OptSummary's fitlog."""
from __future__ import annotations

import numpy as np

from .stata_fmt import fmt_g


def iteration_log(opt, reml: bool = False) -> list[str]:
    """One ``Iteration k:  log likelihood = ...`` line per improvement of the objective.

    The objective is the deviance (−2 log likelihood); derivative-free
    optimizers evaluate many trial points, and only improvements are listed.
    """
    label = "log restricted-likelihood" if reml else "log likelihood"
    lines, best = [], np.inf
    for _, value in opt.fitlog:
        if not lines or value < best - 1e-10 * max(1.0, abs(best)):
            best = value
            lines.append(f"Iteration {len(lines)}:  {label} = {fmt_g(-0.5 * value, 10).strip()}")
    return lines
