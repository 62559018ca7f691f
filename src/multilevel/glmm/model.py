"""The generalized linear mixed model: its parameters and its objective.

η = offset + Xβ + ZΛ(θ)u,  u ~ N(0, I),  y_i | u ~ f(y_i | η_i, ξ)

where ξ are the family's ancillary parameters (cut points, ln α, ln s).
The marginal log likelihood is approximated by Laplace or (adaptive)
Gauss–Hermite quadrature (:mod:`.quadrature`) around the conditional modes
found by PIRLS (:mod:`.pirls`).  Random-effects terms, their Λ(θ)
templates and covariance structures are the LMM's
(:mod:`multilevel.lmm.terms`), so the GLMM shares the LMM's description of
the random part and only adds the response.

Parameter vectors
-----------------
* optimizer:  x = (β, ξ in the family's optimizer metric, θ)
* reporting:  ψ = (β, ξ in Stata's metric, φ) where φ stacks each
  equation's Stata-metric parameters (log SDs, atanh correlations); SEs
  come from the observed information in ψ, as Stata's.
"""
from __future__ import annotations

import numpy as np

from ..lmm.model import _offsets, equation_blocks
from ..lmm.terms import make_terms
from .pirls import PenalizedSystem, pirls
from .nested import NestedIntegrator, nesting
from .quadrature import GroupIntegrator

METHODS = ("laplace", "mcaghermite", "mvaghermite", "ghermite")


