"""Standard errors of variance components, as Stata computes them.

Stata maximizes the likelihood in a metric of log standard deviations,
atanh correlations and the log residual standard deviation, takes the
observed information there, and reports variances by the delta method
([ME] mixed, Methods and formulas).  Here the Hessian of the log (restricted)
likelihood, with β profiled out, is taken in that metric: in closed form when
every random-effects term is scalar (lmm/scalar_term.py, lmm/hessian.py),
otherwise by central differences of the analytic gradient or of the log
likelihood; at the optimum the inverse of the profiled Hessian equals the
variance-component block of the full inverse information.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..covariance.structures import Identity, Independent
from ..lmm import gradient
from ..lmm.model import Factor, LinearMixedModel, equation_blocks

_SCALE_ONLY = (Identity, Independent)  # Σ diagonal: θ_i = σ_i/σ = exp(φ_i − φ_e)


@dataclass(frozen=True)
class NaturalFit:
    """Variance parameters in Stata's metric and their covariance matrix.

    ``phi`` stacks each equation's parameters (``structure.natural``) in
    the spec's order, then ln σ_e.  ``free`` marks those not on the boundary
    (a zero standard deviation), which are the only ones in ``vcov``.
    """

    phi: np.ndarray
    vcov: np.ndarray
    free: np.ndarray
    slices: tuple[slice, ...]


def natural_slices(model: LinearMixedModel) -> tuple[slice, ...]:
    """Slices of φ: one per random-effects equation, then the residual structure's (cached)."""
    cached = model.__dict__.get("_natural_slices")
    if cached is not None:
        return cached
    sizes = [s.n_natural for _, s, _ in equation_blocks(model)] + [model.residual_slice.stop
                                                                    - model.residual_slice.start]
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    model._natural_slices = tuple(slice(a, b) for a, b in zip(edges[:-1], edges[1:]))
    return model._natural_slices


def to_natural(model: LinearMixedModel, theta: np.ndarray, sigma2: float) -> np.ndarray:
    """φ of (θ, σ²): each Σ = σ² ΛΛᵀ in its structure's Stata metric, the residual
    structure's own parameters, then ln σ."""
    parts = []
    for _, struct, sl in equation_blocks(model):
        lam = struct.to_lambda(theta[sl])
        with np.errstate(divide="ignore", invalid="ignore"):
            parts.append(struct.natural(sigma2 * lam @ lam.T))
    return np.concatenate(parts + [theta[model.residual_slice], [0.5 * np.log(sigma2)]])


def from_natural(model: LinearMixedModel, phi: np.ndarray) -> tuple[np.ndarray, float]:
    """(θ, σ²) of a φ vector (inverse of :func:`to_natural`); θ = exp(φ − φ_e) directly for the
    scale-only structures."""
    sigma2 = float(np.exp(2 * phi[-1]))
    theta = np.zeros(model.n_theta)
    slices = natural_slices(model)
    for (_, struct, sl), nsl in zip(equation_blocks(model), slices):
        if isinstance(struct, _SCALE_ONLY):
            theta[sl] = np.exp(phi[nsl] - phi[-1])
        else:
            theta[sl] = struct.from_sigma(struct.from_natural(phi[nsl]) / sigma2)
    theta[model.residual_slice] = phi[slices[-1]]
    return theta, sigma2


def loglik_natural(model: LinearMixedModel, phi: np.ndarray) -> float:
    """Log (restricted) likelihood at φ with β profiled out (NaN where a residual structure's R_j
    is not positive definite, e.g. a step of the numerical Hessian past an exchangeable
    correlation's bound −1/(n−1): the SEs are then NaN, not an error)."""
    theta, sigma2 = from_natural(model, phi)
    try:
        return model.loglik_at(model.factor(theta), sigma2)
    except np.linalg.LinAlgError:
        return np.nan


