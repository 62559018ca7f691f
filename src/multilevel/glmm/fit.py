"""Fit a GLMM: fixed-only start, variance start, joint optimization, information.

The sequence follows Stata's ``startvalues(fixedonly)`` and lme4's two
stages: (1) the model without random effects gives β and ξ; (2) θ alone is
optimized by Laplace with β, ξ held there; (3) all parameters are optimized
jointly on the requested integration rule, with β whitened by the
fixed-only information so that BOBYQA's trust region is well scaled.
Laplace stages of models with several random-effects terms use L-BFGS-B
with the exact gradient (:mod:`.laplace_gradient`) instead, BOBYQA
continuing where it does not converge.  Before all this, Laplace fits with
several terms try Newton's method from the fixed-only β (:mod:`.newton`), as
one-factor models try :mod:`.fastfit`.
Other starts (``startvalues(zero | constantonly)``, ``startgrid``, ``from()``;
:mod:`.start`) skip stage (2); ``noestimate`` stops before (3).
Standard errors are from the observed information of the approximate log
likelihood in Stata's metric (β, ξ, log SDs/atanh correlations), with the
delta method to variances ([ME] meglm, Methods and formulas).
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from ..inference.information import NaturalFit, hessian, richardson_hessian
from ..inference.results import FixedEffects
from ..inference.tests import lr_vs_linear, wald_fixed
from ..lmm.fit import _equations, _sample_notes
from ..lmm.model import equation_blocks
from ..optimize import OptSummary, minimize, minimize_with_gradient
from ..spec.errors import DataError
from .fastfit import fast_fit
from .families import Weighted
from .glm import GLMFit, fit_glm
from .laplace_gradient import LaplaceGradient
from .model import GeneralizedLinearMixedModel
from .newton import newton_fit
from .results import Ancillary, GLMMResults
from .start import START_OPTIONS, Start, start_values

FTOL = 1e-11       # BOBYQA's relative tolerance on −2 log L; a Newton step polishes the rest
BOUNDARY = -15.0   # a log SD below this is a variance at zero: left out of the information


def optimize(model: GeneralizedLinearMixedModel, glm: GLMFit, backend: str = "nlopt",
             start: Start | None = None):
    """Stage (2), θ alone by Laplace (only from the default start), then (3) everything jointly.

    Returns the :class:`OptSummary` (final = optimizer vector x) and the
    whitening matrix A of (β, ξ).
    """
    p, e = model.p, model.n_extra
    lower, upper = model.theta_bounds()
    lg = _laplace_gradient(model)
    if start is None or start.default:
        beta, xi_opt = glm.beta, model.family.to_opt(glm.xi)

        def theta_only(theta):
            return model.objective(np.concatenate([beta, xi_opt, theta]), method="laplace")

        def theta_only_grad(theta):
            value, grad = lg(np.concatenate([beta, xi_opt, theta]))
            return value, grad[p + e:]

        first = _minimize(theta_only, model.theta_start(), lower, upper, backend=backend,
                          ftol_rel=1e-8, xtol_rel=1e-6, fg=theta_only_grad if lg else None)
        theta0, n_first, xi = first.final, first.n_evals, glm.xi
    else:
        beta, xi, theta0, n_first = start.beta, start.xi, start.theta, 0
        xi_opt = model.family.to_opt(xi)
    A = _whitening(model, beta, xi, theta0)
    x0 = np.concatenate([beta, xi_opt])

    def joint(z, method=None):
        return model.objective(np.concatenate([x0 + A @ z[:p + e], z[p + e:]]), method=method)

    def joint_grad(z):
        value, grad = lg(np.concatenate([x0 + A @ z[:p + e], z[p + e:]]))
        return value, np.concatenate([A.T @ grad[:p + e], grad[p + e:]])

    z0 = np.concatenate([np.zeros(p + e), theta0])
    zl = np.concatenate([np.full(p + e, -np.inf), lower])
    zu = np.concatenate([np.full(p + e, np.inf), upper])
    n_lap, head = 0, []
    if model.nested is not None:    # quadrature over nested levels is costly: start at the Laplace optimum
        head = [(z0, joint(z0))]    # the log starts at the start values, on the requested rule
        lap = _minimize(lambda z: joint(z, "laplace"), z0, zl, zu, backend=backend, ftol_rel=1e-10, xtol_rel=1e-7,
                        fg=joint_grad if lg else None)
        z0, n_lap = lap.final, lap.n_evals + 1
    fg = joint_grad if lg and model.method == "laplace" else None
    opt = _minimize(joint, z0, zl, zu, backend=backend, ftol_rel=FTOL, xtol_rel=1e-8, fg=fg)
    if opt.boundary:
        opt = _restart_off_boundary(joint, opt, zl, zu, backend, fg)
    z = opt.final
    opt.fitlog[:0] = head
    opt.final = np.concatenate([x0 + A @ z[:p + e], z[p + e:]])
    opt.initial = np.concatenate([x0, theta0])
    opt.n_evals += n_first + n_lap
    return opt, A


RESTART_SD = 0.5   # a standard deviation stuck at 0 restarts from here (link scale)


def _restart_off_boundary(f, opt: OptSummary, lower, upper, backend: str, fg) -> OptSummary:
    """A fit that ends with a Cholesky diagonal (an SD) at its bound 0 is restarted with those
    entries at :data:`RESTART_SD`, and the better optimum kept.  At 0 the likelihood is even
    in that entry and flat in the column below it, so a local optimum there can hide a better
    one (grouseticks, ``|| location: height_s, cov(un) || brood:`` by Laplace: var(height_s) 0
    at −987.94 from the default start; lme4 and the restart find −986.85 with corr −1)."""
    z1 = opt.final.copy()
    z1[list(opt.boundary)] = RESTART_SD
    again = _minimize(f, z1, lower, upper, backend, fg=fg, ftol_rel=FTOL, xtol_rel=1e-8)
    if again.fmin < opt.fmin - 1e-9:       # the log goes on from the first optimum
        again.fitlog[:0] = opt.fitlog
        again.initial, again.n_evals = opt.initial, opt.n_evals + again.n_evals
        return again
    opt.n_evals += again.n_evals
    return opt


def _laplace_gradient(model: GeneralizedLinearMixedModel) -> LaplaceGradient | None:
    """The exact Laplace gradient (:mod:`.laplace_gradient`) for several random-effects terms
    (one term has the one-factor Newton fit, :mod:`.fastfit`)."""
    return LaplaceGradient(model) if len(model.terms) > 1 else None


def _minimize(f, x0, lower, upper, backend: str, fg=None, **tol) -> OptSummary:
    """:func:`~multilevel.optimize.minimize`, retried with scipy's L-BFGS-B if nlopt gives up
    (BOBYQA raises on round-off when the likelihood is flat, e.g. under separation).
    With ``fg`` (value and exact gradient), L-BFGS-B first; BOBYQA continues from its last
    point if it does not report convergence or stops with a standard deviation at 0: there the
    gradient vanishes by symmetry (ℓ is even in a diagonal θ), so L-BFGS-B cannot leave zero
    even when a larger likelihood lies beyond (several local optima)."""
    if fg is not None:
        first = minimize_with_gradient(fg, x0, lower, upper)
        if first.converged and np.isfinite(first.fmin) and not first.boundary:
            return first
        rest = _minimize(f, first.final, lower, upper, backend, **tol)
        rest.fitlog[:0] = first.fitlog
        rest.initial = first.initial
        rest.n_evals += first.n_evals
        return rest
    try:
        return minimize(f, x0, lower, upper, backend=backend, **tol)
    except Exception as exc:  # nlopt.RoundoffLimited and friends
        if backend == "scipy":
            raise
        warnings.warn(f"nlopt stopped ({type(exc).__name__}); retrying with scipy", RuntimeWarning, stacklevel=3)
        return minimize(f, x0, lower, upper, backend="scipy", **tol)


def _whitening(model: GeneralizedLinearMixedModel, beta: np.ndarray, xi: np.ndarray,
               theta: np.ndarray) -> np.ndarray:
    """A with AAᵀ ≈ Var(β̂, ξ̂): β from the mixed model's information at θ
    (:meth:`~.model.GeneralizedLinearMixedModel.beta_information`), ξ from the
    model without random effects at (β, ξ), so that BOBYQA's trust region has the right scale."""
    fam, p, e = model.family, model.p, model.n_extra
    A = np.eye(p + e)
    try:
        A[:p, :p] = np.linalg.cholesky(np.linalg.inv(model.beta_information(beta, xi, theta)))
    except np.linalg.LinAlgError:
        pass
    if e:
        z0 = np.concatenate([beta, fam.to_opt(xi)])

        def ll(z):
            return fam.loglik(model.y, model.offset + model.X @ z[:p], fam.from_opt(z[p:])).sum()

        H = richardson_hessian(ll, z0, h=1e-3)[p:, p:]
        try:
            A[p:, p:] = np.linalg.cholesky(np.linalg.inv(-H))
        except np.linalg.LinAlgError:
            pass
    return A


