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
