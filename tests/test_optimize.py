"""The optimizer backends on known functions (the fits' own tests check them against references)."""
from __future__ import annotations

import numpy as np

from multilevel.optimize import minimize_with_gradient
from multilevel.optimize.backends import _at_rounding_floor


def test_rounding_floor_rule():
    """L-BFGS-B is stopped once its last three points agree to 1e-8 and their values to the
    last digits of a large deviance (4·10⁷ at 10⁷ rows: B4_1e7 went on for 7 more evaluations
    at one point); not while the points still move or the values still fall."""
    x = np.array([0.2499208, 0.1498639, 0.4778921])
    f = 43026513.427794
    at_floor = [(x + 1e-10, f + 1.5e-8), (x - 1e-10, f), (x, f + 7.5e-9)]
    assert _at_rounding_floor(at_floor)
    assert not _at_rounding_floor(at_floor[1:])                       # too few points
    assert not _at_rounding_floor([(x + 1e-6, f)] + at_floor[1:])      # still moving
    assert not _at_rounding_floor([(x, f + 1e-3)] + at_floor[1:])      # still falling
    assert not _at_rounding_floor([(x, np.inf)] + at_floor[1:])


def test_lbfgs_on_a_large_objective_reaches_its_minimum():
    centre = np.array([0.25, 0.15, 0.48])
    opt = minimize_with_gradient(lambda x: (4e7 + (x - centre) @ (x - centre), 2 * (x - centre)),
                                 np.array([1.0, 0.6, 0.6]), np.zeros(3), np.full(3, np.inf))
    assert opt.converged
    np.testing.assert_allclose(opt.final, centre, atol=1e-6)
    assert opt.fmin == min(f for _, f in opt.fitlog)
