"""Kernels on stacks of small k×k blocks, vectorized over the stack.

A random-effects term with k columns gives one k×k block per group (G of
them, G up to millions).  numpy's batched ``linalg`` routines call LAPACK
once per block, which costs microseconds each; here the loops run over the
k² entries (k is small) and each step is one vector operation over all G
groups (the "uniform block diagonal" of MixedModels.jl).
"""
from __future__ import annotations

import numpy as np


def congruence(A: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """ΛᵀA_gΛ for every block of A (G, k, k), as two tall matrix products."""
    G, k, _ = A.shape
    AL = (A.reshape(G * k, k) @ lam).reshape(G, k, k)          # A_g Λ
    return (AL.transpose(0, 2, 1).reshape(G * k, k) @ lam).reshape(G, k, k).transpose(0, 2, 1)


def cholesky(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of each block (unblocked, Golub & Van Loan alg. 4.2.1)."""
    G, k, _ = M.shape
    L = np.zeros_like(M)
    for j in range(k):
        d = M[:, j, j] - np.einsum("gi,gi->g", L[:, j, :j], L[:, j, :j])
        if np.any(d <= 0):
            raise np.linalg.LinAlgError("a diagonal block is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            L[:, i, j] = (M[:, i, j] - np.einsum("gi,gi->g", L[:, i, :j], L[:, j, :j])) / L[:, j, j]
    return L


def tri_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of each lower-triangular block, by forward substitution."""
    G, k, _ = L.shape
    if k == 1:
        return 1.0 / L
    inv = np.zeros_like(L)
    for i in range(k):
        inv[:, i, i] = 1.0 / L[:, i, i]
        for j in range(i):
            s = np.einsum("gm,gm->g", L[:, i, j:i], inv[:, j:i, j])
            inv[:, i, j] = -s / L[:, i, i]
    return inv


def right_multiply(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(A_{·g} T_g) for A (m, G, k) and T (G, k, k), by k² vector operations."""
    m, G, k = A.shape
    if k == 1:
        return A * T[:, 0, 0][None, :, None]
    out = np.zeros_like(A)
    for j in range(k):
        for l in range(k):
            out[:, :, l] += A[:, :, j] * T[:, j, l]
    return out
