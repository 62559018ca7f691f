"""What GLMM postestimation derives once from a fit: the model at the estimates,
the predicted random effects and their standard deviations.

Nothing is refitted.  The GLMM core is rebuilt from ``res.design`` with the
family, response and offset of the fit (remembered by the command function,
see :meth:`~multilevel.glmm.results.GLMMResults._remember_inputs`), PIRLS is
run once at (β̂, ξ̂, θ̂), and the results are cached on the (frozen) results.

Two predictions of the random effects ([ME] meglm postestimation, Methods
and formulas):

* **ebmodes** — the conditional modes b̃ = Λû (PIRLS), with the curvature
  standard deviations sqrt diag Λ (H⁻¹)_gg Λᵀ, H = ΛᵀZᵀWZΛ + I at û (the
  negative inverse Hessian of the log posterior; lme4's ``condVar``);
* **ebmeans** — the posterior means E(b_g | y) and SDs, by mean–variance
  adaptive Gauss–Hermite quadrature at the estimates (one grouping factor,
  any number of effects; the quadrature of :mod:`multilevel.glmm.quadrature`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..spec.errors import DataError, SpecError
from ._state import cached, design_of


@dataclass(frozen=True)
class ModelInputs:
    """The family object, the response in the family's coding and the offset of a fit."""

    family: object
    y: np.ndarray
    offset: np.ndarray


def inputs(res) -> ModelInputs:
    """Family, y and offset of the fit: remembered at fit time, else rebuilt from the results."""
    return cached(res, "glmm_inputs", lambda: _rebuild_inputs(res))


def _rebuild_inputs(res) -> ModelInputs:
    from ..glmm.families import Ordinal, make_family

    design = design_of(res)
    opts = res.options or {}
    if isinstance(opts.get("offset"), str) or isinstance(opts.get("exposure"), str):
        raise DataError("these results do not carry the offset/exposure of the fit; refit with "
                        "ml.mepoisson(...) / ml.meglm(...) of this version to use predict")
    y = design.y
    if res.family == "ordinal":
        y, levels = Ordinal.codes(y)
        family = make_family("ordinal", res.link, levels=levels)
    else:
        trials = None
        if res.family == "binomial":
            raise DataError("these results do not carry the binomial trials of the fit; refit to use predict")
        family = make_family(res.family, res.link, trials=trials, dispersion=res.dispersion or "mean")
    family.check(y)
    return ModelInputs(family, y, np.zeros(design.n))


def xi_of(res) -> np.ndarray:
    """Ancillary parameters ξ̂ in Stata's metric (cut points, ln α, ln s)."""
    return np.array([a.estimate for a in res.ancillary], dtype=float)


def model_and_modes(res):
    """(GeneralizedLinearMixedModel, Modes at the estimates), built once."""
    def build():
        from ..glmm.model import GeneralizedLinearMixedModel

        inp = inputs(res)
        model = GeneralizedLinearMixedModel(design_of(res), inp.family, inp.y, inp.offset, "laplace", 1)
        modes = model.modes(res.fixed.coef, xi_of(res), res.theta)
        return model, modes
    return cached(res, "glmm_model", build)


# --- predicted random effects --------------------------------------------------------------
@dataclass(frozen=True)
class Effects:
    """Per-equation (G, k) predictions of b and their posterior SDs, and the per-term
    (G, k) predictions (for building η), for one choice of ebmeans/ebmodes."""

    kind: str
    means: tuple[np.ndarray, ...]     # per equation, in the order of res.equations
    sds: tuple[np.ndarray, ...]
    covs: tuple[np.ndarray, ...]      # per equation, (G, k, k) posterior covariances


def effects(res, kind: str = "ebmeans", intpoints: int | None = None) -> Effects:
    """Predicted random effects (``ebmeans`` or ``ebmodes``) with SDs (cached per choice)."""
    if kind not in ("ebmeans", "ebmodes"):
        raise ValueError(f"random effects are predicted as 'ebmeans' or 'ebmodes', not {kind!r}")
    points = res.intpoints if intpoints is None else int(intpoints)
    if points < 1:
        raise SpecError(f"intpoints({points}) must be at least 1")
    model, _ = model_and_modes(res)
    if kind == "ebmeans" and points > 1 and len(model.terms) > 1:
        raise SpecError("ebmeans (posterior means by adaptive quadrature) are available for one grouping "
                        "factor; for nested or crossed levels use conditional='ebmodes' (the conditional "
                        "modes, as intmethod(laplace)) or intpoints=1")
    if kind == "ebmodes" or points == 1:   # one node at the mode: the means are the modes
        return cached(res, "glmm_ebmodes", lambda: _per_equation(res, "ebmodes", _mode_curvature(res)))
    return cached(res, f"glmm_ebmeans_{points}",
                  lambda: _per_equation(res, "ebmeans", _posterior_moments(res, points)))


