"""Newton fit of the Laplace likelihood for several random-effects terms (crossed or nested).

Newton steps on −2ℓ_L with its exact gradient and the Newton matrix of
:meth:`.laplace_gradient.LaplaceGradient.newton_matrix` (the profiled Hessian
plus the log-determinant's θ curvature; it misses only the ℓ‴ terms, so the
convergence is fast-linear), Levenberg-damped where that matrix is not
positive definite, from the fixed-only β and the start θ.  Each step keeps
the θ entries bounded below by 0 at least half way from the bound (the
fraction-to-the-boundary rule of interior-point methods): a full first step
can cross 0, where ℓ_L is even in a diagonal θ and its gradient vanishes.
Steps are halved until −2ℓ_L does not increase; the fit stops when the
Newton decrement gᵀN⁻¹g is below ``tol`` (1e-14: the information is taken at
this point, and on B6 a decrement of 1e-10 left there moves the standard errors
by up to 3e-6 relative).  Once it is below ``KEEP`` the
matrix is no longer recomputed (B6: 7 matrices for 14 steps).

Applies to Laplace fits without ancillary parameters whose Λ is linear in θ;
anything else, a failure, or an optimum with a variance near zero (where the
likelihood is flat and BOBYQA explores past the symmetric stationary point)
returns None and the caller's L-BFGS-B/BOBYQA path takes over.
"""
from __future__ import annotations

import numpy as np

from ..optimize import OptSummary
from ..optimize.backends import damped_step, line_search
from .fastfit import psi_jacobian
from .laplace_gradient import LaplaceGradient

NEAR_ZERO = -9.0    # a log SD below this at the optimum: left to the derivative-free path
KEEP = 1e-3         # Newton decrement below which the Newton matrix is kept (it changes little there)


def applies(model) -> bool:
    """Laplace, several terms, no ancillary parameters, every Λ linear in θ."""
    return (model.method == "laplace" and len(model.terms) > 1 and model.n_extra == 0
            and all(s.linear for t in model.terms for s in t.structures))


def newton_fit(model, beta: np.ndarray, theta: np.ndarray, tol: float = 1e-14,
               max_iter: int = 50) -> tuple[OptSummary, np.ndarray] | None:
    """Minimize −2ℓ_L from (β, θ); returns the :class:`OptSummary` and approximate standard
    errors of ψ = (β, φ) from the last Newton matrix (the finite-difference steps of the
    information), or None (see the module docstring)."""
    if not applies(model):
        return None
    lg = LaplaceGradient(model)
    lower = np.concatenate([np.full(model.p, -np.inf), model.theta_bounds()[0]])
    x = np.concatenate([beta, theta])
    opt = OptSummary(backend="newton", initial=x.copy())
    try:
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            v, g = lg(x)
            opt.fitlog.append((x.copy(), v))
            dec = np.inf
            for _ in range(max_iter):
                if not np.isfinite(v):
                    return None
                if dec > KEEP:
                    N = lg.newton_matrix()
                step = damped_step(-N, -g)
                dec = -g @ step
                if dec < tol:
                    break
                x, v, g = line_search(lg, opt, x, v, step, lower)
            else:
                return None
            if np.any(~(model.natural(x[model.p:]) > NEAR_ZERO)):
                return None
            K = psi_jacobian(model, x)
            scale = np.sqrt(np.diag(K @ np.linalg.inv(0.5 * N) @ K.T))
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        return None
    model.dense = True      # H of the size the Newton fit factored: dense for the information, too
    opt.return_code = "newton decrement below tolerance"
    opt.converged = True
    opt.final, opt.fmin, opt.n_evals = x, v, len(opt.fitlog)
    return opt, scale
