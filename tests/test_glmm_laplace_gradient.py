"""The exact Laplace gradient for several random-effects terms (crossed and nested) against
central differences of the Laplace objective itself (whose values are checked against lme4
and Stata in the conformance cases and test_glmm_bench.py B6)."""
from __future__ import annotations

import numpy as np
import pytest

from multilevel.design import build
from multilevel.glmm.families import make_family
from multilevel.glmm.model import GeneralizedLinearMixedModel
from multilevel.glmm.laplace_gradient import LaplaceGradient
from multilevel.spec import parse
from tests.conftest import load_data

FIXED = "i.year height_s"
CASES = [    # (response, family, random part)
    ("ticks", ("poisson", "log"), "|| _all: R.brood || location:"),              # crossed
    ("ticks", ("poisson", "log"), "|| location: || brood:"),                      # nested
    ("any", ("bernoulli", "logit"), "|| _all: R.brood || location:"),
    ("any", ("bernoulli", "probit"), "|| location: height_s, covariance(unstructured) || brood:"),
    ("ticks", ("nbinomial", "log"), "|| _all: R.brood || location:"),
    ("ticks", ("poisson", "log"), "|| location: height_s, covariance(independent) || brood:"),
]


def _model(response, fam, random):
    df = load_data("grouseticks.csv")
    df["any"] = (df["ticks"] > 0).astype(float)
    design = build(parse(f"meglm {response} {FIXED} {random}"), df)
    family = make_family(*fam)
    family.check(design.y)
    return GeneralizedLinearMixedModel(design, family, design.y, None, "laplace", 1)


@pytest.mark.parametrize("response,fam,random", CASES)
def test_gradient_matches_central_differences(response, fam, random):
    model = _model(response, fam, random)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 0.3, model.p), np.full(model.n_extra, -0.5),
                        0.4 + 0.6 * rng.random(model.n_theta)])
    value, grad = LaplaceGradient(model)(x)
    assert value == pytest.approx(model.objective(x, method="laplace"), rel=1e-12)
    h = 1e-5
    num = np.empty(len(x))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h
        num[j] = (model.objective(x + e, method="laplace") - model.objective(x - e, method="laplace")) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-5 * (1 + np.abs(num).max()))


@pytest.mark.parametrize("random", ["|| _all: R.brood || location:", "|| location: || brood:",
                                    "|| location: height_s || brood:"])
def test_lbfgs_optimum_equals_derivative_free(random, monkeypatch):
    """L-BFGS-B with the exact gradient reaches BOBYQA's optimum (the conformance cases and
    B6 check that optimum against lme4 and Stata).  The random-slope model has two local
    optima, one with the slope's SD at 0 where L-BFGS-B stops (the gradient vanishes there):
    BOBYQA takes over from there and finds the better one."""
    import warnings

    import multilevel as ml
    from multilevel.glmm import fit as glmm_fit

    df = load_data("grouseticks.csv")
    cmd = f"mepoisson ticks {FIXED} {random}, intmethod(laplace)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = ml.fit(cmd, df)
        monkeypatch.setattr(glmm_fit, "_laplace_gradient", lambda model: None)
        monkeypatch.setattr(glmm_fit, "newton_fit", lambda *args: None)
        slow = ml.fit(cmd, df)
    assert slow.optsummary.backend == "nlopt"
    assert fast.loglik == pytest.approx(slow.loglik, abs=1e-6)
    np.testing.assert_allclose(fast.fixed.coef, slow.fixed.coef, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fast.fixed.vcov)), np.sqrt(np.diag(slow.fixed.vcov)), rtol=1e-4)
    assert fast.optsummary.n_evals < slow.optsummary.n_evals / 2
