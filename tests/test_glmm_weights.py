"""Weights in the GLMM commands: ``[fw=]``, ``[iw=]``, ``[pw=]`` and the group level's ``fweight()``,
``iweight()``, ``pweight()``; ``vce(robust | cluster v)``.

The weighted likelihood multiplies each observation's conditional log density inside the
integral (Rabe-Hesketh & Skrondal 2006, JRSS A 169): integer frequency weights must give the
fit of the data set with every row replicated (no R needed), and importance weights the
maximum of the weighted likelihood written directly in R (tests/references/glmm_weights,
60-point Gauss-Hermite, numDeriv Hessian), sampling weights and vce() its sandwich.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.spec import SpecError
from multilevel.spec.errors import DataError

REF = Path(__file__).parent / "references" / "glmm_weights"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sim() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clustered binary and count data with integer weights 1-3, and the replicated data."""
    rng = np.random.default_rng(11)
    G, n = 30, 8
    d = pd.DataFrame({"id": np.repeat(np.arange(G), n), "x": rng.normal(size=G * n).round(3)})
    u = rng.normal(size=G) * 0.8
    d["y"] = (rng.random(G * n) < 1 / (1 + np.exp(-(-0.3 + 0.7 * d.x + u[d.id])))).astype(float)
    d["c"] = rng.poisson(np.exp(0.2 + 0.3 * d.x + 0.5 * u[d.id]))
    d["w"] = rng.integers(1, 4, size=G * n)
    return d, d.loc[d.index.repeat(d.w)].reset_index(drop=True)


@pytest.mark.parametrize("cmd, tol", [
    ("melogit y x [fw=w] || id:", 1e-6),                          # one factor, adaptive quadrature
    ("melogit y x [fw=w] || id:, intmethod(laplace)", 1e-6),
    ("mepoisson c x [fw=w] || id: x", 1e-6),                      # random slope
    ("meologit c x [fw=w] || id:, intmethod(mcaghermite)", 1e-6),
    # derivative-free path: the two fits stop within the optimizer's tolerance of each other
    ("meglm c x [fw=w] || id:, family(nbinomial)", 1e-3),
])
def test_fweights_equal_replicated_rows(sim, cmd, tol):
    data, expanded = sim
    a = ml.fit(cmd, data=data)
    b = ml.fit(cmd.replace(" [fw=w]", ""), data=expanded)
    assert a.nobs == b.nobs == int(data.w.sum())
    assert a.loglik == pytest.approx(b.loglik, abs=tol)
    assert a.ll_fixed_only == pytest.approx(b.ll_fixed_only, abs=1e-6)
    np.testing.assert_allclose(a.fixed.coef, b.fixed.coef, rtol=10 * tol, atol=tol)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=100 * tol)
    for ea, eb in zip(a.equations, b.equations):
        np.testing.assert_allclose(ea.cov, eb.cov, rtol=100 * tol)


def test_fweights_nested_levels(sim):
    data, expanded = sim
    data = data.assign(sub=data.index // 4 % 2)
    expanded = data.loc[data.index.repeat(data.w)].reset_index(drop=True)
    a = ml.fit("mepoisson c x [fw=w] || id: || sub:", data=data)
    b = ml.fit("mepoisson c x || id: || sub:", data=expanded)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
    np.testing.assert_allclose(a.fixed.coef, b.fixed.coef, rtol=1e-5)


@pytest.mark.parametrize("options", ["", " intmethod(mcaghermite) intpoints(9)"])
def test_group_fweights_equal_replicated_groups(sim, options):
    """fweight() of the groups: each group counted w_j times, as copies with their own ids."""
    data = sim[0].assign(wg=sim[0].id % 3 + 1)
    copies = pd.concat([data[data.wg > k].assign(id=lambda d, k=k: d.id + 1000 * k) for k in range(3)],
                       ignore_index=True)
    a = ml.fit("mepoisson c x || id:, fweight(wg)" + options, data=data)
    b = ml.fit("mepoisson c x || id:" + ("," + options if options else ""), data=copies)
    assert a.nobs == b.nobs == len(copies)
    assert a.ll_fixed_only == pytest.approx(b.ll_fixed_only, abs=1e-6)    # the LR test's baseline
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
    np.testing.assert_allclose(a.fixed.coef, b.fixed.coef, rtol=1e-5)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=1e-4)
    np.testing.assert_allclose(a.equations[0].cov, b.equations[0].cov, rtol=1e-4)


