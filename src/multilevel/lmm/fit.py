"""Fit a linear mixed model: optimize the profiled deviance, then build the results."""
from __future__ import annotations

import warnings

import numpy as np

from ..design import Design
from ..inference.information import covariance_se, delta_vcov, natural_fit
from ..inference.results import EquationResult, FixedEffects, MixedResults
from ..inference.tests import lr_vs_linear, ols_loglik, wald_fixed
from ..optimize import OptSummary, minimize, minimize_newton, minimize_scalar_with_gradient, minimize_with_gradient
from . import gradient, hessian, scalar_term
from .model import LinearMixedModel, equation_blocks
from .pseudolikelihood import make_model


def optimize(model: LinearMixedModel, backend: str = "auto", start: np.ndarray | None = None) -> OptSummary:
    """Minimize the profiled deviance over θ (JSS §3.6), from ``start`` or the model's default.

    ``auto``: L-BFGS-B on the analytic gradient where it is available, finished by BOBYQA if it
    stops short; otherwise BOBYQA (``nlopt``).  Several scalar terms: Newton's method on the
    exact Hessian (:mod:`.hessian`; its last Hessian is the standard errors' information), and
    L-BFGS-B where Newton does not converge (e.g. a variance at zero).
    """
    lower, upper = model.theta_bounds()
    x0 = model.theta_start() if start is None else np.clip(np.asarray(start, dtype=float), lower, upper)
    if backend == "auto" and gradient.available(model):
        fg = lambda th: _value_and_gradient(model, th)  # noqa: E731
        newton_log = []
        if hessian.applies(model):
            newton = minimize_newton(fg, lambda th: gradient.deviance_hessian(model, model.factor(th)), x0, lower,
                                     newton_matrix=lambda th: gradient.deviance_hessian(model, model.factor(th), True))
            if newton.converged and np.all(newton.final <= upper):
                return snap_to_boundary(model, newton, lower)
            newton_log = newton.fitlog
        if scalar_term.applies(model):
            fg = scalar_term.criterion(model).value_gradient_curvature
        if model.n_theta == 1:
            opt = minimize_scalar_with_gradient(fg, x0[0], lower[0], upper[0])
        else:
            opt = _leave_symmetric_zeros(model, minimize_with_gradient(fg, x0, lower, upper), fg, lower, upper)
        if not opt.converged:
            polish = minimize(model.objective, opt.final, lower, upper, backend="nlopt")
            polish.fitlog[:0] = opt.fitlog
            opt = polish
        opt.fitlog[:0] = newton_log
    else:
        opt = minimize(model.objective, x0, lower, upper, backend="nlopt" if backend == "auto" else backend)
    return snap_to_boundary(model, opt, lower)


def _leave_symmetric_zeros(model: LinearMixedModel, opt: OptSummary, fg, lower: np.ndarray,
                           upper: np.ndarray, rounds: int = 3) -> OptSummary:
    """Restart L-BFGS-B if it stopped with a parameter on its bound of 0 while the deviance falls
    away from it.  The criterion is even in a scalar term's θ_t, so ∂/∂θ_t = 0 there and a
    gradient method can stall at θ_t = 0 (a saddle) after a step projected it onto the bound;
    two probes (θ_t = 0.01 and 0.1 × the largest θ) tell."""
    for _ in range(rounds):
        scale = max(1.0, float(np.max(np.abs(opt.final))))
        tol = 1e-8 * (1 + abs(opt.fmin))
        best = (opt.final, opt.fmin - tol)
        for i in np.flatnonzero((lower == 0) & (opt.final == 0)):
            for step in (0.01, 0.1):
                trial = opt.final.copy()
                trial[i] = step * scale
                value = model.objective(trial)
                opt.fitlog.append((trial, value))
                if value < best[1]:
                    best = (trial, value)
        if best[0] is opt.final:
            break
        again = minimize_with_gradient(fg, best[0], lower, upper)
        again.fitlog[:0] = opt.fitlog
        again.final, again.fmin = min(again.fitlog, key=lambda e: e[1])
        opt = again
    return opt


