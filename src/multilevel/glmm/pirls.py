"""Penalized iteratively reweighted least squares for the conditional modes.

With b = Λu, u ~ N(0, I) and η = offset + Xβ + ZΛu, the conditional mode
û maximizes

.. math:: g(u) = \\sum_i \\log f(y_i | η_i) − ½‖u‖²

by Newton steps with step-halving (Bates et al. 2015, JSS 67(1), §5 of the
GLMM vignette; MixedModels.jl ``pirls!``).  The Newton matrix is the
penalized weighted cross-product H = ΛᵀZᵀWZΛ + I with W = −∂²log f/∂η²
(the observed curvature, so that at û it is also the matrix of the Laplace
approximation).  It is factored in the LMM's blocked layout: the term with
the most groups is block diagonal (one k×k block per group, factored as a
batch); the other terms are a small dense Schur complement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy import sparse

from ..linalg import batched
from ..lmm.terms import RandomTerm


def weighted_gram(term: RandomTerm, w: np.ndarray) -> np.ndarray:
    """ZᵀWZ of one term as (G, k, k) blocks: Σ_{i in g} w_i z_i z_iᵀ."""
    out = np.empty((term.n_groups, term.k, term.k))
    for a in range(term.k):
        wa = w * term.z[:, a]
        for b in range(a, term.k):
            out[:, a, b] = out[:, b, a] = np.bincount(term.refs, weights=wa * term.z[:, b],
                                                      minlength=term.n_groups)
    return out


@dataclass
class PenalizedFactor:
    """Cholesky factor of H = ΛᵀZᵀWZΛ + I in blocked form."""

    L11: np.ndarray                 # (G₁, k₁, k₁) lower-triangular blocks
    L11inv: np.ndarray              # their inverses
    L21: object | None              # (q_r × q₁) in block form (``matvec``, ``rmatvec``)
    L22: np.ndarray | None          # (q_r × q_r) lower triangular
    logdet: float                   # log |H|

    def solve(self, r: np.ndarray) -> np.ndarray:
        """H⁻¹ r for a flat vector r (term 1's entries first, group-major)."""
        G, k, _ = self.L11.shape
        r1 = r[:G * k].reshape(G, k)
        y1 = np.einsum("gab,gb->ga", self.L11inv, r1)
        if self.L22 is None:
            return np.einsum("gba,gb->ga", self.L11inv, y1).ravel()
        y2 = scipy.linalg.solve_triangular(self.L22, r[G * k:] - self.L21.matvec(y1.ravel()), lower=True,
                                           check_finite=False)
        x2 = scipy.linalg.solve_triangular(self.L22, y2, lower=True, trans="T", check_finite=False)
        t = (y1.ravel() - self.L21.rmatvec(x2)).reshape(G, k)
        return np.concatenate([np.einsum("gba,gb->ga", self.L11inv, t).ravel(), x2])


@dataclass
class DenseFactor:
    """Cholesky factor L of H held dense (small systems of several terms,
    :meth:`PenalizedSystem.dense_factor`), with its two blocks: term 1 (most groups) block
    diagonal, L₁₁ = chol(H₁₁) by batched k₁×k₁ factors, then W = H₂₁L₁₁⁻ᵀ and L₂₂ = chol(S),
    S = H₂₂ − WWᵀ the Schur complement of the other terms."""

    L: np.ndarray                   # (q × q) lower triangle (the upper is not read)
    L11inv: np.ndarray              # (G₁, k₁, k₁)
    W: np.ndarray                   # (q_r × q₁)
    L22: np.ndarray                 # (q_r × q_r) lower triangle
    logdet: float

    def solve(self, r: np.ndarray) -> np.ndarray:
        """H⁻¹r (LAPACK ``potrs``; r a vector or a matrix)."""
        x, info = scipy.linalg.lapack.dpotrs(self.L, r, lower=1)
        if info:
            raise ValueError("potrs: illegal argument")
        return x

    def inverse(self) -> np.ndarray:
        """H⁻¹ by blocks: with V = W·L₁₁⁻¹ and S⁻¹ = L₂₂⁻ᵀL₂₂⁻¹,
        H⁻¹ = [[L₁₁⁻ᵀL₁₁⁻¹ + VᵀS⁻¹V, −VᵀS⁻¹], [−S⁻¹V, S⁻¹]]."""
        G, k, _ = self.L11inv.shape
        q1 = G * k
        V = np.einsum("rga,gab->rgb", self.W.reshape(-1, G, k), self.L11inv).reshape(-1, q1)
        Sinv, info = scipy.linalg.lapack.dpotri(self.L22, lower=1)
        if info:
            raise np.linalg.LinAlgError("H is singular")
        Sinv = np.tril(Sinv) + np.tril(Sinv, -1).T
        out = np.empty((q1 + len(Sinv),) * 2)
        out[q1:, q1:] = Sinv
        out[q1:, :q1] = -Sinv @ V
        out[:q1, q1:] = out[q1:, :q1].T
        out[:q1, :q1] = -V.T @ out[q1:, :q1]
        blocks = np.einsum("gca,gcb->gab", self.L11inv, self.L11inv)
        idx = np.arange(q1).reshape(G, k)
        out[idx[:, :, None], idx[:, None, :]] += blocks
        return out


class SlotPattern:
    """A = ZΛ by its slots: row i touches one column of A per slot s = (term t, column c),
    ``cols[s, i]``, with the value (z_iλ_t)_c; dense products of slot values by one
    ``bincount`` over the fixed pattern of slot pairs."""

    def __init__(self, terms: list[RandomTerm], offsets: np.ndarray, q: int):
        self.terms, self.q = terms, q
        self.cols = np.array([offsets[t] + terms[t].refs.astype(np.int64) * terms[t].k + c
                              for t in range(len(terms)) for c in range(terms[t].k)])      # (K, n)
        keys = (self.cols[:, None, :] * q + self.cols[None, :, :]).ravel()
        self._pattern, self._pair = np.unique(keys, return_inverse=True)
        self._pair = self._pair.ravel()
        self._csr = None        # (indices, indptr) of the pattern, for :meth:`sym_sparse`

    def values(self, lams: list[np.ndarray]) -> np.ndarray:
        """(K, n) slot values of A = ZΛ: (z_iλ_t)_c."""
        return np.concatenate([(t.z @ lam).T for t, lam in zip(self.terms, lams)])

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Dense Σ_i a_i b_iᵀ (q × q) of two (K, n) slot-value arrays."""
        out = np.zeros(self.q * self.q)
        out[self._pattern] = np.bincount(self._pair, weights=(a[:, None, :] * b[None, :, :]).ravel(),
                                         minlength=len(self._pattern))
        return out.reshape(self.q, self.q)

    def sym_sparse(self, a: np.ndarray, b: np.ndarray) -> sparse.csr_matrix:
        """Σ_i (a_i b_iᵀ + b_i a_iᵀ) as a sparse (CSR) q × q matrix on the slot-pair pattern."""
        if self._csr is None:
            rows = self._pattern // self.q
            self._csr = (self._pattern % self.q, np.searchsorted(rows, np.arange(self.q + 1)))
        data = np.bincount(self._pair, weights=(a[:, None, :] * b[None, :, :] + b[:, None, :] * a[None, :, :]).ravel(),
                           minlength=len(self._pattern))
        return sparse.csr_matrix((data, *self._csr), shape=(self.q, self.q))

    def t_times(self, a: np.ndarray, M: np.ndarray) -> np.ndarray:
        """AᵀM (q × d) for an (n, d) M, A given by its slot values ``a`` (K, n)."""
        d = M.shape[1]
        idx = (self.cols[:, :, None] * d + np.arange(d)).ravel()
        return np.bincount(idx, weights=(a[:, :, None] * M[None]).ravel(), minlength=self.q * d).reshape(self.q, d)


class PenalizedSystem:
    """The random-effects structure of a GLMM: Z applied and H factored at weights W.

    ``terms`` are the LMM's :class:`~multilevel.lmm.terms.RandomTerm` objects
    (most groups first); u is one flat vector, term by term, group-major.
    """

    def __init__(self, terms: list[RandomTerm], n: int):
        self.terms = terms
        self.n = n
        self.sizes = [t.q for t in terms]
        self.q = sum(self.sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self._rest = self._slots = None     # index patterns, built on first use

    def split(self, u: np.ndarray) -> list[np.ndarray]:
        """Flat u -> per-term (G, k) arrays."""
        return [u[a:b].reshape(t.n_groups, t.k) for t, a, b in zip(self.terms, self.offsets[:-1], self.offsets[1:])]

    def zlam(self, u: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """ZΛu, an n-vector."""
        out = np.zeros(self.n)
        for t, ut, lam in zip(self.terms, self.split(u), lams):
            b = ut @ lam.T
            out += np.einsum("ic,ic->i", t.z, b[t.refs])
        return out

    def zlam_t(self, v: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """ΛᵀZᵀv, flat."""
        parts = []
        for t, lam in zip(self.terms, lams):
            zv = np.column_stack([np.bincount(t.refs, weights=v * t.z[:, a], minlength=t.n_groups)
                                  for a in range(t.k)])
            parts.append((zv @ lam).ravel())
        return np.concatenate(parts)

    def factor(self, w: np.ndarray, lams: list[np.ndarray]) -> PenalizedFactor:
        """Blocked Cholesky factor of ΛᵀZᵀWZΛ + I."""
        t1, lam1 = self.terms[0], lams[0]
        M = batched.congruence(weighted_gram(t1, w), lam1)
        M += np.eye(t1.k)
        L11 = batched.cholesky(M)
        L11inv = batched.tri_inverse(L11)
        logdet = 2 * np.log(np.diagonal(L11, axis1=1, axis2=2)).sum()
        if len(self.terms) == 1:
            return PenalizedFactor(L11, L11inv, None, None, logdet)
        if self._rest is None:
            self._rest = _RestPattern(self.terms)
        L21, S = self._rest.blocks(w, lams, L11inv)
        L22 = np.linalg.cholesky(S)
        logdet += 2 * np.log(np.diag(L22)).sum()
        return PenalizedFactor(L11, L11inv, L21, L22, logdet)


    @property
    def slots(self) -> SlotPattern:
        """The :class:`SlotPattern` of A (built on first use)."""
        if self._slots is None:
            self._slots = SlotPattern(self.terms, self.offsets, self.q)
        return self._slots

    def dense_factor(self, w: np.ndarray, lams: list[np.ndarray]) -> DenseFactor:
        """Cholesky factor of H = AᵀWA + I assembled dense (several terms): cheaper than the
        blocked one while q is a few hundred (:class:`DenseFactor`)."""
        a = self.slots.values(lams)
        H = self.slots.gram(a, a * w)
        H[np.diag_indices(self.q)] += 1.0
        t1 = self.terms[0]
        q1 = t1.q
        idx = np.arange(q1).reshape(t1.n_groups, t1.k)
        L11 = batched.cholesky(H[idx[:, :, None], idx[:, None, :]])
        L11inv = batched.tri_inverse(L11)
        W = np.einsum("rgb,gab->rga", H[q1:, :q1].reshape(-1, t1.n_groups, t1.k), L11inv).reshape(-1, q1)
        L22, info = scipy.linalg.lapack.dpotrf(H[q1:, q1:] - W @ W.T, lower=1, clean=0, overwrite_a=1)
        if info:
            raise np.linalg.LinAlgError("H is not positive definite")
        L = np.zeros_like(H)
        L[idx[:, :, None], idx[:, None, :]] = L11
        L[q1:, :q1] = W
        L[q1:, q1:] = L22
        logdet = 2 * (np.log(np.diagonal(L11, axis1=1, axis2=2)).sum() + np.log(np.diag(L22)).sum())
        return DenseFactor(L, L11inv, W, L22, logdet)


class _RestPattern:
    """The off-diagonal blocks in block form, with every index pattern computed once.

    Term 1 (most groups) is block diagonal; the other terms ("rest") are
    held dense (q_r × q_r).  For each rest term the pairs (g_r, g₁) of groups
    that share observations carry a k_r × k₁ block of ZᵣᵀWZ₁; the Schur
    complement needs the pairs of such pairs that share g₁.  Every product
    is then a ``bincount`` or an ``einsum`` over pairs: no sparse matrix is
    assembled inside the objective.
    """

    def __init__(self, terms: list[RandomTerm]):
        import pandas as pd

        t1, rest = terms[0], terms[1:]
        G1 = t1.n_groups
        self.t1, self.rest = t1, rest
        self.qr = sum(t.q for t in rest)
        self.off = np.concatenate([[0], np.cumsum([t.q for t in rest])]).astype(np.int64)
        self.pairs = []      # per rest term: (obs -> pair, pair g_r, pair g₁)
        for t in rest:
            uniq, inv = np.unique(t.refs.astype(np.int64) * G1 + t1.refs, return_inverse=True)
            self.pairs.append((inv.ravel(), uniq // G1, uniq % G1))
        rows, zr = [], []
        for t, off in zip(rest, self.off):
            for a in range(t.k):
                rows.append(off + t.refs.astype(np.int64) * t.k + a)
                zr.append(t.z[:, a])
        n = len(t1.refs)
        self.key22 = np.concatenate([ra * self.qr + rb for ra in rows for rb in rows])
        self.prod22 = np.concatenate([za * zb for za in zr for zb in zr])
        self.obs22 = np.tile(np.arange(n), len(rows) ** 2)
        self.cross = []      # per (t, t'): pair indices sharing g₁ and their S entries
        for i, (ti, pi) in enumerate(zip(rest, self.pairs)):
            for j, (tj, pj) in enumerate(zip(rest, self.pairs)):
                m = pd.merge(pd.DataFrame({"g1": pi[2], "p": np.arange(len(pi[2]))}),
                             pd.DataFrame({"g1": pj[2], "q": np.arange(len(pj[2]))}), on="g1")
                pp, qq = m["p"].to_numpy(), m["q"].to_numpy()
                r = self.off[i] + pi[1][pp][:, None] * ti.k + np.arange(ti.k)
                c = self.off[j] + pj[1][qq][:, None] * tj.k + np.arange(tj.k)
                key = (r[:, :, None] * self.qr + c[:, None, :]).ravel()
                self.cross.append((i, j, pp, qq, key))

    def blocks(self, w: np.ndarray, lams: list[np.ndarray], L11inv: np.ndarray):
        """L₂₁ = ΛᵣᵀZᵣᵀWZ₁Λ₁L₁₁⁻ᵀ (per rest term, (P, k_r, k₁) blocks) and the dense
        Schur complement H₂₂ − L₂₁L₂₁ᵀ with H₂₂ = ΛᵣᵀZᵣᵀWZᵣΛᵣ + I."""
        t1, lam1 = self.t1, lams[0]
        L21 = []
        for t, lam, (inv, _, g1) in zip(self.rest, lams[1:], self.pairs):
            C = np.empty((len(g1), t.k, t1.k))
            for a in range(t.k):
                for b in range(t1.k):
                    C[:, a, b] = np.bincount(inv, weights=w * t.z[:, a] * t1.z[:, b], minlength=len(g1))
            H = np.einsum("ja,pjb,bc->pac", lam, C, lam1)
            L21.append(np.einsum("pab,pcb->pac", H, L11inv[g1]))
        C22 = np.bincount(self.key22, weights=w[self.obs22] * self.prod22, minlength=self.qr * self.qr)
        S = self._scale22(C22.reshape(self.qr, self.qr), lams[1:]) + np.eye(self.qr)
        flat = S.ravel()
        for i, j, pp, qq, key in self.cross:
            flat -= np.bincount(key, weights=np.einsum("pac,pbc->pab", L21[i][pp], L21[j][qq]).ravel(),
                                minlength=flat.size)
        return _Blocks21(self, L21), flat.reshape(self.qr, self.qr)

    def _scale22(self, C: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """ΛᵣᵀCΛᵣ block by block (Λᵣ is block diagonal)."""
        out = np.empty_like(C)
        for i, (ti, li) in enumerate(zip(self.rest, lams)):
            for j, (tj, lj) in enumerate(zip(self.rest, lams)):
                blk = C[self.off[i]:self.off[i + 1], self.off[j]:self.off[j + 1]]
                blk = blk.reshape(ti.n_groups, ti.k, tj.n_groups, tj.k)
                out[self.off[i]:self.off[i + 1], self.off[j]:self.off[j + 1]] = np.einsum(
                    "ja,gjhk,kb->gahb", li, blk, lj).reshape(ti.q, tj.q)
        return out


class _Blocks21:
    """L₂₁ in block form: products with vectors by ``einsum`` and ``bincount``."""

    def __init__(self, pattern: _RestPattern, blocks: list[np.ndarray]):
        self.pattern = pattern
        self.blocks = blocks

    def matvec(self, y1: np.ndarray) -> np.ndarray:
        """L₂₁ y₁ (y₁ flat over term 1)."""
        p = self.pattern
        Y = y1.reshape(p.t1.n_groups, p.t1.k)
        out = []
        for t, B, (_, gr, g1) in zip(p.rest, self.blocks, p.pairs):
            v = np.einsum("pac,pc->pa", B, Y[g1])
            out.append(np.column_stack([np.bincount(gr, weights=v[:, a], minlength=t.n_groups)
                                        for a in range(t.k)]).ravel())
        return np.concatenate(out)

    def rmatvec(self, x2: np.ndarray) -> np.ndarray:
        """L₂₁ᵀ x₂, flat over term 1."""
        p = self.pattern
        out = np.zeros((p.t1.n_groups, p.t1.k))
        for t, B, (_, gr, g1), off in zip(p.rest, self.blocks, p.pairs, p.off):
            X = x2[off:off + t.q].reshape(t.n_groups, t.k)
            v = np.einsum("pac,pa->pc", B, X[gr])
            for c in range(p.t1.k):
                out[:, c] += np.bincount(g1, weights=v[:, c], minlength=p.t1.n_groups)
        return out.ravel()


@dataclass
class Modes:
    """The result of PIRLS at one parameter value."""

    u: np.ndarray          # conditional modes (spherical), flat
    eta: np.ndarray        # linear predictor at û
    loglik: float          # Σ log f(y | η(û))
    factor: PenalizedFactor | DenseFactor  # H at û
    iterations: int
    converged: bool

    @property
    def laplace(self) -> float:
        """Laplace approximation of the log likelihood:
        Σ log f(y|η(û)) − ½‖û‖² − ½ log|H(û)|."""
        return self.loglik - 0.5 * self.u @ self.u - 0.5 * self.factor.logdet


def pirls(system: PenalizedSystem, family, y: np.ndarray, eta0: np.ndarray, lams: list[np.ndarray],
          xi: np.ndarray, u0: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 60,
          dense: bool = False) -> Modes:
    """Conditional modes û by Newton steps with step-halving on g(u); H factored dense
    (:meth:`PenalizedSystem.dense_factor`) with ``dense``, else blocked."""
    factor = system.dense_factor if dense else system.factor
    u = np.zeros(system.q) if u0 is None else u0.copy()
    eta = eta0 + system.zlam(u, lams)
    ll, d1, d2 = family.derivs(y, eta, xi)
    obj = ll.sum() - 0.5 * u @ u
    converged = stale = False   # stale: u moved since F was factored
    it = 0
    for it in range(1, max_iter + 1):
        F = factor(np.maximum(-d2, 0.0), lams)
        stale = False
        grad = system.zlam_t(d1, lams) - u
        delta = F.solve(grad)
        step = 1.0
        while True:   # the derivatives come with the trial point: reused when it is accepted
            u_new = u + step * delta
            eta_new = eta0 + system.zlam(u_new, lams)
            new = family.derivs(y, eta_new, xi)
            obj_new = new[0].sum() - 0.5 * u_new @ u_new
            if np.isfinite(obj_new) and obj_new >= obj - 1e-12 * (1 + abs(obj)):
                break
            step *= 0.5
            if step < 1e-12:
                break
        if step < 1e-12:  # no progress possible: at the mode within rounding
            converged = np.max(np.abs(delta), initial=0.0) < 1e-6
            break
        gain = obj_new - obj
        u, eta, obj = u_new, eta_new, obj_new
        ll, d1, d2 = new
        moved = np.max(np.abs(step * delta), initial=0.0)
        stale = moved >= tol     # a step below tol changes H by O(tol): F stands for H(û)
        if moved < tol or gain < 1e-14 * (1 + abs(obj)):
            converged = True
            break
    if stale:
        F = factor(np.maximum(-d2, 0.0), lams)
    return Modes(u, eta, float(ll.sum()), F, it, converged)
