"""``menl`` by Lindstrom & Bates (1990), as Stata's menl and R's nlme ([ME] menl, Methods and
formulas; Pinheiro & Bates 2000, §7.2).

With b = Λu per group (u spherical, the LMM core's parametrization) it alternates

1. PNLS: given Λ, minimize ‖y − f(β, Λu)‖² + ‖u‖² over (β, u) by Gauss–Newton with step
   halving (sparse normal equations: each observation depends on its groups' u only);
2. LME: linearize f at (β̂, b̂): X = ∂f/∂β, Z = ∂f/∂b, w = y − f̂ + Xβ̂ + Zb̂, and fit the linear
   mixed model w = Xβ + Zb + ε (ML or REML) with the LMM core for the new Λ and σ²,

until β and θ stop changing.  The log likelihood, SEs and table are those of the linearized
model at convergence (as nlme and menl report them).

Within-group errors Var(e_j) = σ² G_j Corr_j G_j (``resvariance()``/``rescorrelation()``,
nonlinear/residuals.py): PNLS minimizes ‖C⁻¹(y − f)‖² + ‖u‖² with C = chol(G Corr G) at the last
LME step's parameters, and the LME step fits the linearized model with that structure
(lmm/rside.py), its parameters estimated with Λ and σ².  For ``_yhat`` the variance covariate
is the fitted values of the previous PNLS step, fixed in the LME step (Pinheiro & Bates 2000,
§7.5; [ME] menl, Methods and formulas).
"""
from __future__ import annotations

import functools
import re
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import least_squares

from ..blas import fitting_threads
from ..design import Design
from ..design.fixed import FixedTerm, build
from ..design.random import ReEquation, group_codes
from ..design.sample import select
from ..spec.errors import DataError, SpecError
from ..spec.model import ModelSpec, ReLevel
from .expression import MenlSpec, parse_menl


class _Level:
    """The random effects sharing one grouping (``tree``, or ``wafer>site`` for nested groups)."""

    def __init__(self, group: str, names: list[str], covariance: str, frame: pd.DataFrame):
        self.group, self.names, self.covariance = group, names, covariance
        self.key = tuple(group.split(">"))
        self.refs, self.labels = group_codes(frame, self.key)
        self.n_groups, self.k = len(self.labels), len(names)


