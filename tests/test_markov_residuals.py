"""The O(groups) AR(1)/exponential path gives the same likelihood as whitening every group."""
from __future__ import annotations

import numpy as np
import pytest

from multilevel.design import build
from multilevel.lmm.model import LinearMixedModel
from multilevel.spec import parse
from tests.conftest import load_data

COMMANDS = [
    ("ovary.csv", "mixed follicles sin1 cos1 || mare:, residuals(ar 1, t(time))"),
    ("ovary.csv", "mixed follicles sin1 cos1 || mare: sin1, residuals(exponential, t(time))"),
    ("orthodont.csv", "mixed distance age i.male || subject:, residuals(ar 1, t(occ) by(male))"),
    ("orthodont.csv", "mixed distance age i.male || subject:, noconstant residuals(ar 1, t(occ))"),
]


@pytest.mark.parametrize("dataset,command", COMMANDS)
def test_markov_statistics_equal_row_whitening(dataset, command):
    data = load_data(dataset)
    # drop some rows so that time gaps of 2 and 3 occur
    data = data.drop(index=data.index[::7]).reset_index(drop=True)
    design = build(parse(command), data)
    fast = LinearMixedModel(design)
    slow = LinearMixedModel(design)
    slow._markov = None
    assert fast._markov is not None and len(fast._markov.gaps) > 1
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = fast.theta_start() + rng.uniform(-0.3, 0.3, fast.n_theta)
        assert fast.objective(theta) == pytest.approx(slow.objective(theta), rel=1e-11)