def information(model: GeneralizedLinearMixedModel, x: np.ndarray, beta_scale: np.ndarray,
                polish: bool = True, rest_scale: np.ndarray | None = None):
    """Observed information in Stata's metric ψ = (β, ξ, φ_free), with one Newton step
    (unless ``polish`` is False).

    The Hessian is taken by central differences in units of each
    parameter's (approximate) standard error (β's ``beta_scale``; ξ's and φ's ``rest_scale``
    if given, else one second difference each), so one step size suits every
    parameter (for several terms by Laplace: by differences of the exact gradient,
    :func:`_psi_gradient`).  The gradient comes free from the same evaluations; if the
    Newton step ψ − H⁻¹g raises the likelihood it is taken (polishing the
    optimizer's last digits).  Returns (x at the final point, Var(ψ̂), φ, free).
    """
    beta, xi, theta = model.split(x)
    phi = model.natural(theta)
    free = np.isfinite(phi) & (phi > BOUNDARY)
    free &= ~_flat_at_zero(model, beta, xi, phi, free)
    phi_fixed = np.where(free, phi, ZERO)
    psi = np.concatenate([beta, xi, phi[free]])
    cache: dict[bytes, float] = {}

    def f(v: np.ndarray) -> float:
        key = v.tobytes()
        if key not in cache:
            try:
                cache[key] = model.loglik_reporting(v, phi_fixed, free)
            except (np.linalg.LinAlgError, FloatingPointError, ValueError):
                cache[key] = np.nan     # no information there: the SEs are missing
        return cache[key]

    p = model.p
    e = model.n_extra
    rest = _pilot_scale(f, psi, p) if rest_scale is None else \
        np.concatenate([rest_scale[:e], rest_scale[e:][free]])
    scale = np.concatenate([beta_scale, rest])

    def fz(z: np.ndarray) -> float:
        return f(psi + scale * z)

    lg = _laplace_gradient(model) if model.method == "laplace" else None
    if lg is not None:
        jacobians: dict[bytes, np.ndarray] = {}
        Hz, gz = _gradient_hessian(lambda z: scale * _psi_gradient(model, lg, psi + scale * z, phi_fixed, free,
                                                                   jacobians), len(psi), GRAD_STEP)
    else:
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
    if polish and np.all(np.isfinite(step)) and np.max(np.abs(step)) < 1.0 and fz(step) > fz(np.zeros(len(psi))):
        psi = psi + scale * step
        x = _to_x(model, psi, phi_fixed, free)
        phi = model.natural(model.split(x)[2])
    return x, vcov, phi, free