class NonlinearModel:
    """f(β, b) on the estimation sample, its derivatives, PNLS and the linearized LMM."""

    def __init__(self, spec: MenlSpec, data: pd.DataFrame):
        self.spec = spec
        self.sample = select(data, spec.variables, None, None)  # unknown variables: DataError
        frame = data.iloc[self.sample.rows].reset_index(drop=True)
        used = list(dict.fromkeys([spec.response] + re.findall(r'D\["(\w+)"\]', spec.code)))
        for name in used:
            if not pd.api.types.is_numeric_dtype(frame[name]):
                raise DataError(f"variable '{name}' must be numeric (it is {frame[name].dtype})")
        self.D = {name: frame[name].to_numpy(dtype=float) for name in used}
        self.y = self.D[spec.response]
        self.n = len(self.y)
        self.f = spec.function()
        self.levels = self._levels(frame)
        self.names, self.combined = self._linear_combinations(frame)
        self.p = len(self.names)
        self.frame = frame
        self.residual_key = self._residual_key() if spec.residuals else None

    def _levels(self, frame: pd.DataFrame) -> list[_Level]:
        by_group: dict[str, list[str]] = {}
        for r in self.spec.random:
            by_group.setdefault(r.group, []).append(r.name)
        levels = []
        for group, names in by_group.items():
            kinds = {kind for key, kind in self.spec.covariances.items() if set(key) & set(names)}
            if any(set(key) - set(names) for key in self.spec.covariances if set(key) & set(names)):
                raise SpecError(f"covariance() mixes random effects of different groups: {self.spec.covariances}")
            levels.append(_Level(group, names, kinds.pop() if len(kinds) == 1 else "independent", frame))
            if levels[-1].n_groups < 2:
                raise DataError(f"level '{group}' has a single group; a random effect needs at least two groups")
        return levels

    def _linear_combinations(self, frame: pd.DataFrame) -> tuple[list[str], dict]:
        """The coefficients' names, each linear combination's ``name:`` expanded to its columns'
        (``phi1:x1 phi1:1.female phi1:_cons``: the factor-variable design of ``mixed``,
        design/fixed.py), and per combination (X, positions of its coefficients)."""
        names, combined = [], {}
        for name in self.spec.params:
            if not name.endswith(":"):
                names.append(name)
                continue
            lc = self.spec.lincombs[name[:-1]]
            term = build(lc.formula, lc.constant, frame)
            if term.omitted:
                warnings.warn(f"menl: {lc.name}: {', '.join(term.omitted)} omitted (collinear)", stacklevel=3)
            combined[lc.name] = (term.X, np.arange(len(names), len(names) + len(term.names)))
            names += [f"{lc.name}:{c}" for c in term.names]
        return names, combined

    def _residual_key(self) -> tuple[str, ...]:
        """The groups of the within-group errors: the lowest level, i.e. the level whose groups lie
        within one group of every other level (the whitening C⁻¹ then keeps each level's columns),
        or the groups of group() within it ([ME] menl: grpvar is nested within the levels)."""
        res = self.spec.residuals
        if not self.levels:                      # a marginal model: the groups of group()
            return (res.group,)
        nested = [lvl for lvl in self.levels
                  if all(other is lvl or np.all(pd.Series(other.refs).groupby(lvl.refs).nunique() == 1)
                         for other in self.levels)]
        correlated = res.correlation.kind != "independent" or res.correlation.by
        if not nested and correlated:
            raise SpecError("menl: a residual correlation structure needs one lowest level (groups nested in "
                            "those of every other random effect); "
                            f"{', '.join(lvl.group for lvl in self.levels)} are not nested")
        lowest = max(nested or self.levels, key=lambda lvl: lvl.n_groups)
        if not nested and res.group:
            raise SpecError(f"menl: group({res.group}) needs one lowest level to nest in; "
                            f"{', '.join(lvl.group for lvl in self.levels)} are not nested")
        return lowest.key + ((res.group,) if res.group and res.group not in lowest.key else ())

    def residual_design(self, fitted: np.ndarray | None):
        """The within-group error structure on the sample, with v = ``fitted`` for ``_yhat``."""
        return self.spec.residuals.design(self.residual_key, self.frame, fitted)

    # --- the mean function and its derivatives ------------------------------------------
    def mean(self, beta: np.ndarray, b: list[np.ndarray]) -> np.ndarray:
        P = dict(zip(self.names, beta))
        U = {name: lvl_b[:, j][lvl.refs] for lvl, lvl_b in zip(self.levels, b) for j, name in enumerate(lvl.names)}
        XB = {name: X @ beta[at] for name, (X, at) in self.combined.items()}
        with np.errstate(all="ignore"):
            out = np.asarray(self.f(P, U, self.D, XB), dtype=float)
        return np.broadcast_to(out, (self.n,)).copy()

    def jacobians(self, beta: np.ndarray, b: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """X = ∂f/∂β (n × p) and, per level, Z = ∂f/∂b_g(i) (n × k), by central differences."""
        X = np.empty((self.n, self.p))
        for j in range(self.p):
            h = 1e-6 * max(1.0, abs(beta[j]))
            e = np.zeros(self.p)
            e[j] = h
            X[:, j] = (self.mean(beta + e, b) - self.mean(beta - e, b)) / (2 * h)
        Zs = []
        for li, lvl in enumerate(self.levels):
            Z = np.empty((self.n, lvl.k))
            for j in range(lvl.k):
                h = 1e-6 * max(1.0, float(np.max(np.abs(b[li][:, j]))))
                up = [x.copy() for x in b]
                dn = [x.copy() for x in b]
                up[li][:, j] += h
                dn[li][:, j] -= h
                Z[:, j] = (self.mean(beta, up) - self.mean(beta, dn)) / (2 * h)
            Zs.append(Z)
        return X, Zs

    # --- PNLS --------------------------------------------------------------------------
    def pnls(self, beta: np.ndarray, u: list[np.ndarray], lams: list[np.ndarray], max_iter: int = 200,
             white=None):
        """Minimize ‖C⁻¹(y − f(β, Λu))‖² + ‖u‖² over (β, u) (Gauss–Newton, step halving), with
        ``white(A)`` = C⁻¹A for Var(e) = σ²CCᵀ (the within-group errors; identity by default)."""
        white = white or (lambda A: A)

        def objective(beta, u):
            r = white((self.y - self.mean(beta, [x @ lam.T for x, lam in zip(u, lams)]))[:, None])[:, 0]
            return float(r @ r + sum(np.sum(x * x) for x in u)), r

        obj, r = objective(beta, u)
        for _ in range(max_iter):
            b = [x @ lam.T for x, lam in zip(u, lams)]
            X, Zs = self.jacobians(beta, b)
            W = white(np.column_stack([X] + [Z @ lam for Z, lam in zip(Zs, lams)]))   # C⁻¹ ∂f/∂(β, u)
            blocks = [sparse.csr_matrix(W[:, :self.p])]
            ZLs = np.split(W[:, self.p:], np.cumsum([lvl.k for lvl in self.levels])[:-1], axis=1)
            for lvl, ZL in zip(self.levels, ZLs):
                rows = np.repeat(np.arange(self.n), lvl.k)
                cols = (lvl.refs[:, None] * lvl.k + np.arange(lvl.k)).ravel()
                blocks.append(sparse.csr_matrix((ZL.ravel(), (rows, cols)), shape=(self.n, lvl.n_groups * lvl.k)))
            J = sparse.hstack(blocks).tocsc()
            q = J.shape[1] - self.p
            pen = sparse.diags(np.concatenate([np.zeros(self.p), np.ones(q)]))
            uvec = np.concatenate([np.zeros(0)] + [x.ravel() for x in u])
            A = (J.T @ J + pen).tocsc()
            g = J.T @ r - np.concatenate([np.zeros(self.p), uvec])
            try:
                step = sparse.linalg.spsolve(A, g) if A.shape[0] > 400 else np.linalg.solve(A.toarray(), g)
            except (np.linalg.LinAlgError, RuntimeError):
                step = np.linalg.lstsq(A.toarray(), g, rcond=None)[0]
            t = 1.0
            while t > 1e-10:
                new_beta = beta + t * step[:self.p]
                new_u = self._split(uvec + t * step[self.p:])
                new_obj, new_r = objective(new_beta, new_u)
                if np.isfinite(new_obj) and new_obj <= obj:
                    break
                t *= 0.5
            else:
                break
            gain = obj - new_obj
            beta, u, obj, r = new_beta, new_u, new_obj, new_r
            if gain <= 1e-12 * (1 + obj) and np.max(np.abs(t * step)) <= 1e-10 * (1 + np.max(np.abs(beta))):
                break
        return beta, u

    def _split(self, vec: np.ndarray) -> list[np.ndarray]:
        out, pos = [], 0
        for lvl in self.levels:
            size = lvl.n_groups * lvl.k
            out.append(vec[pos:pos + size].reshape(lvl.n_groups, lvl.k))
            pos += size
        return out

    # --- the linearized LMM ---------------------------------------------------------------
    def linearized_design(self, beta: np.ndarray, b: list[np.ndarray], residual=None) -> Design:
        X, Zs = self.jacobians(beta, b)
        w = self.y - self.mean(beta, b) + X @ beta + sum(np.sum(Z * lb[lvl.refs], axis=1)
                                                          for lvl, Z, lb in zip(self.levels, Zs, b))
        spec = ModelSpec(command="menl", response=self.spec.response, fixed=" + ".join(self.names),
                         fixed_stata=" ".join(self.names), constant=False,
                         levels=tuple(ReLevel(lvl.key, tuple(lvl.names), False, lvl.covariance, lvl.group)
                                      for lvl in self.levels),
                         method=self.spec.method, options=dict(self.spec.options))
        fixed = FixedTerm(X, tuple(self.names), (), None, tuple(self.names))
        equations = tuple(ReEquation(i, lvl.group, lvl.key, lvl.refs, lvl.labels, Z, tuple(lvl.names),
                                     lvl.covariance) for i, (lvl, Z) in enumerate(zip(self.levels, Zs)))
        return Design(spec, w, fixed, equations, self.sample, residual)

    def starts(self, n_candidates: int = 2000, n_polish: int = 8, n_keep: int = 3) -> list[np.ndarray]:
        """Fixed effects from nonlinear least squares without random effects: the distinct local
        solutions found, best first (a model can have several with equal fit, e.g. the flip-flop
        of ka and ke in a one-compartment model, which the random effects then tell apart).

        Parameters given in ``initial()`` or ``{name=#}`` start there.  For the others a seeded
        random search over values on the scales of the data (0, ±1, ±0.1, ±10 and ± the mean,
        SD, reciprocal mean and their logs of the response and each covariate, a linear
        combination's columns included) ranks the
        candidates by the residual sum of squares, and Levenberg–Marquardt runs from the best.
        """
        zero_b = [np.zeros((lvl.n_groups, lvl.k)) for lvl in self.levels]
        scales = [1.0, 0.1, 10.0]
        for v in [*self.D.values(), *(col for X, _ in self.combined.values() for col in X.T)]:
            a = float(np.mean(np.abs(v)))
            scales += [a, float(np.std(v)), 1 / a if a > 0 else 1.0]
        scales = [s for s in scales if np.isfinite(s) and s > 0]
        values = np.unique(np.round([0.0] + [sign * v for s in scales for v in (s, np.log(s)) for sign in (1, -1)], 12))
        rng = np.random.default_rng(20261125)
        fixed = np.array([self.spec.initial.get(name, np.nan) for name in self.names])
        grid = rng.choice(values, size=(n_candidates, self.p))
        grid[0] = np.where(np.isnan(fixed), 0.0, fixed)
        grid[:, ~np.isnan(fixed)] = fixed[~np.isnan(fixed)]
        sse = np.array([np.sum((self.y - self.mean(x, zero_b)) ** 2) for x in grid])
        sse[~np.isfinite(sse)] = np.inf
        found = []
        for x0 in grid[np.argsort(sse)[:n_polish]]:
            if not np.isfinite(np.sum((self.y - self.mean(x0, zero_b)) ** 2)):
                break
            fit = least_squares(lambda bt: np.nan_to_num(self.y - self.mean(bt, zero_b), nan=1e10, posinf=1e10,
                                                         neginf=-1e10), x0, method="lm", x_scale="jac")
            found.append(fit)
        if not found:
            raise SpecError("menl: no start values give a finite mean function; give initial(name # ...) "
                            "or {name=#} in the expression")
        found.sort(key=lambda f: f.cost)
        distinct: list[np.ndarray] = []
        for fit in found:
            if fit.cost <= 1.01 * found[0].cost + 1e-12 and not any(
                    np.allclose(fit.x, x, rtol=1e-3, atol=1e-6) for x in distinct):
                distinct.append(fit.x)
        return distinct[:n_keep]


@fitting_threads
def fit(text: str, data: pd.DataFrame, tol: float = 1e-9, max_iter: int = 500):
    """Fit ``menl`` and return :class:`~multilevel.inference.results.MixedResults` of the
    linearized model at convergence, titled as Stata's menl.  From each distinct start
    (:meth:`NonlinearModel.starts`) the iterations run to convergence; the highest log
    likelihood wins."""
    from ..lmm.fit import results_at

    spec = parse_menl(text)
    model = NonlinearModel(spec, data)
    runs = [_lindstrom_bates(model, beta, tol, max_iter) for beta in model.starts()]
    lmm, opt, converged = min(runs, key=lambda run: run[1].fmin)
    if not converged:
        warnings.warn("menl: the Lindstrom-Bates iterations did not converge; the results are from the "
                      "last iteration", RuntimeWarning, stacklevel=2)
    res = results_at(lmm, opt, float(spec.options.get("level", 95.0)), {**spec.options, "nolrtest": True})
    return replace(res, title=f"Mixed-effects {'REML' if spec.method == 'reml' else 'ML'} nonlinear regression")


# The LME step of a residual structure is optimized without derivatives (BOBYQA), which locates θ
# to about 1e-6 relative: there the iterations stop at that change (nlme's and menl's default).
DERIVATIVE_FREE_TOL = 1e-6


def _lindstrom_bates(model: NonlinearModel, beta: np.ndarray, tol: float, max_iter: int):
    """Alternate PNLS and the linearized LMM from β; (last LMM, its optimum, converged)."""
    from ..lmm import gradient
    from ..lmm.fit import optimize
    from ..lmm.model import LinearMixedModel

    u = [np.zeros((lvl.n_groups, lvl.k)) for lvl in model.levels]
    lams = [0.5 * np.eye(lvl.k) for lvl in model.levels]
    theta = None
    residuals = model.spec.residuals
    fitted = model.mean(beta, [x @ lam.T for x, lam in zip(u, lams)]) if residuals else None
    white = None
    for _ in range(max_iter):
        beta, u = model.pnls(beta, u, lams, white=white)
        b = [x @ lam.T for x, lam in zip(u, lams)]
        if residuals is not None and residuals.uses_yhat:
            fitted = model.mean(beta, b)          # v of the variance function, fixed in the next LME step
        rd = model.residual_design(fitted) if residuals else None
        lmm = LinearMixedModel(model.linearized_design(beta, b, rd), reml=model.spec.method == "reml")
        try:
            opt = optimize(lmm, start=theta)
        except np.linalg.LinAlgError:
            break
        new_lams = [_level_lambda(lmm, opt.final, lvl) for lvl in model.levels]
        new_beta, _ = lmm.solve(lmm.factor(opt.final))
        change = max(np.max(np.abs(new_beta - beta) / (1 + np.abs(beta))),
                     np.max(np.abs(opt.final - theta) / (1 + np.abs(theta))) if theta is not None else np.inf)
        u = [_respherize(x @ lam.T, new) for x, lam, new in zip(u, lams, new_lams)]
        beta, lams, theta = new_beta, new_lams, opt.final.copy()
        if lmm.residual is not None:
            white = functools.partial(_whitened, lmm.residual, theta[lmm.residual_slice])
        if change < (tol if gradient.available(lmm) else max(tol, DERIVATIVE_FREE_TOL)):
            return lmm, opt, True
    return lmm, opt, False


def _whitened(residual, phi: np.ndarray, A: np.ndarray) -> np.ndarray:
    """C⁻¹A with Var(e) = σ²CCᵀ of the residual model at φ (for PNLS)."""
    return residual.whiten(phi, A)[0]


def _level_lambda(lmm, theta: np.ndarray, lvl: _Level) -> np.ndarray:
    """Λ of one level (its random effects' term in the linearized LMM)."""
    term = next(t for t in lmm.terms if t.equations[0].label == lvl.group)
    sl = lmm._theta_slices[lmm.terms.index(term)]
    return term.lam(theta[sl])


def _respherize(b: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """u with b = Λu for the new Λ (least squares where Λ is singular)."""
    return np.linalg.lstsq(lam, b.T, rcond=None)[0].T