def _bangladesh() -> pd.DataFrame:
    d = pd.read_csv(DATA / "bangladesh.csv")
    return d.assign(w=0.5 + 0.25 * (np.arange(len(d)) % 4))


@pytest.mark.parametrize("case", ["melogit_iw", "melogit_pw1", "melogit_pw2", "melogit_vce_cluster"])
def test_against_direct_ml_in_r(case):
    """[iw=]: model-based SEs; [pw=] (and with pweight() of the districts): the sandwich
    clustered at district (vce(robust) implied); vce(cluster dgroup) without weights: the
    districts' scores summed in 13 clusters."""
    ref = json.loads((REF / f"{case}.json").read_text())
    data = _bangladesh().assign(dgroup=lambda d: (d.district - 1) // 5, wd=lambda d: 1 + (d.district % 3) / 2)
    res = ml.fit(ref["stata"], data=data)
    r, tol = ref["results"], ref["tolerance"]
    assert res.loglik == pytest.approx(r["loglik"], abs=tol["loglik_abs"])
    fx = res.fixed_effects.loc[r["fixed"]["names"]]
    np.testing.assert_allclose(fx.iloc[:, 0], r["fixed"]["estimate"], rtol=tol["coef_rel"])
    np.testing.assert_allclose(fx.iloc[:, 1], r["fixed"]["se"], rtol=tol["se_rel"])
    eq = res.equations[0]
    assert eq.cov[0, 0] == pytest.approx(r["random"][0]["estimate"], rel=tol["var_rel"])
    assert eq.se[0, 0] == pytest.approx(r["random"][0]["se"], rel=tol["se_rel"])
    assert res.nobs == 1934           # importance and sampling weights do not change the count
    text = str(res)
    if case == "melogit_iw":
        assert not res.vce and "LR test" in text
    else:
        n = 13 if case == "melogit_vce_cluster" else 60
        assert res.clusters[0] == n and "Log pseudolikelihood" in text and "LR test" not in text
        assert f"(Std. err. adjusted for {n} clusters in" in text
        html = res._repr_html_()
        assert "Robust std. err." in html and "Log pseudolikelihood" in html and "LR test" not in html


def test_vce_robust_keyword_equals_unit_pweights():
    data = _bangladesh().assign(one=1.0)
    a = ml.melogit("c_use urban age || district:", data, vce="robust")
    b = ml.fit("melogit c_use urban age [pw=one] || district:", data=data)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=1e-8)
    assert a.vce == "Robust" and a.clusters == (60, "district")


@pytest.mark.parametrize("cmd, message", [
    ("melogit y x [fw=w] || _all: R.id", "crossed"),
    ("melogit y x || id:, fweight(wg) intmethod(laplace)", "laplace"),
    ("melogit y x || id:, pweight(wg) || sub:", "several levels"),
    ("melogit y x || id:, fweight(wg) vce(robust)", "not available yet"),
    ("melogit y x [aw=w] || id:", "not supported"),
    ("melogit y x [pw=w] || id:, vce(oim)", "require vce"),
    ("melogit y x [pw=w] || id:, intmethod(laplace)", "laplace"),
    ("melogit y x || id:, vce(cluster nosuch)", "not found"),
    ("melogit y x || id:, vce(bootstrap)", "use oim, robust"),
])
def test_refused(sim, cmd, message):
    data = sim[0].assign(wg=sim[0].id % 3 + 1, sub=sim[0].index // 4 % 2)
    with pytest.raises((SpecError, DataError), match=message):
        ml.fit(cmd, data=data)
