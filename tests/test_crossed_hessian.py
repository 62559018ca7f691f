"""The exact Hessian of the profiled deviance for several scalar terms (lmm/hessian.py) against
central differences of the analytic gradient, and the Newton fit built on it against BOBYQA."""
from __future__ import annotations

import numpy as np
import pytest

from multilevel.design import build
from multilevel.lmm import gradient, hessian
from multilevel.lmm.fit import optimize
from multilevel.lmm.model import LinearMixedModel
from multilevel.optimize import minimize
from multilevel.spec import parse
from tests.conftest import load_data

MODELS = [("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)"),        # crossed
          ("pastes.csv", "strength ~ 1 + (1|batch) + (1|batch:cask)"),        # nested
          ("oats.csv", "yield ~ nitro + (1|block) + (1|block:variety)"),      # nested, X rows
          ("sleepstudy.csv", "Reaction ~ Days + (1|Subject) + (1|weekday) + (1|Days)")]  # three


def _model(dataset: str, formula: str, reml: bool) -> LinearMixedModel:
    data = load_data(dataset)
    if "Days" in data:  # a second, crossed grouping factor
        data = data.assign(weekday=data["Days"] % 7 + 3 * (data.index % 2))
    return LinearMixedModel(build(parse(formula), data), reml=reml)


SLOPE = ("sleepstudy.csv", "Reaction ~ Days + (0 + Days|Subject) + (1|weekday)")  # a scalar slope


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("dataset,formula", MODELS + [SLOPE])
def test_hessians_match_differences_of_the_gradients(dataset, formula, reml):
    model = _model(dataset, formula, reml)
    assert hessian.applies(model)
    theta = model.theta_start() * 0.8 + 0.2
    n, h = len(theta), 1e-6
    H = gradient.deviance_hessian(model, model.factor(theta))
    num = np.column_stack([(gradient.deviance_gradient(model, model.factor(theta + h * e))
                            - gradient.deviance_gradient(model, model.factor(theta - h * e))) / (2 * h)
                           for e in np.eye(n)])
    np.testing.assert_allclose(H, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())
    sigma2 = model.sigma2(model.factor(theta)) * 1.3
    psi = np.append(theta, sigma2)
    H_psi = gradient.loglik_hessian(model, theta, sigma2)
    steps = np.append(np.full(n, h), h * sigma2)
    num = np.column_stack([(gradient.loglik_gradient(model, (psi + d)[:n], (psi + d)[n])
                            - gradient.loglik_gradient(model, (psi - d)[:n], (psi - d)[n])) / (2 * d[j])
                           for j, d in enumerate(np.diag(steps))])
    np.testing.assert_allclose(H_psi, num, rtol=1e-5, atol=1e-6 * np.abs(num).max())


def test_not_used_beyond_its_case():
    sleep = load_data("sleepstudy.csv")
    for formula in ["Reaction ~ Days + (1|Subject)", "Reaction ~ Days + (Days|Subject) + (1|Days)"]:
        assert not hessian.applies(LinearMixedModel(build(parse(formula), sleep)))


def test_no_hessian_at_a_zero_scale():
    model = _model(*MODELS[0], reml=False)
    assert gradient.deviance_hessian(model, model.factor(np.array([0.0, 1.0]))) is None


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("dataset,formula", MODELS[:3])
def test_newton_reaches_bobyqas_optimum(dataset, formula, reml):
    model = _model(dataset, formula, reml)
    opt = optimize(model)
    assert opt.backend == "newton" and opt.converged
    ref = _bobyqa(model)
    assert opt.fmin <= ref.fmin + 1e-9 * abs(ref.fmin)
    np.testing.assert_allclose(opt.final, ref.final, rtol=1e-4)


