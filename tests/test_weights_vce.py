"""Frequency weights and robust (sandwich) standard errors.

References: frequency weights must give the fit on the expanded data; the robust
variance is checked against a direct computation written here from the definition
(per-cluster scores and the Hessian by finite differences of dense per-cluster
log likelihoods, with Stata's block-diagonal model-based variance as the bread),
independent of the analytic formulas in multilevel.inference.robust.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import DataError, SpecError


@pytest.fixture(scope="module")
def weighted_pig(pig):
    rng = np.random.default_rng(1)
    return pig.assign(w=rng.integers(1, 4, len(pig)))


def test_frequency_weights_equal_expanded_data(weighted_pig):
    a = ml.fit("mixed weight week [fw=w] || id: week", data=weighted_pig)
    expanded = weighted_pig.loc[weighted_pig.index.repeat(weighted_pig.w)].reset_index(drop=True)
    b = ml.fit("mixed weight week || id: week", data=expanded)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7)
    assert a.nobs == b.nobs == int(weighted_pig.w.sum())
    np.testing.assert_allclose(a.fixed.coef, b.fixed.coef, rtol=1e-7)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=1e-5)
    np.testing.assert_allclose(a.equations[0].cov, b.equations[0].cov, rtol=1e-5)
    assert a.residual_se == pytest.approx(b.residual_se, rel=1e-4)


def test_bad_weights(weighted_pig):
    with pytest.raises(DataError, match="negative"):
        ml.fit("mixed weight week [fw=w] || id:", data=weighted_pig.assign(w=-weighted_pig.w))
    with pytest.raises(DataError, match="integers"):
        ml.fit("mixed weight week [fw=w] || id:", data=weighted_pig.assign(w=weighted_pig.w + 0.5))
    with pytest.raises(DataError, match="reml"):
        ml.fit("mixed weight week [fw=w] || id:, reml", data=weighted_pig)
    with pytest.raises(DataError, match="not found"):
        ml.fit("mixed weight week [fw=nope] || id:", data=weighted_pig)


def _dense_sandwich(res, data, cluster):
    """H⁻¹ [G/(G−1) Σ s_c s_cᵀ] H⁻¹ by finite differences in ψ = (β, var(week), var(_cons), cov, var(e))."""
    y = data.weight.to_numpy()
    X = np.column_stack([data.week, np.ones(len(data))])
    Z = X.copy()
    groups = [np.flatnonzero(cluster == c) for c in np.unique(cluster)]

    def cluster_ll(psi, rows):
        b, (v1, v0, c, s2) = psi[:2], psi[2:]
        G = np.array([[v1, c], [c, v0]])
        V = Z[rows] @ G @ Z[rows].T + s2 * np.eye(len(rows))
        e = y[rows] - X[rows] @ b
        return -0.5 * (np.linalg.slogdet(V)[1] + e @ np.linalg.solve(V, e) + len(rows) * np.log(2 * np.pi))

    cov = res.equations[0].cov
    psi = np.concatenate([res.fixed.coef, [cov[0, 0], cov[1, 1], cov[0, 1], res.residual_var]])
    h, E = 1e-5, np.eye(len(psi))
    scores = np.array([[(cluster_ll(psi + h * E[k], r) - cluster_ll(psi - h * E[k], r)) / (2 * h)
                        for k in range(len(psi))] for r in groups])
    total = lambda p: sum(cluster_ll(p, r) for r in groups)  # noqa: E731
    h2 = 1e-4
    H = np.array([[(total(psi + h2 * (E[i] + E[j])) - total(psi + h2 * (E[i] - E[j]))
                    - total(psi - h2 * (E[i] - E[j])) + total(psi - h2 * (E[i] + E[j]))) / (4 * h2 * h2)
                   for j in range(len(psi))] for i in range(len(psi))])
    D = _stata_bread(H, 2)
    G = len(groups)
    return D @ (G / (G - 1) * scores.T @ scores) @ D


def _stata_bread(H, p):
    """Stata's model-based variance: (−H_ββ)⁻¹ for β and the variance block of (−H)⁻¹, no cross terms."""
    D = np.zeros_like(H)
    D[:p, :p] = np.linalg.inv(-H[:p, :p])
    D[p:, p:] = -np.linalg.inv(H)[p:, p:]
    return D


