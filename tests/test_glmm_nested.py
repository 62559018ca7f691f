"""Adaptive quadrature over nested levels against brute-force integrals written here.

The reference is each top-level group's nested integral computed by the
trapezoid rule on wide grids, independently of the quadrature code: scalar
effects (two levels: 401 × 401 points; three levels: 101³) and random
slopes (a product grid over b ~ N(0, Σ) at every level: a slope at the top
level, at the lower level, and at the middle of three levels).  The
level-by-level rules (mean–variance and mode–curvature) must converge to it
as the number of points grows; Laplace must not.
"""
from __future__ import annotations

import json
from pathlib import Path

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
    v = np.linspace(-9, 9, 401)
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


@pytest.fixture(scope="module")
def exact_two_level(two_level) -> float:
    return _brute_two_level(two_level)


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_two_level_poisson_converges_to_the_integral(two_level, exact_two_level, method):
    exact = exact_two_level
    cmd, fam = "mepoisson y x || a: || b:", ("poisson", "log")
    assert _loglik(cmd, two_level, fam, method, 30, BETA2, SD2) == pytest.approx(exact, abs=1e-9)
    assert _loglik(cmd, two_level, fam, method, 15, BETA2, SD2) == pytest.approx(exact, abs=1e-6)
    seven = _loglik(cmd, two_level, fam, method, 7, BETA2, SD2)
    assert seven == pytest.approx(exact, abs=1e-4)
    lap = _loglik(cmd, two_level, fam, "laplace", 1, BETA2, SD2)
    assert abs(lap - exact) > 10 * abs(seven - exact)


def test_two_level_prior_rule(two_level, exact_two_level):
    cmd, fam = "mepoisson y x || a: || b:", ("poisson", "log")
    assert _loglik(cmd, two_level, fam, "ghermite", 40, BETA2, SD2) == pytest.approx(exact_two_level, abs=1e-6)


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


@pytest.fixture(scope="module")
def exact_three_level(three_level) -> float:
    return _brute_three_level(three_level)


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_three_level_logit_converges_to_the_integral(three_level, exact_three_level, method):
    exact = exact_three_level
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


def test_node_paths_in_blocks_give_the_same_value(two_level, monkeypatch):
    """Large problems are evaluated in blocks of node paths; the value must not change."""
    from multilevel.glmm import nested

    cmd, fam, _, sigmas, _, _ = SLOPE_CASES["slope at the top level"]
    whole = _slope_loglik(cmd, two_level, fam, "mvaghermite", 7, BETA2, sigmas)
    monkeypatch.setattr(nested, "MAX_PATHS", 5 * len(two_level))          # blocks of 5 of 343 paths
    assert _slope_loglik(cmd, two_level, fam, "mvaghermite", 7, BETA2, sigmas) == pytest.approx(whole, abs=1e-12)


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


# --- a full fit: lme4's Laplace fit and the maximum of the brute-force integral (R) ------------

REF = Path(__file__).parent / "references" / "glmm_nested" / "glmm_nested_logit_slope_top.json"
SLOPE_TOP = "melogit y x || school: x, covariance(unstructured) || class:"


@pytest.fixture(scope="module")
def slope_ref():
    case = json.loads(REF.read_text())
    return case, pd.read_csv(Path(__file__).parent.parent / case["dataset_path"])


def _check_fit(res, ref, coef_rel, var_rel, loglik_abs):
    assert res.loglik == pytest.approx(ref["loglik"], abs=loglik_abs)
    assert list(res.fixed.names) == ref["coef"]["names"]
    np.testing.assert_allclose(res.fixed.coef, ref["coef"]["value"], rtol=coef_rel)
    school, klass = res.to_dict()["random"]
    np.testing.assert_allclose(school["cov"], ref["school_cov"], rtol=var_rel)
    assert klass["cov"][0][0] == pytest.approx(ref["class_var"], rel=var_rel)


def test_nested_slope_laplace_fit_matches_lme4(slope_ref):
    case, df = slope_ref
    res = ml.melogit(SLOPE_TOP + ", intmethod(laplace)", df)
    _check_fit(res, case["laplace"], coef_rel=1e-4, var_rel=5e-4, loglik_abs=1e-5)
    np.testing.assert_allclose(res.fixed.se, case["laplace"]["se"]["value"], rtol=1e-2)


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_nested_slope_rules_converge_at_the_exact_maximum(slope_ref, method):
    """At the reference's parameters the adaptive rules approach its integral as points grow."""
    case, df = slope_ref
    ref = case["exact"]
    beta = np.array(ref["coef"]["value"])
    sigmas = {"school": np.array(ref["school_cov"]), "class": ref["class_var"]}
    exact = ref["loglik"] - case["checks"]["Q40_minus_Q50_at_optimum"]    # the 50-point rule's value
    errors = [abs(_slope_loglik(SLOPE_TOP, df, ("bernoulli", "logit"), method, p, beta, sigmas) - exact)
              for p in (5, 9, 15)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-7


@pytest.mark.parametrize("method", ["mvaghermite", "mcaghermite"])
def test_nested_slope_fit_is_near_the_exact_maximum(slope_ref, method):
    case, df = slope_ref
    res = ml.melogit(SLOPE_TOP + f", intmethod({method})", df)
    assert res.intmethod == method and res.intpoints == 7
    _check_fit(res, case["exact"], coef_rel=1e-4, var_rel=5e-4, loglik_abs=1e-3)


def test_what_stays_laplace_only(two_level, three_level):
    df = two_level.assign(c=np.arange(len(two_level)) % 5)
    with pytest.raises(SpecError, match="crossed random effects"):
        ml.mepoisson("y x || _all: R.c || b:", df)
    with pytest.raises(SpecError, match="needs 40\\^3 = 64,000 node combinations"):
        ml.melogit("y x || a: || b: || c:, intpoints(40)", three_level)
    with pytest.raises(SpecError, match=r"2 \+ 2 random effects over 2 nested levels needs 15\^4 = 50,625"):
        ml.mepoisson("y x || a: x || b: x, intmethod(mcaghermite) intpoints(15)", two_level)
