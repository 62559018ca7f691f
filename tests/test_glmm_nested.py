"""Adaptive quadrature over nested levels against brute-force integrals written here.

The reference is each top-level group's nested integral computed by the
trapezoid rule on wide grids, independently of the quadrature code: scalar
effects (two levels: 1,201 × 1,201 points; three levels: 101³) and random
slopes (a product grid over b ~ N(0, Σ) at every level: a slope at the top
level, at the lower level, and at the middle of three levels).  The
level-by-level rules (mean–variance and mode–curvature) must converge to it
as the number of points grows; Laplace must not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

import multilevel as ml
from multilevel.design import build
from multilevel.glmm.families import make_family
from multilevel.glmm.model import GeneralizedLinearMixedModel
from multilevel.spec import SpecError, parse


def _phi(t):
    return np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)


@pytest.fixture(scope="module")
def two_level() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for a in range(4):
        va = rng.normal() * 0.8
        for b in range(3):
            wb = rng.normal() * 0.6
            for _ in range(4):
                x = rng.normal()
                rows.append((a, a * 10 + b, x, rng.poisson(np.exp(0.3 + 0.4 * x + va + wb))))
    return pd.DataFrame(rows, columns=["a", "b", "x", "y"]).astype(float)


BETA2, SD2 = np.array([0.4, 0.3]), {"a": 0.8, "b": 0.6}


def _brute_two_level(df) -> float:
    v = np.linspace(-9, 9, 1201)
    total = 0.0
    for _, da in df.groupby("a"):
        inner = np.zeros_like(v)
        for _, db in da.groupby("b"):
            eta = ((BETA2[1] + BETA2[0] * db.x.to_numpy())[:, None, None]
                   + SD2["a"] * v[None, :, None] + SD2["b"] * v[None, None, :])
            y = db.y.to_numpy()[:, None, None]
            ll = (y * eta - np.exp(eta) - special.gammaln(y + 1)).sum(0)
            inner += np.log(np.trapezoid(np.exp(ll) * _phi(v)[None, :], v, axis=1))
        total += np.log(np.trapezoid(np.exp(inner) * _phi(v), v))
    return total


def _loglik(cmd, df, family, method, points, beta, sds):
    design = build(parse(cmd), df)
    model = GeneralizedLinearMixedModel(design, make_family(*family), design.y, None, method, points)
    theta = np.array([sds[t.equations[0].label] for t in model.terms])
    return model.loglik(beta, np.zeros(0), theta)


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_two_level_poisson_converges_to_the_integral(two_level, method):
    exact = _brute_two_level(two_level)
    cmd, fam = "mepoisson y x || a: || b:", ("poisson", "log")
    assert _loglik(cmd, two_level, fam, method, 30, BETA2, SD2) == pytest.approx(exact, abs=1e-9)
    assert _loglik(cmd, two_level, fam, method, 15, BETA2, SD2) == pytest.approx(exact, abs=1e-6)
    seven = _loglik(cmd, two_level, fam, method, 7, BETA2, SD2)
    assert seven == pytest.approx(exact, abs=1e-4)
    lap = _loglik(cmd, two_level, fam, "laplace", 1, BETA2, SD2)
    assert abs(lap - exact) > 10 * abs(seven - exact)
    assert _loglik(cmd, two_level, fam, "ghermite", 40, BETA2, SD2) == pytest.approx(exact, abs=1e-6)


@pytest.fixture(scope="module")
def three_level() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    rows = []
    for a in range(2):
        va = rng.normal()
        for b in range(2):
            wb = rng.normal() * 0.7
            for c in range(2):
                xc = rng.normal() * 0.5
                for _ in range(4):
                    x = rng.normal()
                    rows.append((a, 10 * a + b, 100 * a + 10 * b + c, x,
                                 float(rng.random() < special.expit(-0.2 + 0.7 * x + va + wb + xc))))
    return pd.DataFrame(rows, columns=["a", "b", "c", "x", "y"])


BETA3, SD3 = np.array([0.7, -0.2]), {"a": 1.0, "b": 0.7, "c": 0.5}


def _brute_three_level(df) -> float:
    v = np.linspace(-8, 8, 101)
    pv = _phi(v)
    total = 0.0
    for _, da in df.groupby("a"):
        mid = np.zeros_like(v)                                      # over the a-grid
        for _, db in da.groupby("b"):
            low = np.zeros((len(v), len(v)))                        # over (a, b) grids
            for _, dc in db.groupby("c"):
                eta = ((BETA3[1] + BETA3[0] * dc.x.to_numpy())[:, None, None, None]
                       + SD3["a"] * v[None, :, None, None] + SD3["b"] * v[None, None, :, None]
                       + SD3["c"] * v[None, None, None, :])
                y = dc.y.to_numpy()[:, None, None, None]
                ll = (y * eta - np.logaddexp(0, eta)).sum(0)
                low += np.log(np.trapezoid(np.exp(ll) * pv, v, axis=2))
            mid += np.log(np.trapezoid(np.exp(low) * pv[None, :], v, axis=1))
        total += np.log(np.trapezoid(np.exp(mid) * pv, v))
    return total


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_three_level_logit_converges_to_the_integral(three_level, method):
    exact = _brute_three_level(three_level)
    cmd, fam = "melogit y x || a: || b: || c:", ("bernoulli", "logit")
    assert _loglik(cmd, three_level, fam, method, 20, BETA3, SD3) == pytest.approx(exact, abs=1e-8)
    seven = _loglik(cmd, three_level, fam, method, 7, BETA3, SD3)
    assert seven == pytest.approx(exact, abs=1e-5)
    lap = _loglik(cmd, three_level, fam, "laplace", 1, BETA3, SD3)
    assert abs(lap - exact) > abs(seven - exact)


# --- random slopes at nested levels ------------------------------------------------------------


def _brute_nested(df, beta, levels, loglik, points) -> float:
    """Σ log L_a by nested product trapezoid rules over b_l ~ N(0, Σ_l) (±8 SD per axis).

    ``levels``: [(grouping column, z columns, Σ)] top first; ``points`` per axis and level.
    At level l the linear predictor is carried over the grids of all levels above (Q points).
    """
    def integral(l, d, eta):                       # eta (n_d, Q) -> log integral over level l, (Q,)
        col, zc, S = levels[l]
        axes = [np.linspace(-8 * s, 8 * s, points[l]) for s in np.sqrt(np.diag(S))]
        b = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(zc))
        trap = [np.log(np.r_[0.5, np.ones(points[l] - 2), 0.5] * (a[1] - a[0])) for a in axes]
        logw = sum(np.meshgrid(*trap, indexing="ij")).ravel()
        logp = -0.5 * np.einsum("ka,ab,kb->k", b, np.linalg.inv(S), b) - 0.5 * np.linalg.slogdet(2 * np.pi * S)[1]
        e = (eta[:, :, None] + (d[zc].to_numpy() @ b.T)[:, None, :]).reshape(len(d), -1)
        if l + 1 == len(levels):
            inner = loglik(d["y"].to_numpy()[:, None], e).sum(0)
        else:
            inner = sum(integral(l + 1, dc, e[d.index.get_indexer(dc.index)])
                        for _, dc in d.groupby(levels[l + 1][0]))
        return special.logsumexp(inner.reshape(eta.shape[1], len(b)) + logw + logp, axis=1)

    return sum(integral(0, d, (beta[1] + beta[0] * d["x"].to_numpy())[:, None])[0]
               for _, d in df.groupby(levels[0][0]))


def _poisson(y, eta):
    return y * eta - np.exp(eta) - special.gammaln(y + 1)


def _bernoulli(y, eta):
    return y * eta - np.logaddexp(0, eta)


SIGMA_SLOPE = np.array([[0.3, -0.1], [-0.1, 0.5]])    # (x, _cons), Stata's order


def _theta(model, sigmas) -> np.ndarray:
    """θ (the lower Cholesky factor of each Σ, row by row) in the model's term order."""
    out = []
    for t in model.terms:
        lam = np.linalg.cholesky(np.atleast_2d(sigmas[t.equations[0].label]))
        out.extend(lam[np.tril_indices(len(lam))])
    return np.array(out)


