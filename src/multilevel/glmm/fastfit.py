"""Gradient-based fitting for a GLMM with one grouping factor.

(1) Laplace: L-BFGS-B on the exact gradient (:meth:`OneFactor.laplace`) from
the fixed-only start, β whitened by the fixed-only information; the
observed information is the central difference of the exact gradient, and
one Newton step from it polishes the optimum.
(2) Adaptive quadrature: from the Laplace optimum, Newton–Raphson on the
quadrature rule with its nodes held fixed (exact gradient and Hessian from
ℓ′ and ℓ″ at the nodes), the nodes re-centred between steps (posterior
mean and covariance for ``mvaghermite``, mode and curvature for
``mcaghermite``) until neither moves, as Stata's ``me`` commands and gllamm
(Rabe-Hesketh, Skrondal & Pickles 2005, J. Econometrics 128).  The
information is the Hessian at the last nodes.

Standard errors are reported in Stata's metric ψ = (β, ξ, φ) through the
Jacobian ∂ψ/∂x (at a stationary point Var ψ̂ = K Var x̂ Kᵀ).  Returns None
when the fast path does not apply or fails, and the caller falls back to
the derivative-free fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inference.robust import meat
from ..optimize import OptSummary
from ..optimize.backends import damped_step
from .onefactor import OneFactor

BOUNDARY = -15.0
NEAR_ZERO = -9.0   # log SD below which the Laplace optimum is treated as a boundary fit


@dataclass
class FastFit:
    opt: OptSummary
    x: np.ndarray
    vcov: np.ndarray      # in ψ = (β, ξ, φ_free)
    phi: np.ndarray
    free: np.ndarray
    loglik: float
    blups: list           # [(G, k)] b = Λû


def fast_fit(model, glm, clusters: np.ndarray | None = None) -> FastFit | None:
    """Fit ``model`` (one grouping factor) from the fixed-only fit ``glm``; None if not applicable.
    With ``clusters`` (a code per observation; adaptive quadrature only) the variance is the
    sandwich of :func:`_sandwich`."""
    if len(model.terms) != 1:
        return None
    one = OneFactor(model)
    try:
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            opt, x = _laplace_opt(model, one, glm, tol=1e-11 if model.method == "laplace" else 1e-3)
            if np.any(~(model.natural(x[model.p + model.n_extra:]) > NEAR_ZERO)):
                return None     # a variance at (or near) zero: the derivative-free path handles the boundary
            if model.method == "laplace":
                x, V, ll = _laplace_information(model, one, x, opt)
            else:
                x, V, ll = _quadrature(model, one, x, opt, clusters)
            if not (np.isfinite(ll) and np.all(np.isfinite(x))):
                return None
            return _finish(model, one, opt, x, V, ll)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        return None


# --- Laplace ---------------------------------------------------------------------------------
def _laplace_opt(model, one, glm, tol: float = 1e-11, max_iter: int = 200):
    """Newton steps on the Laplace likelihood with the exact gradient and the profiled
    Hessian ∇²P as the Newton matrix (:meth:`OneFactor.laplace`), with step-halving,
    until the Newton decrement gᵀ(−∇²P)⁻¹g is below ``tol``."""
    x = np.concatenate([glm.beta, model.family.to_opt(glm.xi), model.theta_start()])
    opt = OptSummary(backend="newton", initial=x.copy())
    L, g, Hp = one.laplace(x, hessian=True)
    for _ in range(max_iter):
        opt.fitlog.append((x.copy(), -2 * L))
        step = damped_step(Hp, g)
        if g @ step < tol:
            break
        t = 1.0
        while True:
            res = _try_laplace(one, x + t * step)
            if res is not None and res[0] >= L - 1e-10 * (1 + abs(L)):
                break
            t *= 0.5
            if t < 1e-10:
                raise ValueError("Laplace: no ascent along the Newton direction")
        x = x + t * step
        L, g, Hp = res
    else:
        raise ValueError("Laplace: Newton-Raphson did not converge")
    opt.return_code = "newton decrement below tolerance"
    opt.converged = True
    opt.final, opt.fmin, opt.n_evals = x, -2 * L, len(opt.fitlog)
    return opt, x


def _try_laplace(one, x):
    try:
        res = one.laplace(x, hessian=True)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        return None
    return res if np.isfinite(res[0]) and np.all(np.isfinite(res[1])) else None


def _steps(model, x) -> np.ndarray:
    """Finite-difference steps: relative to each parameter, with a floor."""
    return 1e-4 * np.maximum(np.abs(x), 0.05)


def _laplace_information(model, one, x, opt: OptSummary):
    """Hessian by central differences of the exact gradient, then Newton steps with it
    (the Hessian is kept: the steps are tiny) while they raise the likelihood."""
    H, g, ll = _fd_hessian(one, x)
    for _ in range(5):
        step = _newton_step(model, x, H, g)
        if step is None:
            break
        ll_t, g_t = one.laplace(x + step)
        opt.fitlog.append((x + step, -2 * ll_t))
        if not ll_t >= ll - 1e-10 * (1 + abs(ll)):
            one.laplace(x)
            break
        x, ll, g = x + step, ll_t, g_t
        if np.max(np.abs(step)) < 1e-9 * (1 + np.max(np.abs(x))):
            break
    opt.n_evals = len(opt.fitlog)
    return x, np.linalg.inv(-H), ll


def _fd_hessian(one, x):
    ll, g0 = one.laplace(x)
    d = len(x)
    h = _steps(one.model, x)
    H = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h[i]
        H[:, i] = (one.laplace(x + e)[1] - one.laplace(x - e)[1]) / (2 * h[i])
    one.laplace(x)   # leave the warm start at x
    return 0.5 * (H + H.T), g0, ll


def _newton_step(model, x, H, g):
    """−H⁻¹g if H is negative definite, else None (θ's sign is free: Λ and −Λ give the
    same likelihood, and the signs are made canonical at the end)."""
    try:
        np.linalg.cholesky(-H)
    except np.linalg.LinAlgError:
        return None
    step = np.linalg.solve(-H, g)
    return step if np.all(np.isfinite(step)) else None


# --- adaptive quadrature ----------------------------------------------------------------------
def _quadrature(model, one, x, opt: OptSummary, clusters: np.ndarray | None = None, max_iter: int = 100,
                tol: float = 1e-10, moved_tol: float = 1e-4):
    """Newton–Raphson on the fixed-node rule, re-centring the nodes between steps, until the
    Newton decrement gᵀ(−H)⁻¹g (twice the predicted gain in log likelihood) is below ``tol``
    and the adaptive nodes moved less than ``moved_tol`` in the last re-centring.  Returns
    (x, Var x̂, log likelihood), Var x̂ = (−H)⁻¹ or, with ``clusters``, the sandwich."""
    integ = model.integrator
    nodes, logw = integ.nodes, integ.logw
    method = model.method
    adaptive = method != "ghermite"   # re-centred after every step: trial points need only Q, P, U
    p, e = model.p, model.n_extra

    def centre(x, P=None, U=None):
        lam = one.term.lam(x[p + e:])
        if method == "ghermite":
            return np.zeros((one.G, one.k)), np.broadcast_to(np.eye(one.k), (one.G, one.k, one.k)), 0.0
        if method == "mcaghermite" or P is None:
            gm = one.modes_at(x)
            return (gm.u, *integ.root(gm.Hinv, lam, one.wg))
        m = np.einsum("gj,gja->ga", P, U)
        D = U - m[:, None, :]
        V = np.einsum("gj,gja,gjb->gab", P, D, D)
        return (m, *integ.root(V, lam, one.wg))

    state = centre(x)
    Q, g, H, P, U = one.quadrature(x, nodes, logw, *state, derivatives=0 if adaptive else 2)
    for it in range(max_iter):
        if adaptive:
            new = centre(x, P, U)
            moved = max(np.max(np.abs(new[0] - state[0])), np.max(np.abs(new[1] - state[1])))
            state = new
            Q, g, H, P, U = one.quadrature(x, nodes, logw, *state)
        else:
            moved = 0.0
        opt.fitlog.append((x.copy(), -2 * Q))
        step = damped_step(H, g)
        if g @ step < tol and moved < moved_tol:
            break
        t = 1.0
        while t > 1e-8:
            trial = x + t * step
            res = one.quadrature(trial, nodes, logw, *state, derivatives=0 if adaptive else 2)
            if np.isfinite(res[0]) and res[0] >= Q - 1e-10 * (1 + abs(Q)):
                break
            t *= 0.5
        else:
            break
        x = trial
        Q, g, H, P, U = res
    else:
        raise ValueError("adaptive quadrature: Newton–Raphson did not converge")
    opt.n_evals = len(opt.fitlog)
    opt.final, opt.fmin = x, -2 * Q
    V = np.linalg.inv(-H)
    if clusters is not None:
        scores = one.quadrature(x, nodes, logw, *state, derivatives=1, per_group=True)[1]
        V = _sandwich(one, V, scores if one.wg is None else scores * one.wg[:, None], clusters)
    return x, V, Q


def _sandwich(one, V: np.ndarray, scores: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """V [G/(G−1) Σ_c s_c s_cᵀ] V with s_c the sum of the group scores (rows of ``scores``) in
    cluster c (Huber 1967, White 1980; with sampling weights the pseudo-likelihood's robust
    variance, Rabe-Hesketh & Skrondal 2006; [ME] meglm, Methods and formulas)."""
    group_cluster = np.empty(one.G, dtype=np.int64)
    group_cluster[one.refs] = clusters
    S = np.zeros((int(clusters.max()) + 1, scores.shape[1]))
    np.add.at(S, group_cluster, scores)
    return V @ meat(S) @ V


# --- results in Stata's metric ------------------------------------------------------------------
def _finish(model, one, opt, x, V, ll) -> FastFit:
    p, e = model.p, model.n_extra
    theta = x[p + e:]
    phi = model.natural(theta)
    free = np.isfinite(phi) & (phi > BOUNDARY)
    if not np.all(free):
        raise ValueError("a variance at the boundary: use the derivative-free path")
    K = psi_jacobian(model, x)
    vcov = K @ V @ K.T
    x = np.concatenate([x[:p + e], model.theta_of(phi)])      # canonical signs
    beta, zxi, th = one.unpack(x)
    warm = one._warm() if np.allclose(th, theta) else None
    gm = one.modes(model.offset + model.X @ beta, one.term.lam(th), model.family.from_opt(zxi), warm)
    blups = [gm.u @ one.term.lam(th).T]
    opt.final = x
    opt.converged = True
    return FastFit(opt, x, vcov, phi, free, float(ll), blups)


def psi_jacobian(model, x) -> np.ndarray:
    """K = ∂ψ/∂x for ψ = (β, ξ in Stata's metric, φ)."""
    p, e = model.p, model.n_extra

    def psi(v):
        return np.concatenate([v[:p], model.family.from_opt(v[p:p + e]), model.natural(v[p + e:])])

    d = len(x)
    K = np.empty((len(psi(x)), d))
    for i in range(d):
        h = 1e-6 * max(abs(x[i]), 1e-2)
        E = np.zeros(d)
        E[i] = h
        K[:, i] = (psi(x + E) - psi(x - E)) / (2 * h)
    return K
