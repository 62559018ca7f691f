"""Bound-constrained minimizers behind one interface, in a registry.

``minimize(f, x0, lower, upper, backend=...)`` returns an :class:`OptSummary`.
The default is nlopt's BOBYQA (Powell 2009), the derivative-free method lme4
and MixedModels.jl use for the profiled deviance; ``"scipy"`` uses L-BFGS-B
with finite-difference gradients.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .optsummary import OptSummary

Objective = Callable[[np.ndarray], float]


def _logged(f: Objective, summary: OptSummary) -> Objective:
    def wrapped(x: np.ndarray, *_grad) -> float:
        value = float(f(np.array(x, dtype=float)))
        summary.fitlog.append((np.array(x, dtype=float), value))
        return value if np.isfinite(value) else 1e300
    return wrapped


def _nlopt(f: Objective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, summary: OptSummary,
           ftol_rel: float, xtol_rel: float, max_evals: int) -> None:
    import nlopt

    n = len(x0)
    algorithm = nlopt.LN_BOBYQA
    opt = nlopt.opt(algorithm, n)
    opt.set_min_objective(_logged(f, summary))
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(np.where(np.isfinite(upper), upper, 1e30))
    opt.set_ftol_rel(ftol_rel)
    opt.set_xtol_rel(xtol_rel)
    opt.set_maxeval(max_evals)
    opt.set_initial_step(np.maximum(0.25 * np.abs(x0), 0.1))
    try:
        x = opt.optimize(np.clip(x0, lower, upper))
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:  # the tolerance is below the objective's own precision: the best
        x, code = min(summary.fitlog, key=lambda e: e[1])[0], "ROUNDOFF_LIMITED"  # point is the answer
    summary.return_code = {1: "SUCCESS", 2: "STOPVAL_REACHED", 3: "FTOL_REACHED", 4: "XTOL_REACHED",
                           5: "MAXEVAL_REACHED", 6: "MAXTIME_REACHED"}.get(code, str(code))
    summary.converged = code in (1, 3, 4, "ROUNDOFF_LIMITED")
    summary.final = np.asarray(x)


def _scipy(f: Objective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, summary: OptSummary,
           ftol_rel: float, xtol_rel: float, max_evals: int) -> None:
    from scipy.optimize import minimize as sp_minimize

    bounds = [(lo, hi if np.isfinite(hi) else None) for lo, hi in zip(lower, upper)]
    res = sp_minimize(_logged(f, summary), np.clip(x0, lower, upper), method="L-BFGS-B", bounds=bounds,
                      options={"ftol": max(ftol_rel, 1e-12), "gtol": 1e-8, "maxfun": max_evals})
    summary.return_code = str(res.message)
    summary.converged = bool(res.success)
    summary.final = np.asarray(res.x)


def minimize_with_gradient(fg, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                           max_evals: int = 2000) -> OptSummary:
    """L-BFGS-B on an objective that returns (value, gradient); every evaluation is logged."""
    from scipy.optimize import minimize as sp_minimize

    summary = OptSummary(backend="lbfgs", initial=np.array(x0, dtype=float))

    def wrapped(x: np.ndarray):
        value, grad = fg(np.array(x, dtype=float))
        summary.fitlog.append((np.array(x, dtype=float), float(value)))
        if _at_rounding_floor(summary.fitlog):
            raise _RoundingFloor
        if not np.isfinite(value):
            return 1e300, np.zeros_like(x)
        return value, grad

    bounds = [(lo, hi if np.isfinite(hi) else None) for lo, hi in zip(lower, upper)]
    try:
        res = sp_minimize(wrapped, np.clip(x0, lower, upper), jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-14, "gtol": 1e-9, "maxfun": max_evals, "maxcor": 20})
        summary.return_code = str(res.message)
        summary.converged = bool(res.success)
    except _RoundingFloor:
        summary.return_code = "steps below the rounding floor"
        summary.converged = True
    return _finish(summary, lower)


class _RoundingFloor(Exception):
    """L-BFGS-B's line search probing points that differ only by rounding."""