def _slope_loglik(cmd, df, family, method, points, beta, sigmas):
    design = build(parse(cmd), df)
    model = GeneralizedLinearMixedModel(design, make_family(*family), design.y, None, method, points)
    return model.loglik(beta, np.zeros(0), _theta(model, sigmas))


SLOPE_CASES = {
    "slope at the top level": (
        "mepoisson y x || a: x, covariance(unstructured) || b:", ("poisson", "log"), _poisson,
        {"a": SIGMA_SLOPE, "b": 0.36}, [("a", ["x", "one"], SIGMA_SLOPE), ("b", ["one"], np.eye(1) * 0.36)],
        (61, 201)),
    "slope at the lower level": (
        "mepoisson y x || a: || b: x, covariance(unstructured)", ("poisson", "log"), _poisson,
        {"a": 0.64, "b": SIGMA_SLOPE}, [("a", ["one"], np.eye(1) * 0.64), ("b", ["x", "one"], SIGMA_SLOPE)],
        (201, 61)),
}


@pytest.mark.parametrize("case", list(SLOPE_CASES))
def test_two_level_slopes_converge_to_the_integral(two_level, case):
    cmd, fam, ll, sigmas, levels, grid = SLOPE_CASES[case]
    df = two_level.assign(one=1.0)
    exact = _brute_nested(df, BETA2, levels, ll, grid)
    lap = _slope_loglik(cmd, df, fam, "laplace", 1, BETA2, sigmas)
    for method in ("mvaghermite", "mcaghermite"):
        assert _slope_loglik(cmd, df, fam, method, 25, BETA2, sigmas) == pytest.approx(exact, abs=1e-9)
        seven = _slope_loglik(cmd, df, fam, method, 7, BETA2, sigmas)
        assert seven == pytest.approx(exact, abs=1e-3)
        assert abs(lap - exact) > 10 * abs(seven - exact)


