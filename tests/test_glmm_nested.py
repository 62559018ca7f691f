"""Adaptive quadrature over nested levels against brute-force integrals written here.

The reference is each top-level group's nested integral computed by the
trapezoid rule on wide grids (two levels: 1,201 × 1,201 points; three levels:
101³), independently of the quadrature code.  The level-by-level mean–variance
rule must converge to it as the number of points grows; Laplace must not.
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


def test_two_level_poisson_converges_to_the_integral(two_level):
    exact = _brute_two_level(two_level)
    cmd, fam = "mepoisson y x || a: || b:", ("poisson", "log")
    assert _loglik(cmd, two_level, fam, "mvaghermite", 30, BETA2, SD2) == pytest.approx(exact, abs=1e-9)
    assert _loglik(cmd, two_level, fam, "mvaghermite", 15, BETA2, SD2) == pytest.approx(exact, abs=1e-6)
    seven = _loglik(cmd, two_level, fam, "mvaghermite", 7, BETA2, SD2)
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


def test_three_level_logit_converges_to_the_integral(three_level):
    exact = _brute_three_level(three_level)
    cmd, fam = "melogit y x || a: || b: || c:", ("bernoulli", "logit")
    assert _loglik(cmd, three_level, fam, "mvaghermite", 20, BETA3, SD3) == pytest.approx(exact, abs=1e-8)
    seven = _loglik(cmd, three_level, fam, "mvaghermite", 7, BETA3, SD3)
    assert seven == pytest.approx(exact, abs=1e-5)
    lap = _loglik(cmd, three_level, fam, "laplace", 1, BETA3, SD3)
    assert abs(lap - exact) > abs(seven - exact)


def test_nested_default_fit_is_adaptive_quadrature(two_level):
    res = ml.mepoisson("y x || a: || b:", two_level)
    assert res.intmethod == "mvaghermite" and res.intpoints == 7
    lap = ml.mepoisson("y x || a: || b:, intmethod(laplace)", two_level)
    assert res.loglik != pytest.approx(lap.loglik, abs=1e-4)
    assert np.all(np.isfinite(res.fixed.se))


def test_what_stays_laplace_only(two_level, three_level):
    df = two_level.assign(c=np.arange(len(two_level)) % 5)
    with pytest.raises(SpecError, match="crossed random effects"):
        ml.mepoisson("y x || _all: R.c || b:", df)
    with pytest.raises(SpecError, match="mcaghermite"):
        ml.mepoisson("y x || a: || b:, intmethod(mcaghermite)", two_level)
    with pytest.raises(SpecError, match="random slopes at more than one nested level"):
        ml.mepoisson("y x || a: x || b:", two_level)
    with pytest.raises(SpecError, match="node combinations"):
        ml.melogit("y x || a: || b: || c:, intpoints(40)", three_level)