def snap_to_boundary(model: LinearMixedModel, opt: OptSummary, lower: np.ndarray) -> OptSummary:
    """Set near-zero scale parameters to exactly 0 when the deviance does not get worse
    (as MixedModels.jl's ``fit!``); the change is logged in the fitlog."""
    theta = opt.final.copy()
    scale = max(1.0, float(np.max(np.abs(theta)))) if len(theta) else 1.0
    for i in np.flatnonzero((lower == 0) & (theta > 0) & (theta < 1e-4 * scale)):
        trial = theta.copy()
        trial[i] = 0.0
        value = model.objective(trial)
        opt.fitlog.append((trial, value))
        if value <= opt.fmin + 1e-10 * (1 + abs(opt.fmin)):
            theta, opt.fmin = trial, min(value, opt.fmin)
    opt.final = theta
    opt.n_evals = len(opt.fitlog)
    opt.boundary = tuple(int(i) for i in np.flatnonzero((lower == 0) & (theta == 0)))
    return opt


def _value_and_gradient(model: LinearMixedModel, theta: np.ndarray) -> tuple[float, np.ndarray]:
    try:
        f = model.factor(theta)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros_like(theta)
    return model.deviance(f), gradient.deviance_gradient(model, f)


def fit(design: Design, reml: bool = False, backend: str = "auto", level: float = 95.0,
        options: dict | None = None) -> MixedResults:
    """Fit ``design`` by ML or REML and return frozen :class:`MixedResults`."""
    model = make_model(design, reml=reml)
    return results_at(model, optimize(model, backend), level, options)


def results_at(model: LinearMixedModel, opt: OptSummary, level: float = 95.0,
               options: dict | None = None) -> MixedResults:
    """Results at the optimizer's final θ (any θ, for output tests at fixed parameters)."""
    design, reml = model.design, model.reml
    factor = model.factor(opt.final)
    sigma2 = model.sigma2(factor)
    beta, blups = model.solve(factor)
    vcov = model.vcov_beta(factor, sigma2)
    nat = natural_fit(model, opt.final, sigma2, factor)
    equations = _equations(model, opt.final, sigma2, nat, blups)
    loglik = -0.5 * opt.fmin
    n_var = sum(s.n_natural for _, s, _ in equation_blocks(model))
    n_var += model.residual_slice.stop - model.residual_slice.start
    names = design.fixed.names
    notes = _checks(opt, design)
    rows, label = _residual_rows(model, opt.final, sigma2, nat)
    return MixedResults(
        spec=design.spec, title=f"Mixed-effects {'REML' if reml else 'ML'} regression",
        method="reml" if reml else "ml", nobs=_nobs(model), depvar=design.spec.response,
        fixed=FixedEffects(names, beta, vcov, design.fixed.omitted), equations=equations,
        residual_var=sigma2, residual_se=2 * sigma2 * _se(nat.vcov, nat.free, len(nat.phi) - 1),
        residual_phi_se=_se(nat.vcov, nat.free, len(nat.phi) - 1), loglik=loglik,
        wald=wald_fixed(names, beta, vcov),
        lr=lr_vs_linear(loglik, ols_loglik(model.raw_gram, model.n_obs, reml), n_var),
        k=model.p + n_var + 1, optsummary=opt, theta=opt.final, level=level,
        sample_notes=_sample_notes(design), warnings=notes, options=dict(options or {}), design=design,
        residual_label=label, residual_rows=rows,
        residual_extra=residual_extra(model.residual, rows, opt.final[model.residual_slice]) if rows else {})


def _nobs(model: LinearMixedModel) -> int:
    """Stata's e(N): the sum of frequency weights, but the rows with sampling weights."""
    w = model.design.weights
    return model.design.n if w is not None and w.kind == "pw" else int(model.n_obs)


