"""The fixed-effects-only model: start values and the LR test's comparison model.

As Stata's ``startvalues(fixedonly)`` and the "LR test vs. logistic model":
the same family without random effects, fitted by Newton–Raphson in β (the
observed information, with step-halving) and, for families with ancillary
parameters, by BOBYQA over those with β profiled out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..optimize import minimize


@dataclass(frozen=True)
class GLMFit:
    beta: np.ndarray
    xi: np.ndarray          # ancillary parameters, Stata's metric
    loglik: float
    converged: bool


def newton_beta(family, X, y, offset, xi, beta0, tol: float = 1e-10, max_iter: int = 100):
    """Maximize Σ log f(y | offset + Xβ, ξ) over β; returns (β, log likelihood, converged)."""
    beta = beta0.copy()
    ll, d1, d2 = family.derivs(y, offset + X @ beta, xi)
    obj = ll.sum()
    if X.shape[1] == 0:
        return beta, float(obj), True
    for _ in range(max_iter):
        grad = X.T @ d1
        info = X.T @ (X * np.maximum(-d2, 1e-300)[:, None])
        try:
            delta = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(info, grad, rcond=None)[0]
        step = 1.0
        while step > 1e-12:
            new = beta + step * delta
            ll_new = family.loglik(y, offset + X @ new, xi).sum()
            if np.isfinite(ll_new) and ll_new >= obj - 1e-12 * (1 + abs(obj)):
                break
            step *= 0.5
        if step <= 1e-12:
            return beta, float(obj), bool(np.max(np.abs(delta)) < 1e-6)
        gain, beta, obj = ll_new - obj, new, ll_new
        ll, d1, d2 = family.derivs(y, offset + X @ beta, xi)
        if np.max(np.abs(step * delta)) < tol or gain < 1e-13 * (1 + abs(obj)):
            return beta, float(obj), True
    return beta, float(obj), False


def beta_start(family, X, y, names) -> np.ndarray:
    """Zero slopes; the constant at the family's start (:meth:`cons_start`: the link of the
    mean response, or a constant-hazard fit for survival families)."""
    beta = np.zeros(X.shape[1])
    if "_cons" in names:
        beta[list(names).index("_cons")] = family.cons_start(y)
    return beta


def fit_glm(family, X, y, offset, names) -> GLMFit:
    """ML fit of the model without random effects."""
    beta0 = beta_start(family, X, y, names)
    if family.n_extra == 0:
        beta, ll, ok = newton_beta(family, X, y, offset, (), beta0)
        return GLMFit(beta, np.zeros(0), ll, ok)
    state = {"beta": beta0}

    def profile(z):
        xi = family.from_opt(z)
        beta, ll, _ = newton_beta(family, X, y, offset, xi, state["beta"])
        if np.isfinite(ll):
            state["beta"] = beta
        return -2 * ll if np.isfinite(ll) else np.inf

    z0 = family.to_opt(family.start_extra(y))
    big = np.full(len(z0), 30.0)
    opt = minimize(profile, z0, -big, big, ftol_rel=1e-13, xtol_rel=1e-10)
    xi = family.from_opt(opt.final)
    beta, ll, ok = newton_beta(family, X, y, offset, xi, state["beta"])
    return GLMFit(beta, xi, ll, ok and opt.converged)