def hessian(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of a scalar function, error O(h²).

    With centred data the log likelihood carries rounding noise of about
    1e-12, so h = 1e-3 balances truncation (≈1e-6 relative) and noise.
    """
    n = len(x)
    H = np.empty((n, n))
    f0 = f(x)
    steps = np.eye(n) * h
    for i in range(n):
        H[i, i] = (f(x + steps[i]) - 2 * f0 + f(x - steps[i])) / h**2
        for j in range(i):
            H[i, j] = H[j, i] = (f(x + steps[i] + steps[j]) - f(x + steps[i] - steps[j])
                                 - f(x - steps[i] + steps[j]) + f(x - steps[i] - steps[j])) / (4 * h**2)
    return H


def richardson_hessian(f, x: np.ndarray, h: float = 4e-3) -> np.ndarray:
    """Hessian by Richardson extrapolation of central differences, error O(h⁴).

    Two step sizes cost twice the evaluations of :func:`hessian` and give
    about seven correct digits of the standard errors Stata prints.
    """
    return (4 * hessian(f, x, h / 2) - hessian(f, x, h)) / 3


def natural_fit(model: LinearMixedModel, theta: np.ndarray, sigma2: float,
                factor: Factor | None = None) -> NaturalFit:
    """φ̂ and Var(φ̂) = (−∂²ℓ/∂φ∂φᵀ)⁻¹ over the parameters not on the boundary
    (``factor``: the model's factor at θ, if known)."""
    phi = to_natural(model, theta, sigma2)
    n_re = sum(s.n_natural for _, s, _ in equation_blocks(model))
    free = np.isfinite(phi)
    free[:n_re] &= phi[:n_re] > -15  # a standard deviation at zero is on the boundary
    idx = np.flatnonzero(free)

    def partial(sub: np.ndarray) -> float:
        full = phi.copy()
        full[idx] = sub
        full[~free] = -30.0
        return loglik_natural(model, full)

    at_zero_scales = model.residual is not None and all(isinstance(s, _SCALE_ONLY) for _, s, _ in equation_blocks(model))
    if gradient.available(model) and (free.all() or at_zero_scales):
        H = _hessian_from_gradient(model, phi, theta, sigma2, model.factor(theta) if factor is None else factor,
                                   idx)
    else:
        H = richardson_hessian(partial, phi[idx])
    try:
        vcov = np.linalg.inv(-H)
    except np.linalg.LinAlgError:
        vcov = np.full_like(H, np.nan)
    return NaturalFit(phi, vcov, free, natural_slices(model))


def _hessian_from_gradient(model: LinearMixedModel, phi: np.ndarray, theta: np.ndarray,
                           sigma2: float, f: Factor, free: np.ndarray | None = None) -> np.ndarray:
    """Hessian in φ from the analytic gradient (``f``: the factor at θ), over the entries ``free``
    of φ (all by default; with a residual structure, those not on the boundary, where the others'
    standard deviations stay 0).

    With ψ = (θ, σ²)(φ), J = ∂ψ/∂φ and g = ∇_ψ ℓ:  ∂²ℓ/∂φ∂φᵀ = Jᵀ ∂g/∂φ + Σ_i g_i ∇²ψ_i.
    ∂g/∂φ = H_ψ J where the closed-form H_ψ exists (scalar terms: ``gradient.loglik_hessian``),
    else the central difference of g along φ_j (error ε/h, far more accurate than differencing
    values, ε/h²).  The curvature of the map (second term) is included when g is
    not zero, so the result is right away from the optimum too (e.g. at another program's
    stopping point).  Without a residual structure the column of ln σ_e needs no differences:
    see :func:`_sigma_column`.
    """
    n = len(phi)
    h = 1e-4 if model.residual is not None else 1e-5  # wider when the gradient is partly differenced
    g0 = gradient.loglik_gradient(model, theta, sigma2, f)
    J = _jacobian(model, phi)
    cols = np.arange(n) if free is None else np.asarray(free)
    H_psi = gradient.loglik_hessian(model, theta, sigma2, f)
    if H_psi is not None:  # scalar terms: ∂g/∂φ = H_ψ J in closed form
        Jc = J[:, cols]
        return _chain_curvature(model, phi, theta, sigma2, g0, Jc.T @ H_psi @ Jc, h, cols)
    dg = np.empty((len(g0), len(cols)))
    sigma_column = model.residual is None and model.n_theta == n - 1
    for c, j in enumerate(cols[:-1] if sigma_column else cols):
        e = np.zeros(n)
        e[j] = h
        (t_up, s_up), (t_dn, s_dn) = from_natural(model, phi + e), from_natural(model, phi - e)
        dg[:, c] = (gradient.loglik_gradient(model, t_up, s_up) - gradient.loglik_gradient(model, t_dn, s_dn)) / (2 * h)
    if sigma_column:
        dg[:, -1] = _sigma_column(model, dg[:, :-1], J, sigma2, f.pwrss)
    return _chain_curvature(model, phi, theta, sigma2, g0, J[:, cols].T @ dg, h, cols)


def _chain_curvature(model: LinearMixedModel, phi: np.ndarray, theta: np.ndarray, sigma2: float,
                     g0: np.ndarray, H: np.ndarray, h: float, cols: np.ndarray | None = None) -> np.ndarray:
    """JᵀH_ψJ plus the curvature of the map φ ↦ ψ, Σ_i g_i ∇²ψ_i, when g is not zero; symmetrized
    (over the entries ``cols`` of φ, all by default)."""
    cols = np.arange(len(phi)) if cols is None else cols
    if np.max(np.abs(g0 * np.append(theta, sigma2))) > 1e-8:  # not at a stationary point
        for c, j in enumerate(cols):
            e = np.zeros(len(phi))
            e[j] = h
            H[:, c] += ((_jacobian(model, phi + e) - _jacobian(model, phi - e)).T @ g0)[cols] / (2 * h)
    return (H + H.T) / 2


def _sigma_column(model: LinearMixedModel, dg_theta: np.ndarray, J: np.ndarray, sigma2: float,
                  pwrss: float) -> np.ndarray:
    """∂g/∂φ_e (φ_e = ln σ_e) from the columns already differenced along the other φ_j.

    Those move θ only (σ² = e^{2φ_e}), so ∂g/∂φ_j = H_ψθ J_θj gives the θ columns of the
    Hessian H_ψ of ℓ(θ, σ²); its σ² column is the σ² row by symmetry, except
    ∂²ℓ/∂(σ²)² = ν/(2σ⁴) − r²/σ⁶ (ℓ is −½(ν log σ² + r²/σ²) in σ², no residual structure).
    Then ∂g/∂φ_e = H_ψ J_{·e}.
    """
    H_theta = np.linalg.solve(J[:-1, :-1].T, dg_theta.T).T   # dg_θ J_θθ⁻¹: H_ψ's θ columns
    h_ss = 0.5 * model.dof / sigma2 ** 2 - pwrss / sigma2 ** 3
    H_psi = np.column_stack([H_theta, np.append(H_theta[-1], h_ss)])
    return H_psi @ J[:, -1]


def _jacobian(model: LinearMixedModel, phi: np.ndarray) -> np.ndarray:
    """∂(θ, σ²)/∂φ in closed form: each structure's ``theta_jacobian`` (θ of Σ/σ² with
    σ² = e^{2φ_e}), ∂σ²/∂φ_e = 2σ², residual parameters unchanged."""
    sigma2 = float(np.exp(2 * phi[-1]))
    J = np.zeros((model.n_theta + 1, len(phi)))
    for (_, struct, sl), nsl in zip(equation_blocks(model), natural_slices(model)):
        J[sl, nsl], J[sl, -1] = struct.theta_jacobian(phi[nsl], sigma2)
    rs = model.residual_slice
    J[rs, natural_slices(model)[-1]] = np.eye(rs.stop - rs.start)
    J[-1, -1] = 2 * sigma2
    return J


def delta_vcov(g, x: np.ndarray, V: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Var(g(x)) ≈ J V Jᵀ with J the central-difference Jacobian of g."""
    g0 = np.atleast_1d(g(x))
    J = np.empty((len(g0), len(x)))
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h
        J[:, j] = (np.atleast_1d(g(x + e)) - np.atleast_1d(g(x - e))) / (2 * h)
    return J @ V @ J.T


def covariance_se(struct, phi: np.ndarray, local: list[int], V: np.ndarray) -> np.ndarray:
    """SEs of the entries of Σ(φ) = ``struct.from_natural(φ)`` by the delta method, with V the
    covariance of φ[local] (the other φ held fixed): ∂σ_i²/∂ln σ_i = 2σ_i² for the scale-only
    structures (off-diagonal entries are 0), central differences otherwise."""
    k = struct.k
    if isinstance(struct, _SCALE_ONLY):
        owner = np.zeros(k, dtype=int) if isinstance(struct, Identity) else np.arange(k)
        J = np.zeros((k * k, len(phi)))
        J[np.arange(k) * (k + 1), owner] = 2 * np.exp(2 * phi[owner])
        J = J[:, local]
        return np.sqrt(np.diag(J @ V @ J.T)).reshape(k, k)

    def entries(sub: np.ndarray) -> np.ndarray:
        full = phi.copy()
        full[local] = sub
        return struct.from_natural(full).ravel()

    return np.sqrt(np.diag(delta_vcov(entries, phi[local], V))).reshape(k, k)