def _residual_rows(model, theta, sigma2, nat) -> tuple[tuple, str]:
    """Stata's residual rows (name, estimate, SE by the delta method) for a residuals() structure."""
    if model.residual is None:
        return (), ""
    rs = model.residual
    sl = nat.slices[-1]
    idx = list(range(sl.start, sl.stop)) + [len(nat.phi) - 1]
    local = [i for i in idx if nat.free[i]]
    pos = [int(np.flatnonzero(nat.free).tolist().index(i)) for i in local]

    def values(sub: np.ndarray) -> np.ndarray:
        phi = nat.phi[idx].copy()
        phi[[idx.index(i) for i in local]] = sub
        return np.array([v for _, v in rs.report(phi[:-1], np.exp(2 * phi[-1]))])

    est = values(nat.phi[local])
    se = np.sqrt(np.diag(delta_vcov(values, nat.phi[local], nat.vcov[np.ix_(pos, pos)])))
    names = [n for n, _ in rs.report(theta[model.residual_slice], sigma2)]
    by = rs.design.spec.by
    label = rs.label + (f", by {by}" if by and not rs.label.endswith(f", by {by}") else "")
    return tuple(zip(names, est.tolist(), se.tolist())), label


def residual_extra(rs, rows: tuple, phi: np.ndarray) -> dict:
    """The structure's numbers under stable keys (``ar1_rho``, ``ma1_theta``, ``exp_range``, ...),
    as dicts over by() levels (``ar1_rho_by``) when there is a by() variable; a variance
    function's first (:func:`_variance_extra`)."""
    own, rows = _variance_extra(rs, rows) if rs.variance is not None else ({}, rows)
    return {**own, **_correlation_extra(rs, rows, phi)}


def _correlation_extra(rs, rows: tuple, phi: np.ndarray) -> dict:
    kind, order = rs.design.spec.kind, rs.design.spec.order
    prefix = {"ar": f"ar{order}", "ma": f"ma{order}", "toeplitz": "toeplitz", "exponential": "exp",
              "exchangeable": "residual"}.get(kind)
    by = rs.design.spec.by
    out: dict = {}
    for level, label in enumerate(rs.design.by_levels):
        values = {}
        for name, value, se in rows:
            head, _, base = name.rpartition(": ")
            if by and head != str(label):
                continue
            key = base.replace("(e)", "")
            if prefix and key != "var":
                values[f"{prefix}_{key}"], values[f"{prefix}_{key}_se"] = value, se
        values.update(_derived(rs, rs.level_params(phi, level), dict((n.rpartition(": ")[2], (v, s))
                                                                      for n, v, s in rows
                                                                      if not by or n.startswith(f"{label}: "))))
        for key, value in values.items():
            if by:
                base, se_suffix = (key[:-3], "_se") if key.endswith("_se") else (key, "")
                out.setdefault(f"{base}_by{se_suffix}", {})[f"{by}={label}"] = value
            else:
                out[key] = value
    return out


def _variance_extra(rs, rows: tuple) -> tuple[dict, tuple]:
    """``power_delta``, ``power_cons``, ``varexp_gamma`` (and ``_se``; ``_by`` dicts over strata)
    of a variance function, and the remaining (correlation) rows.  ``distinct``'s variances are
    ``residual_var_by`` (as ``mixed``'s ``independent, by()``, from the rows' names)."""
    vd = rs.design.variance
    if vd.kind == "distinct":
        return {}, rows[len(vd.labels):]
    n_own = 1 + rs.variance.n_params
    prefix = {"power": "power", "exponential": "varexp"}.get(vd.kind)
    out: dict = {}
    for name, value, se in rows[1:n_own]:
        head, _, base = name.rpartition(": ")
        key = f"{prefix}_{base.lstrip('_')}"
        if vd.strata_var:
            out.setdefault(f"{key}_by", {})[f"{vd.strata_var}={head}"] = value
            out.setdefault(f"{key}_by_se", {})[f"{vd.strata_var}={head}"] = se
        else:
            out[key], out[f"{key}_se"] = value, se
    return out, rows[n_own:]


