"""The Schur pattern of all-scalar terms (lmm/schur.py) against dense products."""
from __future__ import annotations

import numpy as np
from scipy import sparse

from multilevel.lmm.schur import SchurPattern


def _random_cross_products(seed: int = 1, m: int = 9, groups: int = 14):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, groups)) * (rng.random((m, groups)) < 0.3)
    A[:, 3] = 0.0            # a group that touches no other row
    A[-2:, :] = rng.normal(size=(2, groups))  # dense rows, as X and y
    return A


def test_values_are_the_lower_triangle_of_the_weighted_product():
    A = _random_cross_products()
    w = np.random.default_rng(2).random(A.shape[1])
    pattern = SchurPattern(sparse.csc_matrix(A))
    dense = A @ np.diag(w) @ A.T
    assert np.all(pattern.rows >= pattern.cols)
    np.testing.assert_allclose(pattern.values(w), dense[pattern.rows, pattern.cols], rtol=1e-13)
    covered = np.zeros_like(dense, dtype=bool)
    covered[pattern.rows, pattern.cols] = True
    assert not np.any(np.tril(dense)[~covered])  # every nonzero of the lower triangle is a pair
    M = np.zeros(A.shape[0] ** 2)
    M[pattern.flat] = pattern.values(w)
    np.testing.assert_allclose(M.reshape(A.shape[0], A.shape[0], order="F"), np.tril(dense), atol=1e-13)


def test_trace_over_a_leading_block():
    A = _random_cross_products(seed=3)
    rng = np.random.default_rng(4)
    w, d = rng.random(A.shape[1]), rng.random(A.shape[0]) + 0.5
    q = A.shape[0] - 2
    B = rng.normal(size=(q, q))
    S = B @ B.T
    K = (np.diag(d) @ A @ np.diag(w) @ A.T @ np.diag(d))[:q, :q]
    pattern = SchurPattern(sparse.csc_matrix(A))
    lower_only = np.asfortranarray(np.tril(S))
    assert abs(pattern.trace(w, d, lower_only) - np.trace(S @ K)) < 1e-12 * abs(np.trace(S @ K))


def test_group_forms_over_a_leading_block():
    A = _random_cross_products(seed=5)
    rng = np.random.default_rng(6)
    d = rng.random(A.shape[0]) + 0.5
    q = A.shape[0] - 2
    B = rng.normal(size=(q, q))
    S = B @ B.T
    Ad = (np.diag(d) @ A)[:q]
    expected = np.einsum("rg,rc,cg->g", Ad, S, Ad)    # a_gᵀ D S D a_g per group
    got = SchurPattern(sparse.csc_matrix(A)).group_forms(d, np.asfortranarray(np.tril(S)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
