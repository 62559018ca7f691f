"""Frequency weights and robust (sandwich) standard errors.

References: frequency weights must give the fit on the expanded data; the robust
variance is checked against a direct computation written here from the definition
(per-cluster scores and the Hessian by finite differences of dense per-cluster
log likelihoods), independent of the analytic formulas in multilevel.inference.robust.
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
    Hinv = np.linalg.inv(H)
    G = len(groups)
    return Hinv @ (G / (G - 1) * scores.T @ scores) @ Hinv


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