STEP = 0.02  # finite-difference step in standard-error units
GRAD_STEP = 1e-3    # the same for differences of the exact gradient
JAC_STEP = 1e-6     # step for the Jacobian ∂x/∂ψ (no likelihood evaluations)


def _psi_gradient(model: GeneralizedLinearMixedModel, lg: LaplaceGradient, psi: np.ndarray,
                  phi_fixed: np.ndarray, free: np.ndarray, jacobians: dict) -> np.ndarray:
    """∂ℓ_L/∂ψ = (∂x/∂ψ)ᵀ ∂ℓ_L/∂x, the exact gradient in x carried to the reporting metric
    (∂x/∂ψ by central differences of the parameter map; β maps to itself, so ∂x/∂ψ depends on
    (ξ, φ) only and is kept in ``jacobians`` by their bytes)."""
    p = model.p
    x = _to_x(model, psi, phi_fixed, free)
    value, gx = lg(x)
    if not np.isfinite(value):
        return np.full(len(psi), np.nan)    # no information there: the SEs are missing
    key = psi[p:].tobytes()
    if key not in jacobians:
        J = np.zeros((len(x), len(psi)))
        J[:p, :p] = np.eye(p)
        for j in range(p, len(psi)):
            e = np.zeros(len(psi))
            e[j] = JAC_STEP
            J[p:, j] = (_to_x(model, psi + e, phi_fixed, free) - _to_x(model, psi - e, phi_fixed, free))[p:] / (2 * JAC_STEP)
        jacobians[key] = J
    return -0.5 * (jacobians[key].T @ gx)


