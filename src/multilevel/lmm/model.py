"""The linear mixed model core: sufficient statistics once, profiled deviance per θ.

Notation of Bates, Mächler, Bolker & Walker (2015), "Fitting Linear
Mixed-Effects Models Using lme4", JSS 67(1) ("JSS"):  y | u ~ N(Xβ + ZΛu, σ²I),
u ~ N(0, σ²I).  The cross-products of ``[Z X y]`` are formed once; each
evaluation rescales them by Λ(θ) and refactors a blocked Cholesky factor
(as MixedModels.jl ``updateL!``)::

    [ Λ₁ᵀA₁₁Λ₁+I      .      ]   [ L₁₁   0  ]
    [ Λ̃ᵀA₂₁Λ₁   Λ̃ᵀA₂₂Λ̃ + J ] = [ L₂₁  L₂₂ ] [ ... ]ᵀ

Block 1 is the term with the most groups, block diagonal (one k×k block per
group, factored in a batch); block 2 holds the other terms, X and y (dense,
small), with J = I on the other terms' rows.  The last diagonal element of
L₂₂ squared is the penalized residual sum of squares r²(θ).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.linalg.lapack import dpotrf, dtrtrs

from ..design import Design
from ..linalg import batched
from ..linalg.dense import spd_solve
from .rside import MarkovStatistics, ResidualModel
from .schur import SchurPattern
from .terms import RandomTerm, make_terms


@dataclass
class Factor:
    """The blocked Cholesky factor at one θ."""

    theta: np.ndarray
    L11: np.ndarray          # (G₁, k₁, k₁) lower-triangular blocks
    L21Z: sparse.csr_matrix | None  # rows of the other terms (q_rest × q₁)
    L21D: np.ndarray         # rows of X and y (p+1 × q₁)
    L22: np.ndarray          # (m × m) lower triangular
    log_det_z: float         # log |L_Z|²  (the random-effects part)
    log_det_x: float         # log |R_X|²  (the fixed-effects part)
    pwrss: float             # r²(θ), penalized residual sum of squares
    log_det_r: float = 0.0   # Σ_j log |R_j| of a residual structure (0 for independent)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # derived once per factor

    def l11_inverse(self) -> np.ndarray:
        """L₁₁⁻¹, block by block (computed once per factor: the solve and the gradients share it)."""
        if "l11_inverse" not in self.cache:
            self.cache["l11_inverse"] = batched.tri_inverse(self.L11)
        return self.cache["l11_inverse"]


class LinearMixedModel:
    """A linear mixed model on a :class:`Design`, ready to evaluate the deviance.

    Attributes
    ----------
    terms:      random-effects terms, most groups first
    n, p:       observations and fixed-effect columns
    reml:       whether :meth:`objective` is the REML criterion
    """

    def __init__(self, design: Design, reml: bool = False, statistics: "Statistics | None" = None):
        self.design = design
        self.reml = reml
        self.terms: list[RandomTerm] = make_terms(design.equations)
        self.n, self.p = design.X.shape
        self.residual = ResidualModel(design.residual) if design.residual is not None else None
        sizes = [t.n_params for t in self.terms] + [self.residual.n_params if self.residual else 0]
        *self._theta_slices, self.residual_slice = _offsets(sizes)
        if statistics is not None:
            self._from_statistics(statistics)
            return
        self.n_obs = design.n_effective  # Σ w_j w_i|j with weights, or n
        w = design.weights
        self._sqrt_w = np.sqrt(w.total)[:, None] if w is not None else None        # rows of [X y]
        self._sqrt_w1 = np.sqrt(w.level1)[:, None] if w is not None else None      # rows of z
        self._group_w = None                                                         # w_j per group
        if w is not None and w.cluster is not None:
            first = self.terms[0]
            self._group_w = np.zeros(first.n_groups)
            self._group_w[first.refs] = w.cluster
        self._raw = self._weighted(self._centered_data(design.X, design.y))
        self.raw_gram = self._raw.T @ self._raw  # [X y]ᵀ[X y] (centred), for the linear regression
        self._whitened_at: np.ndarray | None = None
        self._log_det_r = 0.0
        self._markov = None
        if self.residual is not None and len(self.terms) <= 1 and MarkovStatistics.applies(self.residual) \
                and (not self.terms or self.terms[0].equations[0].group_key == design.residual_key):
            self._markov = MarkovStatistics(self.residual, self._raw,
                                            self.terms[0].z if self.terms else np.zeros((self.n, 0)))
        self._layout()
        if self.residual is None:
            z = [t.z if self._sqrt_w1 is None else t.z * self._sqrt_w1 for t in self.terms]
            self._stats(self._raw, z)

    def _from_statistics(self, st: "Statistics") -> None:
        """Cross-products accumulated elsewhere (e.g. partition by partition with dask)."""
        self.n_obs = st.n_obs
        self._sqrt_w = self._sqrt_w1 = self._group_w = self._markov = None
        self._whitened_at, self._log_det_r = None, 0.0
        self._set_centering(st.means)
        self.raw_gram = st.A22
        self._layout()
        self.A11, self.A21D, self.A21Z, self.A22 = st.A11, st.A21D, None, st.A22

    # --- sufficient statistics --------------------------------------------------
    def _layout(self) -> None:
        """Index arrays of the blocked factor, fixed by the terms' sizes."""
        rest = self.terms[1:]
        self.q_rest = sum(t.q for t in rest)
        self.m = self.q_rest + self.p + 1
        self._rest_offsets = _offsets([t.q for t in rest])
        self._rest_diag = np.arange(self.q_rest)

    def block_diagonal(self, blocks: np.ndarray) -> sparse.csr_matrix:
        """The first term's (G, k, k) blocks as a sparse block-diagonal matrix (index pattern
        formed once)."""
        pattern = self.__dict__.get("_block_pattern")
        if pattern is None:
            first = self.terms[0]
            k, g = first.k, np.arange(first.n_groups)
            pattern = self._block_pattern = (np.repeat(g * k, k * k) + np.tile(np.arange(k), first.n_groups * k),
                                             np.arange(0, first.q * k + 1, k))
        G, k = blocks.shape[:2]
        return sparse.csr_matrix((blocks.ravel(), *pattern), shape=(G * k, G * k))

    def _stats(self, D: np.ndarray, zs: list[np.ndarray]) -> None:
        """Cross-products of [Z X y] in blocks (once, or once per residual φ)."""
        self.A21Z = None  # other terms' Zᵀ Z₁, sparse
        if not self.terms:
            self.A11, self.A21D, self.A22 = np.zeros((0, 0, 0)), np.zeros((D.shape[1], 0, 0)), D.T @ D
            return
        first, rest = self.terms[0], self.terms[1:]
        self.A11, self.A21D = first.cross_products(D, zs[0])  # Z₁ᵀZ₁ (G1, k1, k1), [X y]ᵀZ₁ (p+1, G1, k1)
        if rest:
            z_rest = sparse.hstack([t.zt_sparse(z) for t, z in zip(rest, zs[1:])]).tocsc()
            self.A21Z = (z_rest.T @ first.zt_sparse(zs[0])).tocsr()
            q = self.q_rest
            self.A22 = np.empty((self.m, self.m), order="F")  # LAPACK's layout
            self.A22[:q, :q] = (z_rest.T @ z_rest).toarray()
            self.A22[:q, q:] = z_rest.T @ D
            self.A22[q:, :q] = self.A22[:q, q:].T
            self.A22[q:, q:] = D.T @ D
        else:
            self.A22 = self.raw_gram if D is self._raw else D.T @ D

    def _whiten(self, phi: np.ndarray) -> None:
        """Recompute the cross-products for residual parameters φ (cached)."""
        if self._whitened_at is not None and np.array_equal(phi, self._whitened_at):
            return
        if self._markov is not None:
            self._markov_stats(phi)
        else:
            self._whiten_rows(phi)
        self._whitened_at = np.array(phi, copy=True)

    def _markov_stats(self, phi: np.ndarray) -> None:
        """Cross-products from AR(1)-type lag statistics: O(groups) per φ (rside.MarkovStatistics)."""
        self.A22, zcols, self._log_det_r = self._markov.gram(self.residual, phi)
        md = self.p + 1
        self.A21Z = None
        if self.terms:
            self.A11 = np.ascontiguousarray(zcols[:, md:, :])  # contiguous: faster batched kernels
            self.A21D = np.ascontiguousarray(zcols[:, :md, :].transpose(1, 0, 2))

    def _whiten_rows(self, phi: np.ndarray) -> None:
        widths = [self._raw.shape[1]] + [t.k for t in self.terms]
        W, self._log_det_r = self.residual.whiten(phi, np.column_stack([self._raw] + [t.z for t in self.terms]))
        parts = np.split(W, np.cumsum(widths)[:-1], axis=1)
        self._stats(parts[0], parts[1:])

    def _weighted(self, A: np.ndarray) -> np.ndarray:
        """Rows of [X y] scaled by √(w_j w_i|j); with z scaled by √w_i|j, the cross-products are
        Σ w_i|j z zᵀ per cluster and √w_j-scaled [X y]ᵀZ blocks, so that the Schur complement
        and penalized RSS are the w_j-weighted sums of the clusters' (see design.weights)."""
        return A if self._sqrt_w is None else A * self._sqrt_w

    def _centered_data(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """[X y] (column-major), centred around the means of its columns when X has ``_cons``.

        An equivalent reparametrization (X_c = X C with C unit triangular, so
        |R_X| and the deviance are unchanged) that avoids the cancellation in
        yᵀy − ...; :meth:`solve` and :meth:`vcov_beta` map back with C.
        """
        D = data_matrix(X, y)
        means = self._set_centering(D.mean(axis=0))
        if means is not None:
            D -= means
        return D

    def _set_centering(self, means: np.ndarray) -> np.ndarray | None:
        """C and the y shift for centring at ``means`` of [X y]; the means used (None: no constant)."""
        names = self.design.fixed.names
        self._C = np.eye(self.p)
        if "_cons" not in names:
            return None
        cons = names.index("_cons")
        means = np.array(means, dtype=float)
        means[cons] = 0.0
        self._C[cons, :] = -means[:self.p]
        self._C[cons, cons] = 1.0
        self._y_shift = means[-1]
        return means

    # --- parameters ------------------------------------------------------------
    @property
    def n_theta(self) -> int:
        """Length of the parameter vector: θ of every term, then residual φ."""
        return self.residual_slice.stop

    def theta_start(self) -> np.ndarray:
        """Each structure's default start (θ = 1, as lme4), or the one-way ANOVA estimates when
        every term is a random intercept (:meth:`_anova_start`): always for a lone intercept,
        and for several (crossed or nested) intercepts when their deviance is the lower; for a
        lone term with random slopes, the method-of-moments estimate (:meth:`_moment_start`)."""
        default = self.default_start()
        if self._intercept_absorbed():
            default[self._theta_slices[0]] = 0.0
        moments = self._moment_start(default)
        if moments is not None:
            return moments
        anova = self._anova_start()
        if anova is None:
            return default
        if len(anova) == 1 or self.objective(default) > self.objective(anova):  # the start last: kept factored
            return anova
        return default

    def _intercept_absorbed(self) -> bool:
        """A lone random intercept at the level of a residual structure whose span holds the
        constant matrix J (unstructured, banded and toeplitz with every lag): var(_cons) J + R is
        again such an R, so var(_cons) is not identified and the ML fit starts it at 0 (from
        θ = 1 the optimizer drifts along the flat direction, R toward singular)."""
        if self.residual is None or len(self.terms) != 1 or self.terms[0].k != 1:
            return False
        rd = self.design.residual
        eq = self.terms[0].equations[0]
        return (list(eq.names) == ["_cons"] and eq.group_key == rd.key and not rd.spec.correlation_only
                and getattr(self.residual.structure, "spans_constant", False))

    def default_start(self) -> np.ndarray:
        """Every structure's own start (θ = 1 for scales, as lme4), then the residual parameters'."""
        parts = [s.start() for t in self.terms for s in t.structures]
        return np.concatenate(parts + [self.residual.start() if self.residual else np.zeros(0)])

    def _moment_start(self, default: np.ndarray) -> np.ndarray | None:
        """θ₀ of a lone vector term (k ≥ 2, no weights; residual parameters at their default)
        by the method of moments of Swamy (1970, Econometrica 38(2)) on the OLS residuals e:
        per group b̂_g = A_g⁻¹s_g (A_g = Z_gᵀZ_g, s_g = Z_gᵀe), σ̂² = (RSS − Σ s_gᵀb̂_g)/(n − p − kG),
        Σ̂_b = Σ b̂_g b̂_gᵀ/G − σ̂² mean(A_g⁻¹), its eigenvalues floored at 1% of the largest;
        θ₀ from Σ̂_b/σ̂² (each structure's ``from_sigma``).  Groups with a near-singular A_g
        (fewer rows than k) are left out.  From the cross-products only."""
        if len(self.terms) != 1 or self.terms[0].k < 2 or self._group_w is not None \
                or self.design.weights is not None or (self.residual is not None and self._markov is None):
            return None
        if self.residual is not None:
            self._whiten(default[self.residual_slice])
        term, p, gram = self.terms[0], self.p, self.A22
        A, k = self.A11, self.terms[0].k
        scale = np.einsum("gii->g", A) / k + 1e-300
        try:
            L = batched.cholesky(A + 1e-10 * scale[:, None, None] * np.eye(k))
        except np.linalg.LinAlgError:  # a group whose z columns are all zero
            return None
        keep = np.all(np.diagonal(L, axis1=1, axis2=2) ** 2 > 1e-8 * scale[:, None], axis=1)
        G = int(keep.sum())
        ols = _ols(gram, p)
        dof = self.n_obs - p - k * G
        if ols is None or G < 2 * k or dof <= 0:
            return None
        beta, rss = ols
        s_g = (self.A21D[p] - (beta @ self.A21D[:p].reshape(p, -1)).reshape(self.A21D.shape[1:]))[keep]
        Linv = batched.tri_inverse(L[keep])
        A_inv = batched.matmul(Linv.transpose(0, 2, 1), Linv)
        b = batched.matvec(A_inv, s_g)
        sigma2 = (rss - np.sum(s_g * b)) / dof
        if not sigma2 > 0:
            return None
        cov = b.T @ b / G - sigma2 * A_inv.mean(axis=0)
        w, V = np.linalg.eigh((cov + cov.T) / 2)
        w = np.maximum(w, 0.01 * max(w.max(), 1e-12 * sigma2))
        rel = (V * w) @ V.T / sigma2
        theta = [st.from_sigma(rel[cs, cs]) for st, cs in zip(term.structures, term.col_slices)]
        out = np.concatenate(theta + [default[self.residual_slice]])
        lower, upper = self.theta_bounds()
        return np.clip(out, lower, upper)

    def _anova_start(self) -> np.ndarray | None:
        """θ₀,t = σ̂_b,t/σ̂_w,t from the one-way ANOVA of the OLS residuals on each term's groups,
        when every term is a random intercept without weights or residual structure (from the
        cross-products only): σ̂_w² = (RSS − B)/(n − G), σ̂_b² = (B/(G − 1) − σ̂_w²)/(n/G),
        B = Σ_g e_g²/n_g with e_g the groups' residual sums.  Near the optimum for a lone
        intercept (and for crossed factors that are far from balanced), so the optimizer needs
        few steps."""
        if not self.terms or self.residual is not None or self.design.weights is not None \
                or any(t.equations[0].names != ("_cons",) or t.n_params != 1 for t in self.terms):
            return None
        p, gram, q = self.p, self.raw_gram, self.q_rest
        sums = [self.A21D[:, :, 0]] + [self.A22[off, q:].T for off in self._rest_offsets]
        counts = [self.A11[:, 0, 0]] + [np.diag(self.A22)[off] for off in self._rest_offsets]
        ols = _ols(gram, p)
        if ols is None:
            return None
        (beta, rss), n = ols, float(self.n_obs)
        out = []
        for group_sums, n_g in zip(sums, counts):
            G = len(n_g)
            between = float(np.sum((group_sums[p] - beta @ group_sums[:p]) ** 2 / n_g))
            within = (rss - between) / max(n - G, 1.0)
            if G < 2 or not within > 0:
                return None
            sigma2_b = (between / (G - 1) - within) / (n / G)
            out.append(np.sqrt(sigma2_b / within) if sigma2_b > 0 else 0.1)
        return np.array(out)

    def theta_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.residual.bounds() if self.residual else (np.zeros(0), np.zeros(0))
        lower = np.concatenate([s.lower for t in self.terms for s in t.structures] + [lo])
        upper = np.concatenate([s.upper for t in self.terms for s in t.structures] + [hi])
        return lower, upper

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Λ template of each term."""
        return [t.lam(theta[s]) for t, s in zip(self.terms, self._theta_slices)]

    # --- the factorization -------------------------------------------------------
    def factor(self, theta: np.ndarray) -> Factor:
        """Blocked Cholesky factor of the penalized system at θ (MixedModels.jl ``updateL!``).

        The last factor is kept (without a residual structure, whose cross-products change with
        φ): the optimizer's last point is factored again for the results and the information."""
        theta = np.array(theta, dtype=float)  # a copy: the factor keeps it
        last = self.__dict__.get("_last_factor")
        if last is not None and np.array_equal(last.theta, theta):
            return last
        if self.residual is not None:
            self._whiten(theta[self.residual_slice])
        lams = self.lambdas(theta)
        if not self.terms:
            return self._factor_marginal(theta)
        L11, Tblk = _block_cholesky(self.A11, lams[0])
        md, G, k = self.A21D.shape
        L21D = batched.right_multiply(self.A21D, Tblk).reshape(md, G * k)
        if self.q_rest:
            L21Z = self._other_terms_rows(lams, Tblk)
            pattern = self.schur_pattern()
            if pattern is not None:  # scalar terms: the lower triangle on a pattern found once
                sc = self.scalar_scale(lams)
                M22 = self.A22 * sc                               # Λ̃ (A₂₂ − A₂ diag(T²) A₂ᵀ) Λ̃
                M22 *= sc[:, None]
                M22.ravel(order="F")[pattern.flat] -= pattern.values(Tblk.ravel() ** 2) * pattern.scale(sc)
            else:
                M22 = self._scale_rest(self._scale_rest(self.A22, lams[1:]).T, lams[1:])
                zd = np.asarray(L21Z @ L21D.T)
                q = self.q_rest
                M22[:q, :q] -= (L21Z @ L21Z.T).toarray()
                M22[:q, q:] -= zd
                M22[q:, :q] -= zd.T
                M22[q:, q:] -= L21D @ L21D.T
            M22[self._rest_diag, self._rest_diag] += 1.0
        else:
            L21Z, M22 = None, self.A22 - L21D @ L21D.T
        L22, info = dpotrf(M22, lower=1, clean=1, overwrite_a=1)
        if info:
            raise np.linalg.LinAlgError("the penalized system is not positive definite")
        d22 = np.diag(L22)
        log_l11 = batched.log_det_tri(L11)
        if self._group_w is not None:  # cluster weights: Σ_j w_j log|L_j|²
            log_l11 = log_l11 * self._group_w
        log_det_z = 2 * log_l11.sum() + 2 * np.log(d22[:self.q_rest]).sum()
        log_det_x = 2 * np.log(d22[self.q_rest:-1]).sum()
        f = Factor(theta, L11, L21Z, L21D, L22, log_det_z, log_det_x, d22[-1] ** 2, self._log_det_r)
        if self.residual is None:
            self._last_factor = f
        return f

    def _factor_marginal(self, theta: np.ndarray) -> Factor:
        """No random effects (a residual structure alone): L = chol([X y]ᵀ[X y])."""
        L22, info = dpotrf(self.A22.copy(), lower=1, clean=1)
        if info:
            raise np.linalg.LinAlgError("XᵀX is not positive definite")
        d = np.diag(L22)
        return Factor(theta, np.zeros((0, 0, 0)), None, np.zeros((self.p + 1, 0)), L22, 0.0,
                      2 * np.log(d[:-1]).sum(), d[-1] ** 2, self._log_det_r)

    def _other_terms_rows(self, lams: list[np.ndarray], Tblk: np.ndarray) -> sparse.csr_matrix:
        """L₂₁ rows of the other terms, Λ̃ᵀ A₂₁ T with T = blockdiag(T_g): a row and a column
        scaling of A₂₁'s nonzeros when every term is scalar (the common crossed case)."""
        A = self.A21Z
        if self.terms[0].k == 1 and all(t.k == 1 for t in self.terms[1:]):
            rows = self.__dict__.get("_a21z_rows")
            if rows is None:
                rows = self._a21z_rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
            scale = self._scalar_rest_scale(lams[1:])
            return sparse.csr_matrix((A.data * scale[rows] * Tblk.ravel()[A.indices], A.indices, A.indptr),
                                     shape=A.shape)
        T = self.block_diagonal(Tblk)
        lam_t = self._rest_lambda_t(lams[1:])
        return (lam_t[:self.q_rest, :self.q_rest] @ (A @ T)).tocsr()

    def schur_pattern(self) -> SchurPattern | None:
        """The pattern of L₂₁L₂₁ᵀ when every term is scalar and the cross-products are fixed (no
        residual structure), and it is not much larger than the dense m × m block (cached)."""
        if "_schur" in self.__dict__:
            return self._schur
        self._schur = None
        if self.residual is None and self.A21Z is not None and all(t.k == 1 for t in self.terms):
            A2 = sparse.vstack([self.A21Z, sparse.csr_matrix(self.A21D[:, :, 0])]).tocsc()
            if SchurPattern.size(A2) <= self.m ** 2 + 10 ** 6:
                self._schur = SchurPattern(A2)
        return self._schur

    def scalar_scale(self, lams: list[np.ndarray]) -> np.ndarray:
        """The diagonal of Λ̃ (other terms' λ_t, then 1 on X and y) when every term is scalar."""
        return np.concatenate([self._scalar_rest_scale(lams[1:]), np.ones(self.m - self.q_rest)])

    def _scale_rest(self, A: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """A Λ̃ for Λ̃ = blockdiag(I_G ⊗ Λ_t over the other terms, I): tall products per term
        (a column scaling when every other term is scalar, the common crossed case)."""
        if all(t.k == 1 for t in self.terms[1:]):
            return A * np.concatenate([self._scalar_rest_scale(lams), np.ones(A.shape[1] - self.q_rest)])
        out = A.copy()
        for t, lam, off in zip(self.terms[1:], lams, self._rest_offsets):
            block = A[:, off].reshape(A.shape[0] * t.n_groups, t.k)
            out[:, off] = (block @ lam).reshape(A.shape[0], t.q)
        return out

    def _scalar_rest_scale(self, lams: list[np.ndarray]) -> np.ndarray:
        """The diagonal of Λ̃ over the other terms' rows when they are all scalar."""
        return np.concatenate([np.full(t.n_groups, lam[0, 0]) for t, lam in zip(self.terms[1:], lams)])

    def _rest_lambda_t(self, lams: list[np.ndarray]) -> sparse.csr_matrix:
        """Block-diagonal Λ̃ᵀ over the other terms' columns, identity on X and y."""
        blocks = [sparse.kron(sparse.identity(t.n_groups), lam.T) for t, lam in zip(self.terms[1:], lams)]
        blocks.append(sparse.identity(self.m - self.q_rest))
        return sparse.block_diag(blocks, format="csr")

    # --- the criterion -----------------------------------------------------------
    @property
    def dof(self) -> int:
        """n for ML, n − p for REML."""
        return self.n_obs - self.p if self.reml else self.n_obs

    def deviance(self, f: Factor) -> float:
        """Profiled deviance, JSS eq. 34 (ML) and eq. 41 (REML).

        .. math:: d(θ) = \\log|L_θ|^2 [+ \\log|R_X|^2] + ν (1 + \\log(2π r^2(θ)/ν))
        """
        nu = self.dof
        extra = f.log_det_x if self.reml else 0.0
        return f.log_det_z + extra + f.log_det_r + nu * (1 + np.log(2 * np.pi * f.pwrss / nu))

    def objective(self, theta: np.ndarray) -> float:
        """−2 × profiled log (restricted) likelihood at θ; the optimizer's target."""
        try:
            return self.deviance(self.factor(theta))
        except np.linalg.LinAlgError:
            return np.inf

    def loglik_at(self, f: Factor, sigma2: float) -> float:
        """Log (restricted) likelihood at θ and σ², with β profiled out.

        .. math:: ℓ = -\\tfrac12[\\log|L_θ|^2 (+\\log|R_X|^2) + ν\\log(2πσ^2) + r^2(θ)/σ^2]
        """
        extra = f.log_det_x if self.reml else 0.0
        return -0.5 * (f.log_det_z + extra + f.log_det_r + self.dof * np.log(2 * np.pi * sigma2)
                       + f.pwrss / sigma2)

    # --- estimates at θ ----------------------------------------------------------
    def sigma2(self, f: Factor) -> float:
        """σ̂² = r²/ν."""
        return f.pwrss / self.dof

    def solve(self, f: Factor) -> tuple[np.ndarray, list[np.ndarray]]:
        """β̂ and the conditional modes b̂ (per term, shape (G, k)) at θ.

        Back-substitution in Lᵀ [u; β] = ℓ, where ℓ is the last row of L
        (JSS §3.5), then b = Λu.
        """
        x2, u1 = self.spherical(f)
        beta = self._C @ x2[self.q_rest:]
        if "_cons" in self.design.fixed.names:
            beta[self.design.fixed.names.index("_cons")] += self._y_shift
        if not self.terms:
            return beta, []
        lams = self.lambdas(f.theta)
        b = [u1 @ lams[0].T]
        for t, lam, off in zip(self.terms[1:], lams[1:], self._rest_offsets):
            u = x2[off.start:off.stop].reshape(t.n_groups, t.k)
            b.append(u @ lam.T)
        return beta, b

    def spherical(self, f: Factor) -> tuple[np.ndarray, np.ndarray | None]:
        """Solution of Lᵀ [u; β] = ℓ in the model's own (centred) coordinates:
        (the other terms' u and β, stacked) and the first term's u as (G, k) (once per factor)."""
        if "spherical" not in f.cache:
            f.cache["spherical"] = self._spherical(f)
        return f.cache["spherical"]

    def _spherical(self, f: Factor) -> tuple[np.ndarray, np.ndarray | None]:
        L22 = f.L22  # [[L, 0], [ℓᵀ, d]]: L22ᵀ z = d e_m gives z = (−L⁻ᵀℓ, 1), with no copy of L
        rhs = np.zeros(len(L22))
        rhs[-1] = L22[-1, -1]
        x2 = -_tri_solve(L22, rhs, transpose=True)[:-1]
        if not self.terms:
            return x2, None
        rhs1 = f.L21D[-1] - f.L21D[:-1].T @ x2[self.q_rest:]
        if f.L21Z is not None:
            rhs1 = rhs1 - f.L21Z.T @ x2[:self.q_rest]
        G, k, _ = f.L11.shape
        Linv = f.l11_inverse()
        u1 = batched.matvec(Linv.transpose(0, 2, 1), rhs1.reshape(G, k))   # L₁₁⁻ᵀ rhs per group
        return x2, u1

    def vcov_beta(self, f: Factor, sigma2: float) -> np.ndarray:
        """Var(β̂) = σ² (R_X R_Xᵀ)⁻¹ = (Xᵀ V⁻¹ X)⁻¹."""
        RX = f.L22[self.q_rest:-1, self.q_rest:-1]
        inv = _tri_solve(RX, np.eye(self.p))
        return sigma2 * self._C @ inv.T @ inv @ self._C.T


def _ols(gram: np.ndarray, p: int) -> tuple[np.ndarray, float] | None:
    """β̂ and RSS of the regression of y on X from [X y]ᵀ[X y] (None if XᵀX is singular)."""
    try:
        beta = spd_solve(gram[:p, :p], gram[:p, p]) if p else np.zeros(0)
    except np.linalg.LinAlgError:
        return None
    return beta, gram[p, p] - beta @ gram[:p, p]


def data_matrix(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[X y] in column-major order: every later pass over a column reads contiguous memory."""
    D = np.empty((len(y), X.shape[1] + 1), order="F")
    D[:, :-1] = X
    D[:, -1] = y
    return D


def _tri_solve(L: np.ndarray, b: np.ndarray, transpose: bool = False) -> np.ndarray:
    """Solve L x = b (or Lᵀ x = b) for lower-triangular L with LAPACK's trtrs (scipy's
    solve_triangular wrapper costs ~0.2 ms per call, more than the fit of a small model)."""
    if not len(L):  # nothing to solve (no fixed effects and no other terms); LAPACK rejects n = 0
        return np.zeros_like(b, dtype=float)
    x, info = dtrtrs(np.asarray(L, order="F"), b, lower=1, trans=1 if transpose else 0)
    if info:
        raise np.linalg.LinAlgError("singular triangular factor")
    return x


def _block_cholesky(A11: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L₁₁ = chol(ΛᵀA_gΛ + I) per group and T_g = Λ L_g⁻ᵀ, batched over groups."""
    k = lam.shape[0]
    if k == 1:  # scalar term: the blocks are numbers
        L = np.sqrt(lam[0, 0] ** 2 * A11 + 1.0)
        return L, lam[0, 0] / L
    M = batched.congruence(A11, lam)
    M += np.eye(k)
    L = batched.cholesky(M)
    G = A11.shape[0]
    # T_g = Λ L_g⁻ᵀ, formed as (L_g⁻¹ Λᵀ)ᵀ with one tall matrix product
    return L, (batched.tri_inverse(L).reshape(G * k, k) @ lam.T).reshape(G, k, k).transpose(0, 2, 1)


def _offsets(sizes: list[int]) -> list[slice]:
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


@dataclass(frozen=True)
class Statistics:
    """Sufficient statistics of a one-term LMM, [X y] centred at ``means`` (``_cons`` not):
    A11 (G, k, k) = Σ_g z zᵀ, A21D (p+1, G, k) = Σ_g [X y] zᵀ, A22 = [X y]ᵀ[X y]."""

    n_obs: float
    means: np.ndarray
    A11: np.ndarray
    A21D: np.ndarray
    A22: np.ndarray


def equation_blocks(model: LinearMixedModel) -> list[tuple[object, object, slice]]:
    """(equation, structure, slice of θ) for each equation, in the spec's order (cached)."""
    cached = model.__dict__.get("_equation_blocks")
    if cached is not None:
        return cached
    out = []
    for term, tslice in zip(model.terms, model._theta_slices):
        for eq, struct, ps in zip(term.equations, term.structures, term.param_slices):
            out.append((eq, struct, slice(tslice.start + ps.start, tslice.start + ps.stop)))
    model._equation_blocks = sorted(out, key=lambda e: model.design.equations.index(e[0]))
    return model._equation_blocks