class GeneralizedLinearMixedModel:
    """A GLMM on a design, ready to evaluate its (approximate) log likelihood.

    Attributes
    ----------
    design:   the :class:`~multilevel.design.Design`
    family:   a family from :mod:`.families` (already checked against y)
    y:        the response as the family takes it (ordinal: codes 0..K−1)
    offset:   n-vector added to η (``offset()``, ln ``exposure()``)
    terms:    random-effects terms, most groups first (LMM terms)
    method:   one of :data:`METHODS`; ``points`` nodes per dimension
    """

    def __init__(self, design, family, y: np.ndarray, offset: np.ndarray | None = None,
                 method: str = "mvaghermite", points: int = 7):
        self.design = design
        self.family = family
        self.y = y
        self.X = design.X
        self.n, self.p = self.X.shape
        self.offset = np.zeros(self.n) if offset is None else offset
        self.terms = make_terms(design.equations)
        self._theta_slices = _offsets([t.n_params for t in self.terms])
        self.system = PenalizedSystem(self.terms, self.n)
        self.method = "laplace" if points == 1 and method != "ghermite" else method
        self.points = points
        self.integrator = GroupIntegrator(self.terms[0], points) \
            if self.method != "laplace" and len(self.terms) == 1 else None
        self.nested = None
        if self.method != "laplace" and len(self.terms) > 1:
            levels = nesting(self.terms)
            if levels is not None:
                self.nested = NestedIntegrator(levels, points, self.method)
        self._last = None  # (β, Λs, Modes) of the last PIRLS: its start at the next point
        self.theta0: np.ndarray | None = None   # start θ given by the user (:mod:`.start`)
        self.dense = False   # PIRLS factors H dense (small q, several terms): set by :mod:`.newton`
        self.n_extra = family.n_extra

    # --- parameters ------------------------------------------------------------------
    @property
    def n_theta(self) -> int:
        return sum(t.n_params for t in self.terms)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return [t.lam(theta[s]) for t, s in zip(self.terms, self._theta_slices)]

    def theta_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lower = np.concatenate([s.lower for t in self.terms for s in t.structures])
        upper = np.concatenate([s.upper for t in self.terms for s in t.structures])
        return lower, upper

    def theta_start(self) -> np.ndarray:
        """The start θ: the user's (``theta0``), else each structure's start halved."""
        if self.theta0 is not None:
            return self.theta0.copy()
        return 0.5 * np.concatenate([s.start() for t in self.terms for s in t.structures])

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Optimizer vector -> (β, ξ in Stata's metric, θ)."""
        p, e = self.p, self.n_extra
        return x[:p], self.family.from_opt(x[p:p + e]), x[p + e:]

    # --- the likelihood ----------------------------------------------------------------
    def eta0(self, beta: np.ndarray) -> np.ndarray:
        return self.offset + self.X @ beta

    def modes(self, beta, xi, theta, dense: bool = False):
        """PIRLS at (β, ξ, θ), started from the last modes moved to first order (:meth:`_predict`);
        ``dense`` (or the model's ``dense``): H factored dense (:func:`.pirls.pirls`)."""
        lams = self.lambdas(theta)
        m = pirls(self.system, self.family, self.y, self.eta0(beta), lams, xi, self._predict(beta, xi, lams),
                  dense=dense or self.dense)
        if np.all(np.isfinite(m.u)):
            self._last = (np.array(beta, dtype=float), lams, m)
        return m

    def _predict(self, beta, xi, lams) -> np.ndarray | None:
        """û + H⁻¹r from the last modes, r the change of ∇_u g = ΛᵀZᵀℓ′ − u to first order in
        (β, Λ) (implicit function theorem; the change in ξ is left out):
        r = ΔΛᵀZᵀℓ′ − ΛᵀZᵀW(XΔβ + ZΔΛû)."""
        if self._last is None:
            return None
        beta0, lams0, m = self._last
        _, d1, d2 = self.family.derivs(self.y, m.eta, xi)
        dlams = [a - b for a, b in zip(lams, lams0)]
        deta = self.X @ (beta - beta0) + self.system.zlam(m.u, dlams)
        r = self.system.zlam_t(d1, dlams) - self.system.zlam_t(np.maximum(-d2, 0.0) * deta, lams0)
        du = m.factor.solve(r)
        return m.u + du if np.all(np.abs(du) < 1.0) else m.u   # far steps: from the last modes

    def loglik(self, beta, xi, theta, method: str | None = None) -> float:
        """The approximate marginal log likelihood at (β, ξ in Stata's metric, θ)."""
        method = method or self.method
        m = self.modes(beta, xi, theta)
        if method != "laplace" and self.nested is not None:
            return self._nested_loglik(beta, xi, theta, m)
        if method == "laplace" or self.integrator is None:
            return m.laplace
        lam = self.lambdas(theta)[0]
        eta0 = self.eta0(beta)

        def ll(eta):
            return self.family.loglik(self.y if eta.ndim == 1 else self.y[:, None], eta, xi)

        if method == "mcaghermite":
            return self.integrator.mode_curvature(eta0, lam, m, ll)
        if method == "ghermite":
            return self.integrator.non_adaptive(eta0, lam, ll)
        return self.integrator.mean_variance(eta0, lam, m, ll)[0]

    def _nested_loglik(self, beta, xi, theta, m) -> float:
        """Quadrature level by level (:mod:`.nested`) around the joint modes."""
        level = [self.terms.index(t) for t in self.nested.terms]
        lams, us = self.lambdas(theta), self.system.split(m.u)
        _, _, d2 = self.family.derivs(self.y, m.eta, xi)

        def ll(eta):
            return self.family.loglik(self.y[:, None], eta, xi)

        return self.nested.loglik(self.eta0(beta), [lams[i] for i in level], [us[i] for i in level],
                                  np.maximum(-d2, 0.0), ll)

    def beta_information(self, beta, xi, theta) -> np.ndarray:
        """Information about β with u integrated out (Laplace, log|H| held fixed):
        XᵀWX − XᵀWZΛ H⁻¹ ΛᵀZᵀWX at the conditional modes (lme4's R_XᵀR_X)."""
        m = self.modes(beta, xi, theta)
        _, _, d2 = self.family.derivs(self.y, m.eta, xi)
        w = np.maximum(-d2, 0.0)
        lams = self.lambdas(theta)
        V = np.column_stack([self.system.zlam_t(w * self.X[:, j], lams) for j in range(self.p)])
        HiV = np.column_stack([m.factor.solve(V[:, j]) for j in range(self.p)])
        return self.X.T @ (self.X * w[:, None]) - V.T @ HiV

    def objective(self, x: np.ndarray, method: str | None = None) -> float:
        """−2 × approximate log likelihood at the optimizer vector x."""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                value = -2.0 * self.loglik(*self.split(np.asarray(x, dtype=float)), method=method)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf
        return value if np.isfinite(value) else np.inf

    # --- the reporting metric ------------------------------------------------------------
    def natural(self, theta: np.ndarray) -> np.ndarray:
        """φ: each equation's Σ = ΛΛᵀ in its structure's Stata metric."""
        parts = []
        for _, struct, sl in equation_blocks(self):
            lam = struct.to_lambda(theta[sl])
            with np.errstate(divide="ignore", invalid="ignore"):
                parts.append(struct.natural(lam @ lam.T))
        return np.concatenate(parts)

    def theta_of(self, phi: np.ndarray) -> np.ndarray:
        """θ of a φ vector (inverse of :meth:`natural`)."""
        theta = np.zeros(self.n_theta)
        start = 0
        for _, struct, sl in equation_blocks(self):
            theta[sl] = struct.from_sigma(struct.from_natural(phi[start:start + struct.n_natural]))
            start += struct.n_natural
        return theta

    def loglik_reporting(self, psi: np.ndarray, phi_fixed: np.ndarray, free: np.ndarray) -> float:
        """Log likelihood at ψ = (β, ξ, φ_free); φ entries not free stay at ``phi_fixed``."""
        p, e = self.p, self.n_extra
        phi = phi_fixed.copy()
        phi[free] = psi[p + e:]
        return self.loglik(psi[:p], psi[p:p + e], self.theta_of(phi))
