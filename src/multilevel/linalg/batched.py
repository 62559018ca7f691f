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
    """ΛᵀA_gΛ for every block of A (G, k, k): one tall product A_gΛ, then k³ vector operations."""
    G, k, _ = A.shape
    AL = (A.reshape(G * k, k) @ lam).reshape(G, k, k)          # A_g Λ
    out = np.empty_like(AL)
    for i in range(k):
        for j in range(k):
            out[:, i, j] = _dot_entries(lam[:, i], AL[:, :, j])
    return out


def _dot_entries(c: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Σ_a c_a V[:, a] for a vector of numbers c and the (G, m) slice V, skipping zeros of c."""
    s = np.zeros(V.shape[0])
    for a in np.flatnonzero(c):
        s += c[a] * V[:, a]
    return s


def cholesky(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of each block (unblocked, Golub & Van Loan alg. 4.2.1)."""
    G, k, _ = M.shape
    L = np.zeros_like(M)
    for j in range(k):
        d = M[:, j, j] - _sum_products(L[:, j, :j], L[:, j, :j])
        if np.any(d <= 0):
            raise np.linalg.LinAlgError("a diagonal block is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            L[:, i, j] = (M[:, i, j] - _sum_products(L[:, i, :j], L[:, j, :j])) / L[:, j, j]
    return L


def _sum_products(U: np.ndarray, V: np.ndarray) -> np.ndarray | float:
    """Σ_m U[:, m] V[:, m] for (G, r) slices with few columns r (0 when r = 0)."""
    s = 0.0
    for m in range(U.shape[1]):
        s = s + U[:, m] * V[:, m]
    return s


def tri_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of each lower-triangular block, by forward substitution."""
    G, k, _ = L.shape
    if k == 1:
        return 1.0 / L
    inv = np.zeros_like(L)
    for i in range(k):
        inv[:, i, i] = 1.0 / L[:, i, i]
        for j in range(i):
            inv[:, i, j] = -_sum_products(L[:, i, j:i], inv[:, j:i, j]) / L[:, i, i]
    return inv


def log_det_tri(L: np.ndarray) -> np.ndarray:
    """log|L_g| = Σ_i log L_g,ii for each triangular block (the log of the product of the k
    diagonal entries: one log per group)."""
    d = L[:, 0, 0].copy()
    for i in range(1, L.shape[1]):
        d *= L[:, i, i]
    return np.log(d)


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(A_g B_g) for A (G, k, m) and B (G, m, l), by k·l·m vector operations over the groups
    (numpy's stacked ``@`` runs a small kernel per block: ~10x slower for 2×2 blocks)."""
    G, k, m = A.shape
    out = np.empty((G, k, B.shape[2]))
    for i in range(k):
        for j in range(B.shape[2]):
            s = A[:, i, 0] * B[:, 0, j]
            for r in range(1, m):
                s += A[:, i, r] * B[:, r, j]
            out[:, i, j] = s
    return out


def matvec(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(A_g v_g) for A (G, k, m) and v (G, m)."""
    G, k, m = A.shape
    out = np.empty((G, k))
    for i in range(k):
        s = A[:, i, 0] * v[:, 0]
        for r in range(1, m):
            s += A[:, i, r] * v[:, r]
        out[:, i] = s
    return out


def sum_outer(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Σ_g A_g B_gᵀ for A (G, k, m) and B (G, l, m), by k·l·m dot products over the groups
    (a tensordot would first copy both stacks into transposed order)."""
    out = np.empty((A.shape[1], B.shape[1]))
    for i in range(A.shape[1]):
        for j in range(B.shape[1]):
            out[i, j] = sum(np.dot(A[:, i, r], B[:, j, r]) for r in range(A.shape[2]))
    return out


def right_multiply(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(A_{·g} T_g) for A (m, G, k) and T (G, k, k), by k² vector operations."""
    m, G, k = A.shape
    if k == 1:
        return A * T[:, 0, 0][None, :, None]
    out = np.empty_like(A)
    for l in range(k):
        s = A[:, :, 0] * T[:, 0, l]
        for j in range(1, k):
            s += A[:, :, j] * T[:, j, l]
        out[:, :, l] = s
    return out