def _at_rounding_floor(fitlog: list, last: int = 3) -> bool:
    """The last ``last`` points agree to 1e-8 (relative) and their values to 1e-15 relative: the
    deviance (a sum over all rows: 4·10⁷ at 10⁷ rows) has no more digits to give, and L-BFGS-B's
    relative-reduction test, which needs a strictly smaller value, would go on evaluating."""
    if len(fitlog) < last:
        return False
    xs = np.array([x for x, _ in fitlog[-last:]])
    fs = np.array([f for _, f in fitlog[-last:]])
    if not np.all(np.isfinite(fs)):
        return False
    return bool(np.all(np.abs(xs - xs[-1]) <= 1e-8 * (1 + np.abs(xs[-1])))
                and np.ptp(fs) <= 1e-15 * (1 + abs(fs[-1])))


def minimize_scalar_with_gradient(fg, x0: float, lower: float, upper: float, gtol: float = 1e-9,
                                  xtol: float = 1e-12, max_evals: int = 200) -> OptSummary:
    """One parameter: safeguarded Newton on the derivative inside a shrinking bracket, bisection
    when the step leaves it.  ``fg(x)`` gives (f, f') or (f, f', f''); without f'' the second
    derivative is the secant one.

    Superlinear, about half the evaluations of L-BFGS-B on the one-parameter profiled
    deviance of a random-intercept model (fewer still with f''), and without its per-iteration
    overhead.  Stops at |f'| ≤ gtol, or when the bracket is narrower than xtol (relative).
    """
    summary = OptSummary(backend="secant", initial=np.array([x0], dtype=float))

    def ev(x: float) -> tuple[float, float, float]:
        """f, f' and f'' (NaN when fg does not give it) at x."""
        value, grad, *second = fg(np.array([x]))
        summary.fitlog.append((np.array([x]), float(value)))
        if not np.isfinite(value):
            return np.inf, np.nan, np.nan
        return float(value), float(grad[0]), float(second[0]) if second else np.nan

    lo, hi = float(lower), float(upper)
    x = min(max(float(x0), lo), hi)
    v, g, f2 = ev(x)
    prev = None
    summary.return_code = "MAXEVAL_REACHED"
    while len(summary.fitlog) < max_evals:
        if abs(g) <= gtol:
            summary.return_code, summary.converged = "GTOL_REACHED", True
            break
        if g > 0:
            hi = x
        else:
            lo = x
        if hi - lo <= xtol * (1 + abs(x)):
            summary.return_code, summary.converged = "XTOL_REACHED", True
            break
        step = None
        if f2 > 0:
            step = x - g / f2
        elif prev is not None and prev[1] != g:
            curvature = (g - prev[1]) / (x - prev[0])
            if curvature > 0:
                step = x - g / curvature
        if step is None and prev is None:  # first step: a small probe gives the secant its slope
            step = x - np.sign(g) * 0.05 * max(abs(x), 0.1)
        if step is None or not lo < step < hi:  # outside the bracket: halve it (or expand it)
            step = (0.5 * (lo + hi) if np.isfinite(hi) else max(2 * x, x + 1.0)) if g < 0 else \
                   (0.5 * (lo + x) if lo > 0 or x < 1e-8 else 0.25 * x)
        prev = (x, g)
        x = step
        v, g, f2 = ev(x)
        if not np.isfinite(v):  # out of the domain: retreat toward the last good point
            x, g = prev
            hi = min(hi, step) if step > x else hi
            lo = max(lo, step) if step < x else lo
            prev = None
    return _finish(summary, np.array([lower]))


def minimize_newton(fg, hessian, x0: np.ndarray, lower: np.ndarray, tol: float = 1e-15,
                    max_iter: int = 20, newton_matrix=None, far: float = 1.0) -> OptSummary:
    """Newton's method with an exact Hessian: steps −H⁻¹g (Levenberg-damped where H is not positive
    definite), halved until f does not increase and kept at least half way from the lower bounds
    (:func:`line_search`); converged once the Newton decrement gᵀH⁻¹g is below tol·(1 + |f|), or
    the step below 1e-10 relative (the rounding floor), at the point where it was computed
    (``final``: the last evaluation).  ``fg(x)`` gives (f, ∇f), ``hessian(x)`` ∇²f at the point fg saw last, or None where it is not available;
    ``newton_matrix(x)``, if given, a cheaper approximation whose step is taken until its decrement
    is first below ``far`` (far from the optimum the step's error is the nonlinearity's, not the
    matrix's).  Not converged (the caller falls back) when the Hessian is missing, no step
    descends, or three steps in a row are held back by a bound (an optimum on the boundary, where
    Newton only creeps toward it)."""
    summary = OptSummary(backend="newton", initial=np.array(x0, dtype=float))
    summary.return_code = "newton stopped"
    x = np.clip(np.array(x0, dtype=float), lower, np.inf)
    v, g = fg(x)
    summary.fitlog.append((x.copy(), float(v)))
    held = 0
    for _ in range(max_iter):
        if not np.isfinite(v):
            break
        step = _newton_step(newton_matrix(x), g) if newton_matrix is not None else None
        if step is None or -g @ step <= far:
            newton_matrix = None  # near the optimum: the exact Hessian from here on
            step = _newton_step(hessian(x), g)
            if step is None:
                break
            if -g @ step < tol * (1 + abs(v)) or np.all(np.abs(step) <= 1e-10 * (1 + np.abs(x))):
                summary.return_code, summary.converged = "newton decrement below tolerance", True
                break
        held = held + 1 if _bound_limited(x, step, lower) else 0
        try:
            x, v, g = line_search(fg, summary, x, v, step, lower)
        except ValueError:
            break
        if held == 3:
            summary.return_code = "newton held back by a bound"
            break
    summary.n_evals = len(summary.fitlog)
    summary.final, summary.fmin = x, float(v)
    summary.boundary = ()
    return summary


