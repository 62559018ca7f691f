"""Random-effects terms of the LMM: equations that share a grouping factor.

Equations with the same grouping variables (lme4 ``(1|g) + (0+x|g)``, Stata
repeated levels) form one term whose Λ is block diagonal, so every term's
ZᵀZ block is block diagonal with one k×k block per group.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ..covariance import make
from ..design.random import ReEquation


class RandomTerm:
    """One grouping factor: codes, the n×k values ``z`` and Λ(θ).

    Λ is the block-diagonal combination of the equations' structures
    (Bates et al. 2015, JSS 67(1), eq. 4: Λ_θ repeats this k×k template
    over the groups).
    """

    def __init__(self, equations: list[ReEquation]):
        self.equations = equations
        self.refs = equations[0].refs
        self.n_groups = equations[0].n_groups
        self.z = equations[0].z if len(equations) == 1 else np.column_stack([eq.z for eq in equations])
        self.k = self.z.shape[1]
        self.structures = [make(eq.covariance, eq.k) for eq in equations]
        self.col_slices = _slices([eq.k for eq in equations])
        self.param_slices = _slices([s.n_params for s in self.structures])
        self.n_params = sum(s.n_params for s in self.structures)

    @property
    def q(self) -> int:
        return self.n_groups * self.k

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """k×k lower-triangular template Λ for this term's θ."""
        out = np.zeros((self.k, self.k))
        for s, cs, ps in zip(self.structures, self.col_slices, self.param_slices):
            out[cs, cs] = s.to_lambda(theta[ps])
        return out

    def dlam(self, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
        """∂Λ/∂θ_i for each θ_i, (n_params, k, k): central differences (exact, and computed once,
        when every structure is linear in θ)."""
        cached = self.__dict__.get("_dlam")
        if cached is not None:
            return cached
        out = np.empty((len(theta), self.k, self.k))
        for i in range(len(theta)):
            e = np.zeros(len(theta))
            e[i] = h
            out[i] = (self.lam(theta + e) - self.lam(theta - e)) / (2 * h)
        if all(s.linear for s in self.structures):
            self._dlam = out
        return out

    def zt_sparse(self, z: np.ndarray | None = None) -> sparse.csr_matrix:
        """The n×q matrix Z of this term (``z`` replaces the term's values, e.g. whitened), built
        row by row: row i holds z_i in the columns of its group (no sorting)."""
        z = self.z if z is None else z
        n = len(self.refs)
        index = np.int32 if n * self.k < 2 ** 31 and self.q < 2 ** 31 else np.int64   # scipy's own choice
        cols = (self.refs[:, None].astype(index) * self.k + np.arange(self.k, dtype=index)).ravel()
        return sparse.csr_matrix((z.ravel(), cols, np.arange(0, n * self.k + 1, self.k, dtype=index)),
                                 shape=(n, self.q))

    def _refs_intp(self) -> np.ndarray:
        """The group codes as the index type ``bincount`` takes without converting (cached)."""
        cached = self.__dict__.get("_refs_as_intp")
        if cached is None:
            cached = self._refs_as_intp = self.refs.astype(np.intp)
        return cached

    def cross_products(self, D: np.ndarray, z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ZᵀZ as (G, k, k) blocks Σ_{i∈g} z_i z_iᵀ and DᵀZ as (m, G, k) Σ_{i∈g} D_i z_iᵀ, in one pass
        per column c of [D z]: the group sums of c z_a — for a scalar term by ``bincount``, else
        as the sparse product Zᵀc with Z built once (contiguous when D is column-major)."""
        z = self.z if z is None else z
        m, G, k = D.shape[1], self.n_groups, self.k
        columns = [D[:, j] for j in range(m)] + [z[:, b] for b in range(k)]
        sums = np.empty((m + k, G * k))
        if k == 1:
            refs = self._refs_intp()
            for c, col in enumerate(columns):
                sums[c] = np.bincount(refs, weights=col * z[:, 0], minlength=G)
        else:
            Zt = self.zt_sparse(z).T
            for c, col in enumerate(columns):
                sums[c] = Zt @ col
        sums = sums.reshape(m + k, G, k)
        return np.ascontiguousarray(sums[m:].transpose(1, 2, 0)), sums[:m]


def _slices(sizes: list[int]) -> list[slice]:
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def make_terms(equations: tuple[ReEquation, ...]) -> list[RandomTerm]:
    """Group equations by grouping variables; largest number of groups first."""
    by_key: dict[tuple[str, ...], list[ReEquation]] = {}
    for eq in equations:
        by_key.setdefault(eq.group_key, []).append(eq)
    terms = [RandomTerm(eqs) for eqs in by_key.values()]
    return sorted(terms, key=lambda t: -t.n_groups)
