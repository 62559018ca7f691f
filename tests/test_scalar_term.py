"""The closed-form criterion of a lone scalar term (lmm/scalar_term.py) against the general
blocked factor and analytic gradient, and against central differences of its own deviance."""
import numpy as np
import pandas as pd
import pytest

from multilevel import design as _design
from multilevel.lmm import gradient, scalar_term
from multilevel.lmm.pseudolikelihood import make_model
from multilevel.spec import parse

PIG = pd.read_csv("tests/data/pig.csv")
COMMANDS = ["mixed weight week || id:", "mixed weight week || id:, reml", "mixed weight || id:",
            "mixed weight week, nocons || id:, reml", "mixed weight, nocons || id:",
            "mixed weight week || id: week, nocons"]


@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("theta", [0.0, 0.3, 1.8, 5.0])
def test_matches_general_factor_and_gradient(cmd, theta):
    spec = parse(cmd)
    model = make_model(_design.build(spec, PIG), reml=spec.method == "reml")
    assert scalar_term.applies(model)
    crit = scalar_term.criterion(model)
    th = np.array([theta])
    f = model.factor(th)
    value, grad, curvature = crit.value_gradient_curvature(th)
    assert value == pytest.approx(model.deviance(f), rel=1e-10)
    assert grad[0] == pytest.approx(gradient.deviance_gradient(model, f)[0], rel=1e-8, abs=1e-8)
    h = 1e-5
    up, dn = crit.value_gradient_curvature(th + h), crit.value_gradient_curvature(th - h)
    if theta > 0:
        assert grad[0] == pytest.approx((up[0] - dn[0]) / (2 * h), rel=1e-5, abs=1e-5)
    assert curvature == pytest.approx((up[1][0] - dn[1][0]) / (2 * h), rel=1e-5, abs=1e-5)


def test_not_used_beyond_its_case():
    for cmd in ["mixed weight week || id: week", "mixed weight week || id:, residuals(ar 1, t(week))"]:
        spec = parse(cmd)
        assert not scalar_term.applies(make_model(_design.build(spec, PIG)))


def test_model_without_fixed_effects_matches_lme4():
    """``mixed weight, nocons || id:`` (no fixed effects) used to fail in the back-substitution;
    lme4's fit: tests/references/no_fixed/make.R."""
    import json

    import multilevel as ml

    ref = json.load(open("tests/references/no_fixed/pig_nocons.json"))
    d = ml.fit("mixed weight, nocons || id:", data=PIG).to_dict()
    assert d["loglik"] == pytest.approx(ref["loglik"], abs=1e-6)
    assert d["random"][0]["cov"][0][0] == pytest.approx(ref["var_id"], rel=1e-6)
    assert d["residual"]["var"] == pytest.approx(ref["var_residual"], rel=1e-6)


@pytest.mark.parametrize("cmd", COMMANDS[:5])
@pytest.mark.parametrize("theta", [0.3, 1.8])
def test_hessian_matches_differences_of_the_gradient(cmd, theta):
    spec = parse(cmd)
    model = make_model(_design.build(spec, PIG), reml=spec.method == "reml")
    crit = scalar_term.criterion(model)
    sigma2 = 300.0 if "nocons" in cmd and "week" not in cmd else 4.0
    psi = np.array([theta, sigma2])
    H = crit.loglik_hessian(psi[:1], sigma2)
    for j, h in enumerate([1e-6, 1e-6 * sigma2]):
        e = np.zeros(2)
        e[j] = h
        up, dn = psi + e, psi - e
        col = (gradient.loglik_gradient(model, up[:1], up[1]) - gradient.loglik_gradient(model, dn[:1], dn[1])) / (2 * h)
        np.testing.assert_allclose(H[:, j], col, rtol=1e-5, atol=1e-7 * np.abs(H).max())
