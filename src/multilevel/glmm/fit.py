"""Fit a GLMM: fixed-only start, variance start, joint optimization, information.

The sequence follows Stata's ``startvalues(fixedonly)`` and lme4's two
stages: (1) the model without random effects gives β and ξ; (2) θ alone is
optimized by Laplace with β, ξ held there; (3) all parameters are optimized
jointly on the requested integration rule, with β whitened by the
fixed-only information so that BOBYQA's trust region is well scaled.
Standard errors are from the observed information of the approximate log
likelihood in Stata's metric (β, ξ, log SDs/atanh correlations), with the
delta method to variances ([ME] meglm, Methods and formulas).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..inference.information import NaturalFit, hessian, richardson_hessian
from ..inference.results import FixedEffects
from ..inference.tests import lr_vs_linear, wald_fixed
from ..lmm.fit import _equations, _sample_notes
from ..lmm.model import equation_blocks
from ..optimize import OptSummary, minimize
from .fastfit import fast_fit
from .glm import GLMFit, fit_glm
from .model import GeneralizedLinearMixedModel
from .results import Ancillary, GLMMResults

FTOL = 1e-11       # BOBYQA's relative tolerance on −2 log L; a Newton step polishes the rest
BOUNDARY = -15.0   # a log SD below this is a variance at zero: left out of the information


def optimize(model: GeneralizedLinearMixedModel, glm: GLMFit, backend: str = "nlopt"):
    """Stages (2) and (3): θ alone by Laplace, then everything jointly.

    Returns the :class:`OptSummary` (final = optimizer vector x) and the
    whitening matrix A of (β, ξ).
    """
    p, e = model.p, model.n_extra
    xi_opt = model.family.to_opt(glm.xi)
    lower, upper = model.theta_bounds()

    def theta_only(theta):
        return model.objective(np.concatenate([glm.beta, xi_opt, theta]), method="laplace")

    first = _minimize(theta_only, model.theta_start(), lower, upper, backend=backend,
                     ftol_rel=1e-8, xtol_rel=1e-6)
    A = _whitening(model, glm, first.final)
    x0 = np.concatenate([glm.beta, xi_opt])

    def joint(z, method=None):
        return model.objective(np.concatenate([x0 + A @ z[:p + e], z[p + e:]]), method=method)

    z0 = np.concatenate([np.zeros(p + e), first.final])
    zl = np.concatenate([np.full(p + e, -np.inf), lower])
    zu = np.concatenate([np.full(p + e, np.inf), upper])
    n_lap = 0
    if model.nested is not None:    # quadrature over nested levels is costly: start at the Laplace optimum
        lap = _minimize(lambda z: joint(z, "laplace"), z0, zl, zu, backend=backend, ftol_rel=1e-10, xtol_rel=1e-7)
        z0, n_lap = lap.final, lap.n_evals
    opt = _minimize(joint, z0, zl, zu, backend=backend, ftol_rel=FTOL, xtol_rel=1e-8)
    z = opt.final
    opt.final = np.concatenate([x0 + A @ z[:p + e], z[p + e:]])
    opt.initial = np.concatenate([x0, first.initial])
    opt.n_evals += first.n_evals + n_lap
    return opt, A


def _minimize(f, x0, lower, upper, backend: str, **tol) -> OptSummary:
    """:func:`~multilevel.optimize.minimize`, retried with scipy's L-BFGS-B if nlopt gives up
    (BOBYQA raises on round-off when the likelihood is flat, e.g. under separation)."""
    try:
        return minimize(f, x0, lower, upper, backend=backend, **tol)
    except Exception as exc:  # nlopt.RoundoffLimited and friends
        if backend == "scipy":
            raise
        warnings.warn(f"nlopt stopped ({type(exc).__name__}); retrying with scipy", RuntimeWarning, stacklevel=3)
        return minimize(f, x0, lower, upper, backend="scipy", **tol)


def _whitening(model: GeneralizedLinearMixedModel, glm: GLMFit, theta: np.ndarray) -> np.ndarray:
    """A with AAᵀ ≈ Var(β̂, ξ̂): β from the mixed model's information at θ
    (:meth:`~.model.GeneralizedLinearMixedModel.beta_information`), ξ from the
    fixed-only model, so that BOBYQA's trust region has the right scale."""
    fam, p, e = model.family, model.p, model.n_extra
    A = np.eye(p + e)
    try:
        A[:p, :p] = np.linalg.cholesky(np.linalg.inv(model.beta_information(glm.beta, glm.xi, theta)))
    except np.linalg.LinAlgError:
        pass
    if e:
        z0 = np.concatenate([glm.beta, fam.to_opt(glm.xi)])

        def ll(z):
            return fam.loglik(model.y, model.offset + model.X @ z[:p], fam.from_opt(z[p:])).sum()

        H = richardson_hessian(ll, z0, h=1e-3)[p:, p:]
        try:
            A[p:, p:] = np.linalg.cholesky(np.linalg.inv(-H))
        except np.linalg.LinAlgError:
            pass
    return A