def _newton_step(H: np.ndarray | None, g: np.ndarray) -> np.ndarray | None:
    """−H⁻¹g (damped, :func:`damped_step`), or None without H or when it cannot be made definite."""
    if H is None:
        return None
    try:
        return damped_step(-H, -g)
    except np.linalg.LinAlgError:
        return None


def _bound_limited(x: np.ndarray, step: np.ndarray, lower: np.ndarray) -> bool:
    """Whether the full step from x would have gone past half the distance to a lower bound."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return bool(np.any((step < 0) & np.isfinite(lower) & (0.5 * (x - lower) < -step)))


def damped_step(H, g):
    """Newton step −H⁻¹g, or a Levenberg-damped one if −H is not positive definite."""
    lam = 0.0
    scale = np.max(np.abs(np.diag(H))) + 1e-12
    for _ in range(30):
        try:
            np.linalg.cholesky(-H + lam * np.eye(len(g)))
            return np.linalg.solve(-H + lam * np.eye(len(g)), g)
        except np.linalg.LinAlgError:
            lam = max(2 * lam, 1e-6 * scale)
    raise np.linalg.LinAlgError("the Hessian cannot be made definite")


def line_search(fg, opt: OptSummary, x, v, step, lower):
    """The longest t ≤ 1 (halving) with f(x + t·step) ≤ f(x) (to rounding), within half the
    distance to the lower bounds (the fraction-to-the-boundary rule of interior-point methods);
    (x, f, ∇f) there.  Raises ValueError when halving finds no such t."""
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where((step < 0) & np.isfinite(lower), 0.5 * (x - lower) / -step, np.inf)
    t = min(1.0, float(room.min()))
    while t > 1e-10:
        trial = x + t * step
        vt, gt = fg(trial)
        opt.fitlog.append((trial, vt))
        if vt <= v + 1e-10 * (1 + abs(v)):
            return trial, vt, gt
        t *= 0.5
    raise ValueError("no descent along the Newton direction")


def _finish(summary: OptSummary, lower: np.ndarray) -> OptSummary:
    """Best logged point, evaluation count and the parameters at a lower bound of 0."""
    summary.n_evals = len(summary.fitlog)
    best = min(summary.fitlog, key=lambda e: e[1])
    summary.final, summary.fmin = best[0], best[1]
    summary.boundary = tuple(int(i) for i in np.flatnonzero((np.asarray(lower) == 0) & (summary.final <= 1e-8)))
    return summary


BACKENDS = {"nlopt": _nlopt, "scipy": _scipy}


def minimize(f: Objective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, backend: str = "nlopt",
             ftol_rel: float = 1e-15, xtol_rel: float = 1e-12, max_evals: int = 10000) -> OptSummary:
    """Minimize ``f`` over the box [lower, upper] from ``x0``; every evaluation is logged."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown optimizer backend {backend!r}; choose one of {sorted(BACKENDS)}")
    summary = OptSummary(backend=backend, initial=np.array(x0, dtype=float))
    BACKENDS[backend](f, np.asarray(x0, dtype=float), np.asarray(lower, dtype=float),
                      np.asarray(upper, dtype=float), summary, ftol_rel, xtol_rel, max_evals)
    return _finish(summary, np.asarray(lower))