def _gradient_hessian(grad, d: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Hessian by central differences of an exact gradient (symmetrized), and the gradient at 0."""
    eye = np.eye(d) * h
    H = np.column_stack([(grad(eye[j]) - grad(-eye[j])) / (2 * h) for j in range(d)])
    return 0.5 * (H + H.T), grad(np.zeros(d))
ZERO = -30.0        # log SD standing for a variance at zero
NEAR_ZERO = -5.0    # a log SD below this (variance < 5e-5) is tested for a boundary fit


def _flat_at_zero(model: GeneralizedLinearMixedModel, beta, xi, phi: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Log SDs below ``NEAR_ZERO`` whose variance set to zero loses less than 1e-6 in log L:
    boundary fits that the optimizer left just above zero (the likelihood is flat there, and
    its curvature in the log SD vanishes, so they cannot be free in the information)."""
    out = np.zeros(len(phi), dtype=bool)
    low = np.flatnonzero(free & _log_sd_mask(model) & (phi < NEAR_ZERO))
    if not len(low):
        return out
    ll = model.loglik(beta, xi, model.theta_of(phi))
    for j in low:
        trial = phi.copy()
        trial[j] = ZERO
        out[j] = model.loglik(beta, xi, model.theta_of(trial)) > ll - 1e-6
    return out


def _log_sd_mask(model: GeneralizedLinearMixedModel) -> np.ndarray:
    """True at the φ entries that are log standard deviations (the others are atanh correlations)."""
    parts = []
    for _, struct, _ in equation_blocks(model):
        n_sd = 1 if struct.label in ("Identity", "Exchangeable") else struct.k
        parts.append(np.arange(struct.n_natural) < n_sd)
    return np.concatenate(parts)


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
        command: str = "meglm", vce: tuple | None = None) -> GLMMResults:
    """Fit the GLMM and return frozen :class:`GLMMResults`; ``vce`` = (cluster code per
    observation, cluster variable) gives the robust variance (one grouping factor, adaptive
    quadrature: :func:`.fastfit.fast_fit`)."""
    model = GeneralizedLinearMixedModel(design, family, y, offset, method, points)
    names = design.fixed.names
    w = design.weights      # the model without random effects weights each row by all its weights
    glm = fit_glm(family if w is None or w.cluster is None else Weighted(family.base, w.total),
                  model.X, y, model.offset, names)
    if family.separable:
        _separation(glm, names)
    options = dict(options or {})
    start = start_values(model, glm, options)
    fast = None
    if options.get("noestimate"):
        opt, x, vcov, phi, free, loglik = _at_start(model, start)
    else:
        if not start.default:
            model.theta0 = start.theta
        newton = None
        if backend == "nlopt":
            fast = _fast(model, glm if start.default else replace(glm, beta=start.beta, xi=start.xi),
                         None if vce is None else vce[0])
            if fast is None:
                newton = newton_fit(model, glm.beta if start.default else start.beta, model.theta_start())
        if fast is not None:
            opt, x, vcov, phi, free, loglik = fast.opt, fast.x, fast.vcov, fast.phi, fast.free, fast.loglik
        elif vce is not None or (design.weights is not None and design.weights.cluster is not None):
            raise DataError("the robust variance (vce(robust), vce(cluster), sampling weights) and weights "
                            "of the groups are available for one grouping level fitted by adaptive "
                            "quadrature with every variance away from zero; this fit is not")
        else:
            if newton is not None:
                opt, scale = newton
                x, vcov, phi, free = information(model, opt.final, scale[:model.p], rest_scale=scale[model.p:])
            else:
                opt, A = optimize(model, glm, backend, start)
                x, vcov, phi, free = information(model, opt.final, _beta_scale(A, model.p))
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
    notes = _checks(opt, fixed, free, equations, _natural_slices(model), family.separable)
    return GLMMResults(
        spec=design.spec, title=title, family=family.name, link=family.link,
        dispersion=getattr(family, "dispersion", None), intmethod=model.method,
        intpoints=model.points if model.method != "laplace" else 1, nobs=design.nobs,
        depvar=design.spec.response, fixed=fixed, ancillary=anc, equations=equations, loglik=float(loglik),
        wald=wald_fixed(names, beta, fixed.vcov), lr=lr_vs_linear(loglik, glm.loglik, n_var),
        lr_label=lr_label, ll_fixed_only=glm.loglik, k=p + e + n_var, optsummary=opt, theta=theta,
        level=level, sample_notes=_sample_notes(design), warnings=notes,
        options={k: v for k, v in options.items() if k not in START_OPTIONS},
        design=design, command=command, vce="Robust" if vce is not None else "",
        clusters=() if vce is None else (int(vce[0].max()) + 1, vce[1]))