def test_three_level_slope_in_the_middle_converges(three_level):
    """melogit y x || a: || b: x, cov(un) || c: — four dimensions over three levels."""
    df = three_level.assign(one=1.0)
    sigmas = {"a": 1.0, "b": SIGMA_SLOPE, "c": 0.25}
    levels = [("a", ["one"], np.eye(1)), ("b", ["x", "one"], SIGMA_SLOPE), ("c", ["one"], np.eye(1) * 0.25)]
    exact = _brute_nested(df, BETA3, levels, _bernoulli, (31, 31, 31))
    cmd, fam = "melogit y x || a: || b: x, covariance(unstructured) || c:", ("bernoulli", "logit")
    for method in ("mvaghermite", "mcaghermite"):
        assert _slope_loglik(cmd, df, fam, method, 12, BETA3, sigmas) == pytest.approx(exact, abs=1e-8)
        seven = _slope_loglik(cmd, df, fam, method, 7, BETA3, sigmas)
        assert seven == pytest.approx(exact, abs=1e-5)
    lap = _slope_loglik(cmd, df, fam, "laplace", 1, BETA3, sigmas)
    assert abs(lap - exact) > abs(seven - exact)


def test_nested_default_fit_is_adaptive_quadrature(two_level):
    res = ml.mepoisson("y x || a: || b:", two_level)
    assert res.intmethod == "mvaghermite" and res.intpoints == 7
    lap = ml.mepoisson("y x || a: || b:, intmethod(laplace)", two_level)
    assert res.loglik != pytest.approx(lap.loglik, abs=1e-4)
    assert np.all(np.isfinite(res.fixed.se))


def test_nested_slopes_and_mode_curvature_fit(two_level):
    res = ml.mepoisson("y x || a: x || b:", two_level)
    assert res.intmethod == "mvaghermite" and res.intpoints == 7
    mc = ml.mepoisson("y x || a: x || b:, intmethod(mcaghermite)", two_level)
    assert mc.intmethod == "mcaghermite"
    assert mc.loglik == pytest.approx(res.loglik, abs=1e-3)


def test_what_stays_laplace_only(two_level, three_level):
    df = two_level.assign(c=np.arange(len(two_level)) % 5)
    with pytest.raises(SpecError, match="crossed random effects"):
        ml.mepoisson("y x || _all: R.c || b:", df)
    with pytest.raises(SpecError, match="needs 40\\^3 = 64,000 node combinations"):
        ml.melogit("y x || a: || b: || c:, intpoints(40)", three_level)
    with pytest.raises(SpecError, match=r"2 \+ 2 random effects over 2 nested levels needs 15\^4 = 50,625"):
        ml.mepoisson("y x || a: x || b: x, intmethod(mcaghermite) intpoints(15)", two_level)