def test_vce_robust_matches_direct_sandwich(pig):
    res = ml.fit("mixed weight week || id: week, cov(un) vce(robust)", data=pig)
    V = _dense_sandwich(res, pig, pig.id.to_numpy())
    se = np.sqrt(np.diag(V))
    np.testing.assert_allclose(res.fixed.se, se[:2], rtol=1e-4)
    e = res.equations[0]
    names = list(e.names)
    w, c = names.index("week"), names.index("_cons")
    np.testing.assert_allclose([e.se[w, w], e.se[c, c], e.se[w, c]], se[2:5], rtol=1e-3)
    assert res.residual_se == pytest.approx(se[5], rel=1e-3)
    text = str(res)
    assert "(Std. err. adjusted for 48 clusters in id)" in text and "Log pseudolikelihood" in text
    assert "LR test" not in text


def test_vce_cluster_coarser_than_groups(pig):
    pig2 = pig.assign(pen=(pig.id - 1) // 4)
    res = ml.fit("mixed weight week || id:, vce(cluster pen)", data=pig2)
    assert res.clusters == (12, "pen")
    with pytest.raises(SpecError, match="not nested"):
        ml.fit("mixed weight week || id:, vce(cluster week)", data=pig2)


def test_vce_robust_not_with_reml(pig):
    with pytest.raises(SpecError, match="REML"):
        ml.fit("mixed weight week || id:, reml vce(robust)", data=pig)


def test_cluster_frequency_weights_equal_replicated_clusters(pig):
    wj = np.random.default_rng(1).integers(1, 4, 48)
    a = ml.fit("mixed weight week || id:, fweight(wj)", data=pig.assign(wj=wj[pig.id - 1]))
    copies = [pig[pig.id == i].assign(id=1000 + k) for k, i in enumerate(np.repeat(np.arange(1, 49), wj))]
    b = ml.fit("mixed weight week || id:", data=pd.concat(copies, ignore_index=True))
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7)
    np.testing.assert_allclose(a.fixed.se, b.fixed.se, rtol=1e-5)


def _survey_pig(pig):
    rng = np.random.default_rng(7)
    w1 = rng.uniform(0.5, 3.0, len(pig))
    wj = rng.uniform(1.0, 5.0, 48)[pig.id - 1]
    return pig.assign(w1=w1, wj=wj)


def _pseudo_loglik(psi, data, w1, wj):
    """Σ_j w_j [log N(y_j; Xβ, σ_u² J + σ² W_j⁻¹) + Σ_i (1 − w_i)/2 log 2πσ² − ½ Σ log w_i]:
    the two-level pseudo-likelihood written out directly (random intercept)."""
    b0, b1, log_su, log_se = psi
    su2, se2 = np.exp(2 * log_su), np.exp(2 * log_se)
    total = 0.0
    for j in np.unique(data.id):
        rows = np.flatnonzero(data.id.to_numpy() == j)
        w = w1[rows]
        V = su2 + np.diag(se2 / w)
        e = data.weight.to_numpy()[rows] - b0 - b1 * data.week.to_numpy()[rows]
        ll = -0.5 * (np.linalg.slogdet(V)[1] + e @ np.linalg.solve(V, e) + len(rows) * np.log(2 * np.pi))
        ll += np.sum(1 - w) / 2 * np.log(2 * np.pi * se2) - 0.5 * np.sum(np.log(w))
        total += wj[rows[0]] * ll
    return total


