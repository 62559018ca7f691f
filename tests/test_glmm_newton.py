"""The Newton fit of crossed/nested Laplace GLMMs (glmm/newton.py): its Newton matrix against
central differences of the exact gradient (which test_glmm_laplace_gradient.py checks against
the objective), and its optimum against the derivative-free fit's."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import multilevel as ml
from multilevel.design import build
from multilevel.glmm.families import make_family
from multilevel.glmm.laplace_gradient import LaplaceGradient
from multilevel.glmm.model import GeneralizedLinearMixedModel
from multilevel.spec import parse
from tests.conftest import load_data


def _model(family, random):
    df = load_data("grouseticks.csv")
    df["lticks"] = np.log1p(df["ticks"])
    response = "lticks" if family[0] == "gaussian" else "ticks"
    design = build(parse(f"meglm {response} i.year height_s {random}"), df)
    fam = make_family(*family)
    fam.check(design.y)
    return GeneralizedLinearMixedModel(design, fam, design.y, None, "laplace", 1)


def _fd_hessian(lg, x, h=1e-5):
    H = np.column_stack([(lg(x + h * e)[1] - lg(x - h * e)[1]) / (2 * h) for e in np.eye(len(x))])
    return 0.5 * (H + H.T)


@pytest.mark.parametrize("random", ["|| _all: R.brood || location:",
                                    "|| location: height_s, covariance(unstructured) || brood:"])
def test_newton_matrix_is_exact_without_third_derivatives(random):
    """Gaussian with the identity link: ℓ‴ = 0, so the profiled Hessian plus the log-determinant's
    θ curvature is the whole Hessian of −2ℓ_L in (β, θ) (ξ = ln σ held fixed)."""
    model = _model(("gaussian", "identity"), random)
    lg = LaplaceGradient(model)
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 0.3, model.p), [-0.3], 0.3 + 0.5 * rng.random(model.n_theta)])
    keep = np.r_[0:model.p, model.p + 1:len(x)]
    H = _fd_hessian(lg, x)[np.ix_(keep, keep)]
    lg(x)
    np.testing.assert_allclose(lg.newton_matrix(), H, rtol=1e-5, atol=1e-5 * np.abs(H).max())


def test_newton_matrix_close_for_poisson():
    """Poisson: only the ℓ‴ terms are missing (a few per cent here, 1-6 obs per brood)."""
    model = _model(("poisson", "log"), "|| _all: R.brood || location:")
    lg = LaplaceGradient(model)
    x = np.array([1.17, -0.98, -0.85, 0.47, 0.77, 0.57])
    H = _fd_hessian(lg, x)
    lg(x)
    N = lg.newton_matrix()
    scale = np.sqrt(np.outer(np.diag(H), np.diag(H)))
    assert np.max(np.abs(N - H) / scale) < 0.15


@pytest.mark.parametrize("random", ["|| _all: R.brood || location:", "|| location: || brood:"])
def test_newton_fit(random):
    """B6: a dozen Newton evaluations to BOBYQA's optimum (test_glmm_bench.py checks it against lme4)."""
    df = load_data("grouseticks.csv")
    res = ml.fit(f"mepoisson ticks i.year height_s {random}, intmethod(laplace)", df)
    assert res.optsummary.backend == "newton" and res.optsummary.converged
    assert res.optsummary.n_evals <= 15
    assert res.loglik == pytest.approx(-987.9381538436, abs=1e-8)


def test_boundary_optimum_falls_back():
    """A random-slope SD near 0 at the Newton optimum: the derivative-free path takes over and
    finds the better optimum (test_glmm_laplace_gradient.py)."""
    df = load_data("grouseticks.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ml.fit("mepoisson ticks i.year height_s || location: height_s || brood:, intmethod(laplace)", df)
    assert res.optsummary.backend == "nlopt"