def information(model: GeneralizedLinearMixedModel, x: np.ndarray, beta_scale: np.ndarray):
    """Observed information in Stata's metric ψ = (β, ξ, φ_free), with one Newton step.

    The Hessian is taken by central differences in units of each
    parameter's (approximate) standard error, so one step size suits every
    parameter.  The gradient comes free from the same evaluations; if the
    Newton step ψ − H⁻¹g raises the likelihood it is taken (polishing the
    optimizer's last digits).  Returns (x at the final point, Var(ψ̂), φ, free).
    """
    beta, xi, theta = model.split(x)
    phi = model.natural(theta)
    free = np.isfinite(phi) & (phi > BOUNDARY)
    phi_fixed = np.where(free, phi, -30.0)
    psi = np.concatenate([beta, xi, phi[free]])
    cache: dict[bytes, float] = {}

    def f(v: np.ndarray) -> float:
        key = v.tobytes()
        if key not in cache:
            cache[key] = model.loglik_reporting(v, phi_fixed, free)
        return cache[key]

    p = model.p
    scale = np.concatenate([beta_scale, _pilot_scale(f, psi, p)])

    def fz(z: np.ndarray) -> float:
        return f(psi + scale * z)

    h = STEP
    Hz = hessian(fz, np.zeros(len(psi)), h)
    eye = np.eye(len(psi)) * h
    gz = np.array([(fz(eye[i]) - fz(-eye[i])) / (2 * h) for i in range(len(psi))])
    try:
        vz = np.linalg.inv(-Hz)
    except np.linalg.LinAlgError:
        vz = np.full_like(Hz, np.nan)
    vcov = vz * np.outer(scale, scale)
    step = vz @ gz
    if np.all(np.isfinite(step)) and np.max(np.abs(step)) < 1.0 and fz(step) > fz(np.zeros(len(psi))):
        psi = psi + scale * step
        x = _to_x(model, psi, phi_fixed, free)
        phi = model.natural(model.split(x)[2])
    return x, vcov, phi, free


STEP = 0.02  # finite-difference step in standard-error units


def _pilot_scale(f, psi: np.ndarray, p: int, h: float = 0.05) -> np.ndarray:
    """Rough SEs of ξ and φ from one second difference each (β's come from the fit)."""
    f0 = f(psi)
    out = []
    for j in range(p, len(psi)):
        e = np.zeros(len(psi))
        e[j] = h
        d2 = (f(psi + e) - 2 * f0 + f(psi - e)) / h ** 2
        out.append(1 / np.sqrt(-d2) if d2 < 0 and np.isfinite(d2) else 0.1)
    return np.array(out)


def _to_x(model: GeneralizedLinearMixedModel, psi: np.ndarray, phi_fixed: np.ndarray,
          free: np.ndarray) -> np.ndarray:
    """Optimizer vector of a ψ."""
    p, e = model.p, model.n_extra
    phi = phi_fixed.copy()
    phi[free] = psi[p + e:]
    return np.concatenate([psi[:p], model.family.to_opt(psi[p:p + e]), model.theta_of(phi)])