def _per_equation(res, kind: str, per_term) -> Effects:
    """Split per-term b-space means and covariances into the equations of ``res``."""
    model, _ = model_and_modes(res)
    order = design_of(res).equations
    means, covs = [None] * len(order), [None] * len(order)
    for term, (m, V) in zip(model.terms, per_term):
        for eq, cs in zip(term.equations, term.col_slices):
            i = next(j for j, e in enumerate(order) if e is eq)
            means[i], covs[i] = m[:, cs], V[:, cs, cs]
    sds = tuple(np.sqrt(np.clip(np.diagonal(c, axis1=1, axis2=2), 0.0, None)) for c in covs)
    return Effects(kind, tuple(means), sds, tuple(covs))


def _mode_curvature(res) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per term: modes b̃ = Λû (G, k) and Λ (H⁻¹)_gg Λᵀ (G, k, k) from the blocked factor.

    With H = LLᵀ, L = [[L₁₁, 0], [L₂₁, L₂₂]] (first term block diagonal),
    (H⁻¹)₁₁ = L₁₁⁻ᵀL₁₁⁻¹ + MᵀM with M = L₂₂⁻¹L₂₁L₁₁⁻¹, and (H⁻¹)₂₂ = L₂₂⁻ᵀL₂₂⁻¹.
    """
    model, modes = model_and_modes(res)
    F = modes.factor
    lams = model.lambdas(res.theta)
    us = model.system.split(modes.u)
    t1 = model.terms[0]
    Li = F.L11inv                                             # (G₁, k₁, k₁)
    V1 = np.einsum("gba,gbc->gac", Li, Li)
    out_u = [V1]
    if F.L22 is not None:
        qr = F.L22.shape[0]
        L21 = np.array([F.L21.rmatvec(e) for e in np.eye(qr)])    # (q_r, q₁) dense
        N = np.einsum("rga,gab->rgb", L21.reshape(qr, t1.n_groups, t1.k), Li)
        M = scipy.linalg.solve_triangular(F.L22, N.reshape(qr, -1), lower=True).reshape(qr, t1.n_groups, t1.k)
        out_u[0] = V1 + np.einsum("rga,rgb->gab", M, M)
        L22inv = scipy.linalg.solve_triangular(F.L22, np.eye(qr), lower=True)
        V22 = L22inv.T @ L22inv
        off = 0
        for t in model.terms[1:]:
            idx = off + np.arange(t.q).reshape(t.n_groups, t.k)
            out_u.append(V22[idx[:, :, None], idx[:, None, :]])
            off += t.q
    return [(u @ lam.T, np.einsum("ab,gbc,dc->gad", lam, V, lam)) for u, V, lam in zip(us, out_u, lams)]


def _posterior_moments(res, points: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Posterior means and covariances of b_g (one term) by mean–variance adaptive quadrature."""
    from ..glmm.quadrature import GroupIntegrator

    model, modes = model_and_modes(res)
    term = model.terms[0]
    lam = model.lambdas(res.theta)[0]
    family, y, xi = model.family, model.y, xi_of(res)

    def ll(eta):
        return family.loglik(y if eta.ndim == 1 else y[:, None], eta, xi)

    integ = GroupIntegrator(term, points)
    _, m, C = integ.mean_variance(model.eta0(res.fixed.coef), lam, modes, ll)
    V = np.einsum("gab,gcb->gac", C, C)
    return [(m @ lam.T, np.einsum("ab,gbc,dc->gad", lam, V, lam))]


def remember(res, family, y: np.ndarray, offset: np.ndarray) -> None:
    """Keep the family object, coded response and offset of a fit for postestimation."""
    cached(res, "glmm_inputs", lambda: ModelInputs(family, np.asarray(y, dtype=float),
                                                   np.asarray(offset, dtype=float)))
