"""The Schur complement of a scalar first term, on a pattern computed once.

When every random-effects term is scalar (random intercepts, the common crossed case, e.g.
InstEval's students × lectures × departments), L₂₁ = Λ̃ A₂ T with T = diag(λ₁/L₁₁,g) and
A₂ = [A₂₁; [X y]ᵀZ₁] the (m × G₁) cross-products of the other rows with the first term's
groups, so the product that the blocked factorization subtracts is

    L₂₁L₂₁ᵀ = Λ̃ (A₂ diag(w) A₂ᵀ) Λ̃,   w = T²,

and the gradient needs the same product with w = (T/L₁₁)² (the first term's Ỹ Ỹᵀ).  Its entry
(r, c) is Σ_g A_rg A_cg w_g over the groups g that both rows touch: a fixed linear map of w,
stored once as a sparse matrix over the lower triangle's nonzero pairs (one row per pair, one
column per group).  Each evaluation is then one sparse matrix–vector product with
Σ_g (nonzeros in column g of A₂)² / 2 terms, instead of a sparse matrix product that finds the
pattern again every time.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse


class SchurPattern:
    """Pairs (r ≥ c) where A₂ diag(w) A₂ᵀ can be nonzero, and the map from w to its values.

    ``rows``, ``cols``: the pairs; ``flat``: their positions r + c·m in a Fortran-ordered m × m
    array (LAPACK's layout, so the dense block is updated in place and factored without a copy).
    """

    def __init__(self, A2: sparse.csc_matrix):
        A2 = A2.tocsc()
        A2.sort_indices()
        m, G = A2.shape
        n = np.diff(A2.indptr)
        pos = np.arange(A2.nnz) - np.repeat(A2.indptr[:-1], n)   # each nonzero's place in its column
        reps = pos + 1                                          # pairs (a, b ≤ a) in its column
        a = np.repeat(np.arange(A2.nnz), reps)
        first = np.arange(A2.nnz) - pos - (np.cumsum(reps) - reps)   # the column's first nonzero, less
        b = np.arange(len(a)) + np.repeat(first, reps)               # the offset of a's pairs in the list
        flat = A2.indices[a] + A2.indices[b].astype(np.int64) * m   # sorted indices: row ≥ col
        seen = np.zeros(m * m, dtype=bool)
        seen[flat] = True
        self.flat = np.flatnonzero(seen)
        self.cols, self.rows = np.divmod(self.flat, m)
        rank = np.zeros(m * m, dtype=np.int32)
        rank[self.flat] = np.arange(len(self.flat), dtype=np.int32)
        n = n.astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(n * (n + 1) // 2)])  # the pairs come group by group
        self._map = sparse.csc_matrix((A2.data[a] * A2.data[b], rank[flat], indptr), shape=(len(self.flat), G))
        self._within: dict = {}

    @staticmethod
    def size(A2: sparse.csc_matrix) -> int:
        """Number of (group, pair) terms of the map: its memory and per-evaluation cost."""
        n = np.diff(A2.tocsc().indptr).astype(np.int64)
        return int(np.sum(n * (n + 1) // 2))

    def values(self, w: np.ndarray) -> np.ndarray:
        """A₂ diag(w) A₂ᵀ at the pairs."""
        return self._map @ w

    def scale(self, d: np.ndarray) -> np.ndarray:
        """d_r d_c at the pairs: the entries of d dᵀ, for diag(d) K diag(d)."""
        return d[self.rows] * d[self.cols]

    def trace(self, w: np.ndarray, d: np.ndarray, S: np.ndarray) -> float:
        """tr(S K) for K = diag(d) A₂ diag(w) A₂ᵀ diag(d) over the leading q × q block of a
        symmetric S (q = S's order) of which only the lower triangle is used."""
        return float(w @ self.group_forms(d, S))

    def group_forms(self, d: np.ndarray, S: np.ndarray) -> np.ndarray:
        """a_gᵀ diag(d) S diag(d) a_g for each group g (column a_g of A₂ over the leading q rows;
        S symmetric of order q, only its lower triangle used)."""
        q = S.shape[0]
        if q not in self._within:  # the pairs inside the block, their positions in S (Fortran
            idx = np.flatnonzero(self.rows < q)  # order) and multiplicity (2 off the diagonal)
            r, c = self.rows[idx], self.cols[idx]
            self._within[q] = (idx, r + c * q, np.where(r == c, 1.0, 2.0))
        idx, flat, mult = self._within[q]
        pairs = np.zeros(len(self.flat))
        pairs[idx] = mult * self.scale(d)[idx] * np.asfortranarray(S).ravel(order="F")[flat]
        return self._map.T @ pairs