def _fast(model: GeneralizedLinearMixedModel, glm: GLMFit, clusters: np.ndarray | None = None):
    """The one-factor Newton fit (:func:`.fastfit.fast_fit`) from ``glm``'s β, ξ; None where it does
    not apply or breaks down arithmetically (Newton from a far start), and the derivative-free
    fit takes over."""
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return fast_fit(model, glm, clusters)
    except ArithmeticError:
        return None


def _at_start(model: GeneralizedLinearMixedModel, start: Start):
    """``noestimate``: the log likelihood and information at the start values, no iterations."""
    x = start.x(model.family)
    f = model.objective(x)
    if not np.isfinite(f):
        raise DataError("noestimate: the log likelihood is not finite at the start values")
    opt = OptSummary(backend="none", initial=x, final=x, fmin=f, n_evals=1, return_code="noestimate",
                     converged=True, fitlog=[(x, f)])
    A = _whitening(model, start.beta, start.xi, start.theta)
    x, vcov, phi, free = information(model, x, _beta_scale(A, model.p), polish=False)
    return opt, x, vcov, phi, free, -0.5 * f


def _beta_scale(A: np.ndarray, p: int) -> np.ndarray:
    """Approximate SEs of β from the whitening matrix (rows of A)."""
    return np.sqrt(np.sum(A[:p, :p] ** 2, axis=1))


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


def _checks(opt: OptSummary, fixed: FixedEffects, free: np.ndarray, equations,
            slices: tuple[slice, ...], separable: bool = True) -> tuple[str, ...]:
    """The notes under the table: the warnings of :func:`_estimation_warnings` (warned), ``noestimate``
    and omitted coefficients."""
    if opt.return_code == "noestimate":      # the user's values: nothing estimated to warn about
        notes = ["noestimate: the model was not fitted; the estimates are the start values"]
    else:
        notes = _estimation_warnings(opt, fixed, free, equations, slices, separable)
        for msg in notes:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
    if fixed.omitted:
        notes.append("omitted because of collinearity: " + ", ".join(fixed.omitted))
    return tuple(notes)


def _estimation_warnings(opt: OptSummary, fixed: FixedEffects, free: np.ndarray, equations,
                         slices: tuple[slice, ...], separable: bool = True) -> list[str]:
    """Convergence, zero variances (naming the levels whose φ entries are at the boundary,
    ``slices`` locating each equation's in φ) and separation, with what to try (a huge
    coefficient or SE only where the family can separate; otherwise an undefined SE)."""
    notes = []
    if not opt.converged:
        notes.append(f"the optimizer stopped without converging ({opt.return_code}); try "
                     "optimizer='scipy', rescale the covariates, or intmethod(laplace) for start values")
    if not np.all(free):
        labels = [e.label for e, sl in zip(equations, slices) if not np.all(free[sl])]
        notes.append("a random-effects variance is estimated at zero (levels: " + ", ".join(labels) +
                     "); the data show no variation between groups there: drop that random effect "
                     "or fit the model without it")
    se = fixed.se
    big = [n for n, b, s in zip(fixed.names, fixed.coef, se)
           if not np.isfinite(s) or (separable and (abs(b) > 15 or s > 1e3))]
    if big:
        notes.append("possible (quasi-)complete separation or an unidentified coefficient: "
                     + ", ".join(big) + " has a huge estimate or standard error; check for a covariate "
                     "that predicts the outcome perfectly and drop or recode it")
    return notes

