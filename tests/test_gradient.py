"""The analytic gradient of the profiled deviance agrees with central differences of the deviance."""
from __future__ import annotations

import numpy as np
import pytest

from multilevel.design import build
from multilevel.lmm import gradient
from multilevel.lmm.model import LinearMixedModel
from multilevel.spec import parse
from tests.conftest import load_data

MODELS = [("pig.csv", "mixed weight week || id:"),
          ("pig.csv", "mixed weight week || id: week, cov(un)"),
          ("pig.csv", "mixed weight week || id: week, cov(un) reml"),
          ("sleepstudy.csv", "mixed Reaction Days || Subject: Days, cov(exchangeable) reml"),
          ("sleepstudy.csv", "mixed Reaction i.Days || Subject: Days, reml"),
          ("ovary.csv", "mixed follicles sin1 cos1 || mare: sin1, residuals(ar 1, t(time))"),
          # several terms: crossed, nested, vector-valued terms at two grouping factors
          ("penicillin.csv", "mixed diameter || _all: R.plate || _all: R.sample"),
          ("penicillin.csv", "mixed diameter || _all: R.plate || _all: R.sample, reml"),
          ("pastes.csv", "mixed strength || batch: || cask:, reml"),
          ("sleepstudy.csv", "mixed Reaction Days || Subject: Days, cov(un) || weekday: Days, cov(un)"),
          ("sleepstudy.csv", "mixed Reaction Days || weekday: Days, cov(un) || Subject: Days, cov(un) reml")]


def _load(dataset):
    data = load_data(dataset)
    if "Days" in data:  # a second, crossed grouping factor with a slope
        data = data.assign(weekday=data["Days"] % 7 + 3 * (data.index % 2))
    return data


@pytest.mark.parametrize("dataset,command", MODELS)
def test_gradient_matches_differences(dataset, command):
    model = LinearMixedModel(build(parse(command), _load(dataset)), reml=" reml" in command)
    assert gradient.available(model)
    theta = model.default_start() * 0.7 + 0.1
    _check(model, theta)
    if len(model.terms) > 1:  # the first parameter on its boundary (a singular Λ for a vector term)
        theta[0] = 0.0
        _check(model, theta)


def _check(model, theta, h=1e-5):
    got = gradient.deviance_gradient(model, model.factor(theta))
    num = [(model.objective(theta + h * e) - model.objective(theta - h * e)) / (2 * h) for e in np.eye(len(theta))]
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-6)


CROSSED_SCALAR = [("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)"),
                  ("sleepstudy.csv", "Reaction ~ Days + (1|Subject) + (1|weekday) + (1|Days)")]


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("dataset,formula", CROSSED_SCALAR)
def test_crossed_scalar_terms_use_the_schur_pattern(dataset, formula, reml):
    """All-scalar crossed terms (the InstEval shape): the factor on the precomputed Schur pattern
    equals the general sparse-product one, and the gradient matches differences."""
    model = LinearMixedModel(build(parse(formula), _load(dataset)), reml=reml)
    assert model.schur_pattern() is not None
    theta = model.theta_start() * 0.7 + 0.1
    _check(model, theta)
    fast = model.factor(theta)
    general = LinearMixedModel(model.design, reml=reml)
    general._schur = None
    general = general.factor(theta)
    np.testing.assert_allclose(fast.L22, general.L22, rtol=1e-10, atol=1e-12)
    assert abs(fast.pwrss - general.pwrss) < 1e-10 * general.pwrss


def test_not_available_for_several_terms_with_a_residual_structure():
    model = LinearMixedModel(build(parse("mixed follicles sin1 || _all: R.mare || time:, residuals(exchangeable)"),
                                   load_data("ovary.csv")))
    assert not gradient.available(model)


def test_a_stall_at_a_symmetric_zero_is_left():
    """Started with θ_plate = 0 (where ∂/∂θ_plate = 0 by symmetry) L-BFGS-B cannot move it; the
    probe restarts it and the optimum is BOBYQA's."""
    from multilevel.lmm.fit import _leave_symmetric_zeros, _value_and_gradient
    from multilevel.optimize import minimize, minimize_with_gradient

    model = LinearMixedModel(build(parse("mixed diameter || _all: R.plate || _all: R.sample"),
                                   load_data("penicillin.csv")))
    lower, upper = model.theta_bounds()
    fg = lambda th: _value_and_gradient(model, th)  # noqa: E731
    stuck = minimize_with_gradient(fg, np.array([0.0, 1.0]), lower, upper)
    reference = minimize(model.objective, model.theta_start(), lower, upper, backend="nlopt")
    assert stuck.final[0] == 0.0 and stuck.fmin > reference.fmin + 1.0
    left = _leave_symmetric_zeros(model, stuck, fg, lower, upper)
    np.testing.assert_allclose(left.final, reference.final, rtol=1e-5)
    assert abs(left.fmin - reference.fmin) < 1e-8