def _derived(rs, phi: np.ndarray, rows: dict) -> dict:
    """Equivalent parametrizations other software reports (nlme's range, lag-1 correlations)."""
    kind, order = rs.design.spec.kind, rs.design.spec.order
    var = rows.get("var(e)", (np.nan, np.nan))[0]
    if kind == "exponential":
        rho, se = rows["rho"]
        return {"exp_range": -1 / np.log(rho), "exp_range_se": se / (rho * np.log(rho) ** 2)}
    if kind == "ar" and order > 1:
        return {f"ar{order}_lag1_corr": float(rs.structure.acf(phi, 1)[1])}
    if kind == "ma":
        theta = np.concatenate([[1.0], phi])
        return {f"ma{order}_lag1_corr": float(theta[:-1] @ theta[1:] / (theta @ theta)),
                f"ma{order}_innovation_var": float(var / (theta @ theta))}
    return {}


def _se(vcov: np.ndarray, free: np.ndarray, i: int) -> float:
    """SE of natural parameter i (NaN when it is on the boundary)."""
    if not free[i]:
        return np.nan
    j = int(np.count_nonzero(free[:i]))  # its row in vcov, which has the free parameters only
    return float(np.sqrt(vcov[j, j])) if vcov[j, j] >= 0 else np.nan


def _equations(model, theta, sigma2, nat, blups) -> tuple[EquationResult, ...]:
    blup_of = {}
    for term, b in zip(model.terms, blups):
        for eq, cs in zip(term.equations, term.col_slices):
            blup_of[id(eq)] = b[:, cs]
    row = np.cumsum(nat.free) - 1  # row of each free natural parameter in nat.vcov
    out = []
    for (eq, struct, sl), nsl in zip(equation_blocks(model), nat.slices):
        lam = struct.to_lambda(theta[sl])
        cov = sigma2 * lam @ lam.T
        phi = nat.phi[nsl]
        local = [i for i in range(nsl.start, nsl.stop) if nat.free[i]]
        pos = row[local]
        V = nat.vcov[pos][:, pos]
        phi_se = np.array([_se(nat.vcov, nat.free, i) for i in range(nsl.start, nsl.stop)])
        se = covariance_se(struct, phi, [i - nsl.start for i in local], V) if local else np.full(cov.shape, np.nan)
        counts = eq.counts if eq.counts is not None else np.bincount(eq.refs, minlength=eq.n_groups)
        out.append(EquationResult(
            label=eq.label, names=eq.names, structure=struct.label, group_vars=eq.group_key,
            count_key=eq.count_key, groups=eq.groups,
            obs_per_group=(int(counts.min()), float(counts.mean()), int(counts.max())),
            cov=cov, se=se, free_entries=_free_entries(struct.label, eq.k), phi=phi, phi_se=phi_se,
            blups=blup_of[id(eq)]))
    return tuple(out)


def _free_entries(structure: str, k: int) -> np.ndarray:
    if structure in ("Unstructured", "Exchangeable"):
        return np.ones((k, k), dtype=bool)
    return np.eye(k, dtype=bool)


def _checks(opt: OptSummary, design: Design) -> tuple[str, ...]:
    notes = []
    if not opt.converged:
        msg = (f"the optimizer stopped without converging ({opt.return_code}); try another "
               "backend (optimizer='scipy') or rescale the covariates")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        notes.append(msg)
    if opt.boundary:
        msg = ("a random-effects variance is estimated at zero (a boundary fit); "
               "consider dropping that term")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        notes.append(msg)
    if design.fixed.omitted:
        notes.append("omitted because of collinearity: " + ", ".join(design.fixed.omitted))
    return tuple(notes)


def _sample_notes(design: Design) -> tuple[str, ...]:
    s = design.sample
    notes = []
    if s.n_excluded_if_in:
        notes.append(f"{s.n_excluded_if_in} observations excluded by if/in")
    if s.n_dropped_missing:
        notes.append(f"{s.n_dropped_missing} observations dropped because of missing values")
    return tuple(notes)