@pytest.mark.parametrize("reml", [False, True])
def test_variances_at_zero_fall_back_to_lbfgs(reml):
    """Two of the three variances are 0 at the optimum: Newton creeps toward the bound and gives
    up; L-BFGS-B (with the symmetric-zero probes and BOBYQA's polish) ends there."""
    model = _model(*MODELS[3], reml)
    opt = optimize(model)
    assert opt.backend != "newton" and opt.boundary == (1, 2)
    assert opt.fmin <= _bobyqa(model).fmin + 1e-8


def _bobyqa(model: LinearMixedModel):
    lower, upper = model.theta_bounds()
    return minimize(model.objective, model.theta_start(), lower, upper, backend="nlopt")


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("dataset,formula", MODELS[:3])
def test_newton_matrix_far_from_the_optimum(dataset, formula, reml):
    """The cheaper matrix is the Hessian with F_st = ‖E_sPE_t‖² replaced by its diagonal-only
    part (F̃_tt = Σ_g P_gg², F̃_st = 0): the two differ by 4(F − F̃)/(λ_sλ_t), with P = Ω⁻¹ formed
    densely here."""
    model = _model(dataset, formula, reml)
    theta = model.theta_start() * 0.8 + 0.2
    f = model.factor(theta)
    H, N = gradient.deviance_hessian(model, f), gradient.deviance_hessian(model, f, approximate=True)
    Z = np.hstack([t.zt_sparse().toarray() * t.lam(theta[sl])[0, 0]
                   for t, sl in zip(model.terms, model._theta_slices)])
    q = Z.shape[1]
    C = np.hstack([Z, model.design.X]) if reml else Z
    Omega = C.T @ C + np.diag(np.r_[np.ones(q), np.zeros(C.shape[1] - q)])
    P = np.linalg.inv(Omega)[:q, :q]
    blocks = np.repeat(np.arange(len(model.terms)), [t.n_groups for t in model.terms])
    E = np.eye(len(model.terms))[blocks]                      # q × terms indicator
    F = E.T @ (P ** 2) @ E
    F_diag = np.diag(E.T @ np.diag(P) ** 2)
    lam = np.array([t.lam(theta[sl])[0, 0] for t, sl in zip(model.terms, model._theta_slices)])
    np.testing.assert_allclose(N - H, 4 * (F - F_diag) / np.outer(lam, lam), rtol=1e-6,
                               atol=1e-8 * np.abs(H).max())


def test_newton_minimizer_on_a_known_function():
    """Rosenbrock's function from (−1.2, 1) with its exact Hessian reaches (1, 1); a minimum
    beyond a lower bound (f = (x + 1)², x ≥ 0) is not reported as converged."""
    from multilevel.optimize import minimize_newton

    def fg(x):
        a, b = x
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2, np.array([-2 * (1 - a) - 400 * a * (b - a * a),
                                                                  200 * (b - a * a)])

    def hess(x):
        a, b = x
        return np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]])

    opt = minimize_newton(fg, hess, np.array([-1.2, 1.0]), np.full(2, -np.inf), max_iter=100)
    assert opt.converged and opt.fmin < 1e-20
    np.testing.assert_allclose(opt.final, [1.0, 1.0], atol=1e-10)
    bounded = minimize_newton(lambda x: ((x[0] + 1) ** 2, np.array([2 * (x[0] + 1)])),
                              lambda x: np.array([[2.0]]), np.array([1.0]), np.zeros(1))
    assert not bounded.converged and bounded.final[0] > 0


def test_without_the_schur_pattern():
    """When the pattern would be too large (model._schur None) the exact Hessian (from Ỹ) still
    serves Newton; only the cheaper matrix, which needs the pattern, is not there."""
    model = _model(*MODELS[0], reml=True)
    model._schur = None
    f = model.factor(model.theta_start())
    assert gradient.deviance_hessian(model, f, approximate=True) is None
    opt = optimize(model)
    assert opt.backend == "newton" and opt.converged
    assert opt.fmin <= _bobyqa(model).fmin + 1e-9 * abs(opt.fmin)
