"""Weights at more than two levels: the multilevel pseudo-likelihood (lmm/pseudolikelihood.py).

References: (a) integer frequency weights at levels 1, 2 and 3 give the unweighted fit on the
expanded data (replicated observations, classes, schools); (b) sampling weights: Stata's printed
3-level fit (quoted in WeMix's tests) and WeMix ``mix()`` fits of a simulated 3-level survey
(tests/references/weights/make.R); (c) the pseudo-likelihood at fixed parameters written out
densely per school (V_k = Z₃G₃Z₃ᵀ + ⊕_j V_j / w_j with V_j = Z₂G₂Z₂ᵀ + σ²W_j⁻¹ and the
constants of each raised density), independent of the level-by-level sweep.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import DataError

REF = Path(__file__).parent / "references" / "weights"


@pytest.fixture(scope="module")
def survey():
    return pd.read_csv(REF / "survey3.csv")


@pytest.fixture(scope="module")
def counted(survey):
    """survey3 with integer frequency weights at every level."""
    rng = np.random.default_rng(5)
    cls = survey.groupby("class").ngroup().to_numpy()
    return survey.assign(f1=rng.integers(1, 4, len(survey)),
                         f2=rng.integers(1, 3, cls.max() + 1)[cls],
                         f3=rng.integers(1, 4, survey.school.max() + 1)[survey.school])


def _expand(d: pd.DataFrame, f1: str | None, f2: str | None, f3: str | None) -> pd.DataFrame:
    """Replicate schools f3 times, each copy's classes f2 times and observations f1 times."""
    parts = []
    for s, ds in d.groupby("school"):
        for rs in range(int(ds[f3].iloc[0]) if f3 else 1):
            for c, dc in ds.groupby("class"):
                for rc in range(int(dc[f2].iloc[0]) if f2 else 1):
                    rows = dc.loc[dc.index.repeat(dc[f1])] if f1 else dc
                    parts.append(rows.assign(school=f"{s}_{rs}", **{"class": f"{c}_{rc}"}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("levels", [(1,), (2,), (3,), (2, 3), (1, 2, 3)])
def test_frequency_weights_equal_expanded_data(counted, levels):
    w = {k: f"f{k}" if k in levels else None for k in (1, 2, 3)}
    cmd = ("mixed y x{} || school: x, covariance(unstructured){} || class:{}"
           .format(f" [fw={w[1]}]" if w[1] else "", f" fweight({w[3]})" if w[3] else "",
                   f", fweight({w[2]})" if w[2] else ""))
    a = ml.fit(cmd, data=counted)
    b = ml.fit("mixed y x || school: x, covariance(unstructured) || class:", data=_expand(counted, w[1], w[2], w[3]))
    assert a.nobs == b.nobs
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7)
    np.testing.assert_allclose(a.fixed.coef, b.fixed.coef, rtol=1e-6)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=1e-4)
    for ea, eb in zip(a.equations, b.equations):
        np.testing.assert_allclose(ea.cov, eb.cov, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(ea.se, eb.se, rtol=2e-3)
    assert a.residual_var == pytest.approx(b.residual_var, rel=1e-6)
    assert a.residual_se == pytest.approx(b.residual_se, rel=1e-3)
    if levels == (1, 2, 3):  # each replicated class has the original class's BLUP
        index = {g: i for i, g in enumerate(b.equations[1].groups)}
        first = [index[(f"{s}_0", f"{c}_0")] for s, c in a.equations[1].groups]
        np.testing.assert_allclose(a.equations[1].blups, b.equations[1].blups[first], rtol=1e-4, atol=1e-8)


def _vc(res) -> list[float]:
    """Variances and covariances in WeMix's order: class, school (_cons, x, cov), residual."""
    school, klass = res.equations
    names = list(school.names)
    out = [klass.cov[0, 0], school.cov[names.index("_cons"), names.index("_cons")]]
    if "x" in names:
        i, j = names.index("x"), names.index("_cons")
        out += [school.cov[i, i], school.cov[i, j]]
    return out + [res.residual_var]


@pytest.mark.parametrize("case", ["wemix_survey3_ri", "wemix_survey3_slope"])
def test_sampling_weights_match_wemix(survey, case):
    ref = json.loads((REF / f"{case}.json").read_text())
    res = ml.fit(ref["stata"], data=survey)
    r = ref["results"]
    assert res.loglik == pytest.approx(r["loglik"], abs=1e-6)
    coef = dict(zip(res.fixed.names, res.fixed.coef))
    se = dict(zip(res.fixed.names, res.fixed.se))
    np.testing.assert_allclose([coef["_cons"], coef["x"]], r["fixed"]["coef"], rtol=1e-6)
    np.testing.assert_allclose([se["_cons"], se["x"]], r["fixed"]["robust_se"], rtol=1e-5)
    np.testing.assert_allclose(_vc(res), r["vc"]["estimate"], rtol=1e-4, atol=1e-6)
    assert res.vce == "Robust" and res.clusters == (25, "school")
    assert res.nobs == len(survey)  # Stata's e(N) counts the rows with sampling weights
    assert "Log pseudolikelihood" in str(res)


def _sleepstudy3() -> pd.DataFrame:
    sleepstudy = pd.read_csv(Path(__file__).parent / "data" / "sleepstudy.csv")
    group = {**dict.fromkeys((309, 310, 335, 349), 2), **dict.fromkeys((330, 337, 352, 369), 3),
             **dict.fromkeys((331, 332, 334, 372), 4)}
    d = sleepstudy.assign(Group=sleepstudy.Subject.map(group).fillna(1).astype(int))
    return d.assign(w1=np.where(np.arange(len(d)) < 4, 2.0, 1.0),
                    w2=np.where(d.Subject == 308, 2.0, 1.0),
                    w3=np.where(d.Group == 1, 2.0, 1.0))


def test_sampling_weights_match_stata_three_levels():
    """Stata's printed fit; its robust SEs of β need Stata's block-diagonal model-based variance."""
    ref = json.loads((REF / "stata_sleepstudy3_pw.json").read_text())
    res = ml.fit(ref["stata"], data=_sleepstudy3())
    r = ref["results"]
    assert res.loglik == pytest.approx(r["loglik"], abs=1e-4)
    order = [res.fixed.names.index("_cons"), res.fixed.names.index("Days")]
    np.testing.assert_allclose(res.fixed.coef[order], r["fixed"]["coef"], rtol=1e-6)
    np.testing.assert_allclose(res.fixed.se[order], r["fixed"]["robust_se"], rtol=5e-6)
    group, subject = res.equations
    # var(Group) from 4 clusters is flat: Stata stopped 5e-5 short of the optimum WeMix and we find
    np.testing.assert_allclose([subject.cov[0, 0], group.cov[0, 0], res.residual_var],
                               r["vc"]["estimate"], rtol=1e-4)
    np.testing.assert_allclose([subject.cov[0, 0], group.cov[0, 0], res.residual_var], ref["wemix"]["vc"],
                               rtol=1e-5)


def _dense_pseudo_loglik(d: pd.DataFrame, beta, slope_cov, s2_class, s2) -> float:
    """Σ_k w_k log f_k written out per school: the classes' densities raised to w_j are
    N(y_j; ·, V_j / w_j) · (2π)^{n_j(1−w_j)/2} |V_j|^{(1−w_j)/2} w_j^{−n_j/2}, their product a
    Gaussian in the school effect, which integrates to N(y_k; Xβ, Z G Zᵀ + ⊕_j V_j / w_j)."""
    total = 0.0
    for _, dk in d.groupby("school"):
        Z = np.column_stack([dk.x, np.ones(len(dk))])
        e = dk.y.to_numpy() - Z @ beta
        blocks, const = [], 0.0
        for _, dj in dk.groupby("class"):
            w1, wj, n = dj.w1.to_numpy(), dj.w2.iloc[0], len(dj)
            Vj = s2_class + np.diag(s2 / w1)           # conditional on the school effect
            const += wj * (np.sum(1 - w1) / 2 * np.log(2 * np.pi * s2) - 0.5 * np.log(w1).sum())
            const += (n * (1 - wj) / 2 * np.log(2 * np.pi) + (1 - wj) / 2 * np.linalg.slogdet(Vj)[1]
                      - n / 2 * np.log(wj))
            blocks.append(Vj / wj)
        V = Z @ slope_cov @ Z.T
        off = 0
        for B in blocks:
            V[off:off + len(B), off:off + len(B)] += B
            off += len(B)
        ll = -0.5 * (np.linalg.slogdet(V)[1] + e @ np.linalg.solve(V, e) + len(dk) * np.log(2 * np.pi))
        total += dk.w3.iloc[0] * (ll + const)
    return total


def test_pseudo_loglik_equals_dense_formula(survey):
    """At the optimum and away from it, the sweep's log pseudo-likelihood is the dense one."""
    from multilevel.lmm.pseudolikelihood import make_model

    res = ml.fit("mixed y x [pw=w1] || school: x, covariance(unstructured) pweight(w3) || class:, pweight(w2)",
                 data=survey)
    school, klass = res.equations
    dense = _dense_pseudo_loglik(survey.sort_values(["school", "class"]), res.fixed.coef, school.cov,
                                 klass.cov[0, 0], res.residual_var)
    assert res.loglik == pytest.approx(dense, abs=1e-8)
    model = make_model(res.design)
    theta = res.theta * 1.3
    f = model.factor(theta)
    s2 = 0.7
    beta, _ = model.solve(f)
    lams = model.lambdas(theta)
    covs = {t.equations[0].label: s2 * lam @ lam.T for t, lam in zip(model.terms, lams)}
    dense = _dense_pseudo_loglik(survey.sort_values(["school", "class"]), beta, covs["school"],
                                 covs["class"][0, 0], s2)
    assert model.loglik_at(f, s2) == pytest.approx(dense, abs=1e-8)


@pytest.mark.parametrize("cluster", ["school", "region"])
def test_robust_variance_components_from_dense_scores(survey, cluster):
    """The sandwich of the variance parameters from finite differences of the dense per-school
    pseudo-likelihood (scores, summed over the schools of a cluster) and of its total (Hessian),
    with Stata's block-diagonal bread; clusters are the schools or regions of 5 schools."""
    survey = survey.assign(region=survey.school % 5)
    res = ml.fit(f"mixed y x [pw=w1] || school:, pweight(w3) || class:, pweight(w2) vce(cluster {cluster})",
                 data=survey)
    d = survey.sort_values(["school", "class"])
    psi = np.array([res.fixed.coef[1], res.fixed.coef[0], res.equations[0].cov[0, 0],
                    res.equations[1].cov[0, 0], res.residual_var])

    def school_ll(p, dk):
        G = np.array([[0.0, 0.0], [0.0, p[2]]])
        return _dense_pseudo_loglik(dk, p[1::-1], G, p[3], p[4]) / dk.w3.iloc[0]

    schools = [dk for _, dk in d.groupby("school")]
    w = np.array([dk.w3.iloc[0] for dk in schools])
    h = 1e-5 * np.maximum(np.abs(psi), 1.0)
    E = np.diag(h)
    S = np.array([[(school_ll(psi + E[a], dk) - school_ll(psi - E[a], dk)) / (2 * h[a]) for a in range(5)]
                  for dk in schools])

    def grad(p):
        return np.array([sum(wk * (school_ll(p + E[a], dk) - school_ll(p - E[a], dk)) / (2 * h[a])
                             for wk, dk in zip(w, schools)) for a in range(5)])
    H = np.column_stack([(grad(psi + 100 * E[a]) - grad(psi - 100 * E[a])) / (200 * h[a]) for a in range(5)])
    H = (H + H.T) / 2
    D = np.zeros((5, 5))
    D[:2, :2] = np.linalg.inv(-H[:2, :2])
    D[2:, 2:] = -np.linalg.inv(H)[2:, 2:]
    labels = np.array([dk[cluster].iloc[0] for dk in schools])
    Sc = np.array([(S * w[:, None])[labels == c].sum(axis=0) for c in np.unique(labels)])
    G = len(Sc)
    B = Sc.T @ Sc * G / (G - 1)
    se = np.sqrt(np.diag(D @ B @ D))
    np.testing.assert_allclose(res.fixed.se[::-1], se[:2], rtol=1e-4)
    np.testing.assert_allclose([res.equations[0].se[0, 0], res.equations[1].se[0, 0], res.residual_se], se[2:],
                               rtol=2e-3)


def test_frequency_weights_give_oim_standard_errors(counted):
    res = ml.fit("mixed y x [fw=f1] || school:, fweight(f3) || class:, fweight(f2)", data=counted)
    assert res.vce != "Robust" and "Log likelihood" in str(res)


def test_postestimation_after_three_level_weights(survey):
    res = ml.fit("mixed y x [pw=w1] || school:, pweight(w3) || class:, pweight(w2)", data=survey)
    assert res.predict("reffects").shape == (len(survey), 2)
    sc = res.predict("scores")
    assert sc.shape == (25, 5)
    np.testing.assert_allclose(sc.sum().to_numpy(), 0, atol=1e-3)  # weighted scores sum to 0 at the optimum
    with pytest.raises(DataError, match="BLUPs"):
        res.predict("reses")


def test_weights_refused_with_residual_structures(survey):
    with pytest.raises(DataError, match="residuals"):
        ml.fit("mixed y x [pw=w1] || school: || class:, residuals(exchangeable)", data=survey)
    with pytest.raises(DataError, match="residuals"):
        ml.fit("mixed y x || school:, pweight(w3) || class:, residuals(exchangeable)", data=survey)


def test_bad_multilevel_weights(survey):
    with pytest.raises(DataError, match="two-level"):
        ml.fit("mixed y x [pw=w1] || school:, pweight(w3) || class:, pweight(w2) pwscale(size)", data=survey)
    with pytest.raises(DataError, match="constant within"):
        ml.fit("mixed y x || school:, pweight(w2) || class:", data=survey)
    with pytest.raises(DataError, match="reml"):
        ml.fit("mixed y x || school:, pweight(w3) || class:, reml", data=survey)
    with pytest.raises(DataError, match="nested"):  # classes cross the two halves of x
        ml.fit("mixed y x || _all: R.half || class:, pweight(w2)", data=survey.assign(half=survey.x > 0))