@pytest.mark.parametrize("scale", ["", "size", "effective"])
def test_sampling_weights_maximize_the_pseudo_likelihood(pig, scale):
    from scipy.optimize import minimize

    data = _survey_pig(pig)
    cmd = "mixed weight week [pw=w1] || id:, pweight(wj)" + (f" pwscale({scale})" if scale else "")
    res = ml.fit(cmd, data=data)
    w1 = data.w1.to_numpy().copy()
    refs = data.id.to_numpy() - 1
    if scale == "size":
        w1 *= (np.bincount(refs) / np.bincount(refs, weights=w1))[refs]
    elif scale == "effective":
        w1 *= (np.bincount(refs, weights=w1) / np.bincount(refs, weights=w1 ** 2))[refs]
    start = np.array([19.0, 6.0, 1.0, 0.5])
    opt = minimize(lambda p: -_pseudo_loglik(p, data, w1, data.wj.to_numpy()), start, method="BFGS",
                   options={"gtol": 1e-8})
    assert res.loglik == pytest.approx(-opt.fun, abs=1e-5)
    np.testing.assert_allclose(res.fixed.coef[::-1], opt.x[:2], rtol=1e-5)
    assert res.equations[0].cov[0, 0] == pytest.approx(np.exp(2 * opt.x[2]), rel=1e-4)
    assert res.residual_var == pytest.approx(np.exp(2 * opt.x[3]), rel=1e-4)
    assert res.vce == "Robust"  # sampling weights imply robust standard errors
    # the sandwich from finite differences of the written-out pseudo-likelihood
    psi = np.array([res.fixed.coef[1], res.fixed.coef[0], 0.5 * np.log(res.equations[0].cov[0, 0]),
                    0.5 * np.log(res.residual_var)])
    ids = np.unique(data.id)
    h, E = 1e-5, np.eye(4)
    scores = []
    for j in ids:
        part = data[data.id == j]
        f = lambda p: _pseudo_loglik(p, part, w1[data.id.to_numpy() == j], part.wj.to_numpy())  # noqa: E731
        scores.append([(f(psi + h * E[k]) - f(psi - h * E[k])) / (2 * h) for k in range(4)])
    S = np.array(scores)
    f = lambda p: _pseudo_loglik(p, data, w1, data.wj.to_numpy())  # noqa: E731
    h2 = 1e-4
    Hm = np.array([[(f(psi + h2 * (E[a] + E[b])) - f(psi + h2 * (E[a] - E[b])) - f(psi - h2 * (E[a] - E[b]))
                     + f(psi - h2 * (E[a] + E[b]))) / (4 * h2 * h2) for b in range(4)] for a in range(4)])
    D = _stata_bread(Hm, 2)
    V = D @ (48 / 47 * S.T @ S) @ D
    np.testing.assert_allclose(res.fixed.se[::-1], np.sqrt(np.diag(V))[:2], rtol=1e-3)
    # variance SEs on the log-SD scale: se(var) = 2 var se(log sd)
    assert res.equations[0].se[0, 0] == pytest.approx(2 * res.equations[0].cov[0, 0] * np.sqrt(V[2, 2]), rel=2e-3)
    assert res.residual_se == pytest.approx(2 * res.residual_var * np.sqrt(V[3, 3]), rel=2e-3)


def test_pwscale_gk_moves_weights_to_the_cluster_level(pig):
    data = _survey_pig(pig)
    a = ml.fit("mixed weight week [pw=w1] || id:, pweight(wj) pwscale(gk)", data=data)
    mean = data.assign(p=data.w1 * data.wj).groupby("id").p.transform("mean")
    b = ml.fit("mixed weight week || id:, pweight(wgk)", data=data.assign(wgk=mean))
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)


def test_sampling_weights_need_robust(pig):
    with pytest.raises(SpecError, match="robust"):
        ml.fit("mixed weight week [pw=week] || id:, vce(oim)", data=pig)
    with pytest.raises(DataError, match="combined"):
        ml.fit("mixed weight week [fw=week] || id:, pweight(id)", data=pig)


def test_lme4_weights_keyword_means_frequency_weights(weighted_pig):
    a = ml.mixed("weight ~ week + (1 | id)", data=weighted_pig, weights="w")
    b = ml.fit("mixed weight week [fw=w] || id:", data=weighted_pig)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)


def test_weights_not_with_dfmethod(weighted_pig):
    with pytest.raises(DataError, match="dfmethod"):
        ml.fit("mixed weight week [fw=w] || id:, dfmethod(residual)", data=weighted_pig)


def test_predict_scores_are_per_group_derivatives(pig):
    """Per-group scores: they sum to 0 at the ML optimum, and their cross-product is the
    'meat' of the robust variance checked above against the written-out sandwich."""
    res = ml.fit("mixed weight week || id: week, cov(un)", data=pig)
    sc = res.predict("scores")
    assert sc.shape == (48, 6) and sc.index.name == "id"
    assert list(sc.columns[:2]) == ["week", "_cons"] and sc.columns[-1] == "var(Residual)"
    np.testing.assert_allclose(sc.sum().to_numpy(), 0, atol=1e-3)
    # the score of β for one pig is X_jᵀ V_j⁻¹ e_j, written out here
    e = res.equations[0]
    j = pig[pig.id == 1]
    Z = np.column_stack([j.week, np.ones(len(j))])
    V = Z @ e.cov @ Z.T + res.residual_var * np.eye(len(j))
    r = j.weight.to_numpy() - Z @ res.fixed.coef
    np.testing.assert_allclose(sc.iloc[0, :2].to_numpy(), Z.T @ np.linalg.solve(V, r), rtol=1e-8)
