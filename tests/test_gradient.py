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
          ("ovary.csv", "mixed follicles sin1 cos1 || mare: sin1, residuals(ar 1, t(time))")]


@pytest.mark.parametrize("dataset,command", MODELS)
def test_gradient_matches_differences(dataset, command):
    model = LinearMixedModel(build(parse(command), load_data(dataset)), reml=" reml" in command)
    assert gradient.available(model)
    theta = model.theta_start() * 0.7 + 0.1
    got = gradient.deviance_gradient(model, model.factor(theta))
    h = 1e-4
    num = [(model.objective(theta + h * e) - model.objective(theta - h * e)) / (2 * h) for e in np.eye(len(theta))]
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-6)


def test_not_available_for_crossed_models():
    model = LinearMixedModel(build(parse("mixed diameter || _all: R.plate || _all: R.sample"),
                                   load_data("penicillin.csv")))
    assert not gradient.available(model)