def fit(design, family, y, offset, *, method: str = "mvaghermite", points: int = 7, title: str = "",
        lr_label: str = "", backend: str = "nlopt", level: float = 95.0, options: dict | None = None,
        command: str = "meglm") -> GLMMResults:
    """Fit the GLMM and return frozen :class:`GLMMResults`."""
    model = GeneralizedLinearMixedModel(design, family, y, offset, method, points)
    names = design.fixed.names
    glm = fit_glm(family, model.X, y, model.offset, names)
    _separation(glm, names)
    fast = fast_fit(model, glm) if backend == "nlopt" else None
    if fast is not None:
        opt, x, vcov, phi, free, loglik = fast.opt, fast.x, fast.vcov, fast.phi, fast.free, fast.loglik
    else:
        opt, A = optimize(model, glm, backend)
        x, vcov, phi, free = information(model, opt.final, np.sqrt(np.sum(A[:model.p, :model.p] ** 2, axis=1)))
        loglik = model.loglik(*model.split(x))
    beta, xi, theta = model.split(x)
    p, e = model.p, model.n_extra
    fixed = FixedEffects(names, beta, vcov[:p, :p], design.fixed.omitted)
    anc = tuple(Ancillary(nm, float(v), float(np.sqrt(vcov[p + i, p + i])))
                for i, (nm, v) in enumerate(zip(family.extra_names, xi)))
    nat = NaturalFit(phi, vcov[p + e:, p + e:], free, _natural_slices(model))
    if fast is not None:
        blups = fast.blups
    else:
        modes = model.modes(beta, xi, theta)
        blups = [u @ lam.T for u, lam in zip(model.system.split(modes.u), model.lambdas(theta))]
    equations = _equations(model, theta, 1.0, nat, blups)
    n_var = len(phi)
    notes = _checks(opt, fixed, free, equations)
    return GLMMResults(
        spec=design.spec, title=title, family=family.name, link=family.link,
        dispersion=getattr(family, "dispersion", None), intmethod=model.method,
        intpoints=model.points if model.method != "laplace" else 1, nobs=design.n,
        depvar=design.spec.response, fixed=fixed, ancillary=anc, equations=equations, loglik=float(loglik),
        wald=wald_fixed(names, beta, fixed.vcov), lr=lr_vs_linear(loglik, glm.loglik, n_var),
        lr_label=lr_label, ll_fixed_only=glm.loglik, k=p + e + n_var, optsummary=opt, theta=theta,
        level=level, sample_notes=_sample_notes(design), warnings=notes, options=dict(options or {}),
        design=design, command=command)


def _separation(glm: GLMFit, names) -> None:
    """Warn before fitting when the model without random effects diverges (separation)."""
    big = [n for n, b in zip(names, glm.beta) if abs(b) > 15]
    if big or not np.isfinite(glm.loglik):
        warnings.warn("possible (quasi-)complete separation: in the model without random effects "
                      + (", ".join(big) or "a coefficient") + " diverges; a covariate predicts the outcome "
                      "(almost) perfectly: drop or recode it, or combine sparse categories",
                      RuntimeWarning, stacklevel=4)


def _natural_slices(model: GeneralizedLinearMixedModel) -> tuple[slice, ...]:
    """Slice of φ for each equation, in the spec's order."""
    sizes = [s.n_natural for _, s, _ in equation_blocks(model)]
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return tuple(slice(a, b) for a, b in zip(edges[:-1], edges[1:]))


def _checks(opt: OptSummary, fixed: FixedEffects, free: np.ndarray, equations) -> tuple[str, ...]:
    """Convergence, zero variances and separation: warned, with what to try."""
    notes = []
    if not opt.converged:
        notes.append(f"the optimizer stopped without converging ({opt.return_code}); try "
                     "optimizer='scipy', rescale the covariates, or intmethod(laplace) for start values")
    if not np.all(free):
        labels = [e.label for e in equations]
        notes.append("a random-effects variance is estimated at zero (levels: " + ", ".join(labels) +
                     "); the data show no variation between groups there: drop that random effect "
                     "or fit the model without it")
    se = fixed.se
    big = [n for n, b, s in zip(fixed.names, fixed.coef, se) if abs(b) > 15 or not np.isfinite(s) or s > 1e3]
    if big:
        notes.append("possible (quasi-)complete separation or an unidentified coefficient: "
                     + ", ".join(big) + " has a huge estimate or standard error; check for a covariate "
                     "that predicts the outcome perfectly and drop or recode it")
    for msg in notes:
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
    if fixed.omitted:
        notes.append("omitted because of collinearity: " + ", ".join(fixed.omitted))
    return tuple(notes)
