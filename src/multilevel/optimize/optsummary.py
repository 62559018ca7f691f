"""A record of one optimization: start, end, every evaluation, return code."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class OptSummary:
    """What the optimizer did (as MixedModels.jl ``OptSummary``).

    ``fitlog`` holds every (parameters, objective) pair in evaluation order;
    the Stata-style iteration log is read from it.
    """

    backend: str
    initial: np.ndarray
    final: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fmin: float = np.inf
    n_evals: int = 0
    return_code: str = ""
    converged: bool = False
    fitlog: list[tuple[np.ndarray, float]] = field(default_factory=list)
    boundary: tuple[int, ...] = ()  # indices of parameters at a lower bound of 0

    def iteration_log(self, scale: float = -0.5, label: str = "log likelihood") -> list[str]:
        """Stata-style lines, one per improvement of the objective.

        ``scale`` turns the objective into the reported quantity
        (−½ × deviance = log likelihood).
        """
        lines, best = [], np.inf
        for _, value in self.fitlog:
            if value < best - 1e-12 * max(1.0, abs(best)) or not lines:
                best = value
                lines.append(f"Iteration {len(lines)}:   {label} = {scale * value:.10g}")
        return lines
