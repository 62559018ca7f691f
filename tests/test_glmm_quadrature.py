"""Integration of the random effects against brute-force integrals written here.

* a random-intercept logit: each group's integral by a 20,001-point trapezoid rule
  on a wide grid, against adaptive Gauss–Hermite with many points;
* a random-slope logit (two correlated random effects per group): a 401 × 401
  trapezoid grid over b ~ N(0, Σ), against the 2-D adaptive product rules
  (mean–variance and mode–curvature);
* the blocked penalized factor for nested and crossed designs against dense algebra.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

from multilevel.design import build
from multilevel.glmm.families import make_family
from multilevel.glmm.model import GeneralizedLinearMixedModel
from multilevel.glmm.pirls import PenalizedSystem
from multilevel.lmm.terms import make_terms
from multilevel.spec import parse


def _model(cmd: str, df: pd.DataFrame, method: str, points: int) -> GeneralizedLinearMixedModel:
    design = build(parse(cmd), df)
    return GeneralizedLinearMixedModel(design, make_family("bernoulli", "logit"), design.y, None, method, points)


@pytest.fixture(scope="module")
def intercept_data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(8), 6)
    x = rng.normal(size=len(g))
    b = rng.normal(0, 1.2, 8)
    y = (rng.random(len(g)) < special.expit(-0.3 + 0.8 * x + b[g])).astype(float)
    return pd.DataFrame({"g": g, "x": x, "y": y})


def _brute_intercept(df, beta, sd) -> float:
    grid = np.linspace(-12 * sd, 12 * sd, 20001)
    total = 0.0
    for _, d in df.groupby("g"):
        eta = beta[1] + beta[0] * d["x"].to_numpy()[:, None] + grid[None, :]
        ll = (d["y"].to_numpy()[:, None] * eta - np.logaddexp(0, eta)).sum(0)
        dens = np.exp(ll - 0.5 * (grid / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        total += np.log(np.trapezoid(dens, grid))
    return total


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_random_intercept_aghq_converges_to_the_integral(intercept_data, method):
    beta, sd = np.array([0.7, -0.2]), 1.3
    exact = _brute_intercept(intercept_data, beta, sd)
    m30 = _model("melogit y x || g:", intercept_data, method, 30)
    assert m30.loglik(beta, (), np.array([sd])) == pytest.approx(exact, abs=1e-9)
    m7 = _model("melogit y x || g:", intercept_data, method, 7)
    assert m7.loglik(beta, (), np.array([sd])) == pytest.approx(exact, abs=2e-3)


def test_laplace_and_non_adaptive_rules(intercept_data):
    beta, sd = np.array([0.7, -0.2]), 1.3
    exact = _brute_intercept(intercept_data, beta, sd)
    lap = _model("melogit y x || g:", intercept_data, "laplace", 1).loglik(beta, (), np.array([sd]))
    assert 1e-4 < abs(lap - exact) < 0.2          # an approximation, not the integral
    gh = _model("melogit y x || g:", intercept_data, "ghermite", 60).loglik(beta, (), np.array([sd]))
    assert gh == pytest.approx(exact, abs=1e-6)


@pytest.fixture(scope="module")
def slope_data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    G, n = 6, 9
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    U = rng.multivariate_normal([0, 0], [[0.5, 0.2], [0.2, 1.0]], G)   # (slope, intercept)
    eta = -0.2 + 0.9 * x + U[g, 0] * x + U[g, 1]
    y = (rng.random(G * n) < special.expit(eta)).astype(float)
    return pd.DataFrame({"g": g, "x": x, "y": y})


SIGMA = np.array([[0.6, 0.25], [0.25, 1.1]])   # Stata order: (x, _cons)
BETA = np.array([0.8, -0.3])                    # (x, _cons)


def _brute_slope(df) -> float:
    sd = np.sqrt(np.diag(SIGMA))
    a = np.linspace(-8 * sd[0], 8 * sd[0], 401)
    c = np.linspace(-8 * sd[1], 8 * sd[1], 401)
    A, C = np.meshgrid(a, c, indexing="ij")
    P = np.linalg.inv(SIGMA)
    logprior = (-0.5 * (P[0, 0] * A ** 2 + 2 * P[0, 1] * A * C + P[1, 1] * C ** 2)
                - np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(SIGMA)))
    total = 0.0
    for _, d in df.groupby("g"):
        ll = np.zeros_like(A)
        for xi, yi in zip(d["x"], d["y"]):
            eta = BETA[1] + BETA[0] * xi + A * xi + C
            ll += yi * eta - np.logaddexp(0, eta)
        total += np.log(np.trapezoid(np.trapezoid(np.exp(ll + logprior), c, axis=1), a))
    return total


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_random_slope_two_dimensional_aghq(slope_data, method):
    """Vector-valued random effects: the 2-D product rule (#² nodes per group)."""
    exact = _brute_slope(slope_data)
    lam = np.linalg.cholesky(SIGMA)
    theta = np.array([lam[0, 0], lam[1, 0], lam[1, 1]])
    cmd = "melogit y x || g: x, covariance(unstructured)"
    m20 = _model(cmd, slope_data, method, 20)
    assert m20.loglik(BETA, (), theta) == pytest.approx(exact, abs=1e-7)
    m7 = _model(cmd, slope_data, method, 7)
    assert m7.loglik(BETA, (), theta) == pytest.approx(exact, abs=5e-3)
    lap = _model(cmd, slope_data, "laplace", 1).loglik(BETA, (), theta)
    assert abs(lap - exact) > abs(m7.loglik(BETA, (), theta) - exact)


@pytest.mark.parametrize("cmd", ["melogit y || a: || b:", "y ~ 1 + (1|a) + (1|c)",
                                 "melogit y x || a: x, cov(un) || b:"])
def test_blocked_penalized_factor_matches_dense_algebra(cmd):
    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"a": rng.integers(0, 6, n), "c": rng.integers(0, 9, n), "x": rng.normal(size=n),
                       "y": rng.integers(0, 2, n).astype(float)})
    df["b"] = df["a"] * 10 + rng.integers(0, 4, n)       # nested in a
    design = build(parse(cmd), df)
    terms = make_terms(design.equations)
    system = PenalizedSystem(terms, n)
    lams = [np.tril(rng.normal(size=(t.k, t.k))) + 2 * np.eye(t.k) for t in terms]
    w = rng.random(n) + 0.1
    Z = np.hstack([t.zt_sparse().toarray() for t in terms])
    Lam = np.zeros((system.q, system.q))
    for t, lam, a, b in zip(terms, lams, system.offsets[:-1], system.offsets[1:]):
        Lam[a:b, a:b] = np.kron(np.eye(t.n_groups), lam)
    ZL = Z @ Lam
    H = ZL.T @ (ZL * w[:, None]) + np.eye(system.q)
    F = system.factor(w, lams)
    assert F.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    r = rng.normal(size=system.q)
    assert np.allclose(F.solve(r), np.linalg.solve(H, r), rtol=1e-9, atol=1e-12)
    u = rng.normal(size=system.q)
    assert np.allclose(system.zlam(u, lams), ZL @ u)
    assert np.allclose(system.zlam_t(w, lams), ZL.T @ w)
