"""Frozen results of a mixed-model fit; presentation only reads them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..optimize import OptSummary
from .distributions import critical_value, normal_two_sided_p, t_critical, t_two_sided_p
from .tests import TestResult


@dataclass(frozen=True)
class FixedEffects:
    """β̂ with Stata names, its covariance matrix, and omitted collinear columns."""

    names: tuple[str, ...]
    coef: np.ndarray
    vcov: np.ndarray
    omitted: tuple[str, ...] = ()

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))


@dataclass(frozen=True)
class EquationResult:
    """One random-effects equation: covariance estimate, SEs and conditional modes.

    ``cov`` and ``se`` are on the variance scale (Stata's default display);
    ``phi``/``phi_se`` are the Stata-metric parameters (log SDs, atanh
    correlations) behind the SEs and CIs; ``se`` is NaN where a parameter
    is on the boundary or the structure fixes the entry at 0.
    """

    label: str
    names: tuple[str, ...]
    structure: str
    group_vars: tuple[str, ...]
    count_key: str
    groups: tuple
    obs_per_group: tuple[int, float, int]
    cov: np.ndarray
    se: np.ndarray
    free_entries: np.ndarray      # bool k×k: entries the structure estimates
    phi: np.ndarray
    phi_se: np.ndarray            # SE of each Stata-metric parameter (NaN on the boundary)
    blups: np.ndarray             # (G, k) conditional modes b̂

    @property
    def n_groups(self) -> int:
        return len(self.groups)


class FitSummary:
    """Information criteria and convergence, shared by every results class
    (needs ``loglik``, ``k``, ``nobs`` and ``optsummary``).  AIC = −2ℓ + 2k,
    BIC = −2ℓ + k ln N with N the number of observations (Stata's convention)."""

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.k

    @property
    def bic(self) -> float:
        return -2 * self.loglik + self.k * np.log(self.nobs)

    @property
    def converged(self) -> bool:
        return self.optsummary.converged


@dataclass(frozen=True)
class MixedResults(FitSummary):
    """Everything a fitted mixed model reports; immutable.

    ``str(res)`` gives Stata's table, ``res._repr_html_()`` the same table in
    HTML, and ``res.to_dict()`` the form of the conformance cases' "results".
    """

    spec: Any
    title: str
    method: str
    nobs: int
    depvar: str
    fixed: FixedEffects
    equations: tuple[EquationResult, ...]
    residual_var: float
    residual_se: float
    residual_phi_se: float
    loglik: float
    wald: TestResult
    lr: TestResult
    k: int
    optsummary: OptSummary
    theta: np.ndarray
    level: float = 95.0
    sample_notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    design: Any = None            # the Design fitted (for predictions and postestimation)
    residual_label: str = ""      # residuals() structure, e.g. "AR(1)" ("" for independent)
    residual_rows: tuple = ()     # (name, estimate, SE) of its parameters as Stata lists them
    residual_extra: dict = field(default_factory=dict)  # its numbers under stable keys (ar1_rho, ...)
    df_method: str = ""           # dfmethod() as the key of its DF in to_dict(): "residual",
                                  # "satterthwaite_eim" (Stata's default), "satterthwaite" (oim), "kenwardroger"
    df: tuple | None = None       # DF of each fixed effect under df_method
    vce: str = ""                 # "" (observed information) or "Robust"
    clusters: tuple = ()          # (number of clusters, cluster variable) for a robust vce

    # --- summaries: aic, bic, converged from FitSummary ------------------------------
    @property
    def fixed_effects(self) -> pd.DataFrame:
        """Coefficient table: estimate, SE, z, P>|z| and the CI at ``level``."""
        coef, se = self.fixed.coef, self.fixed.se
        z = coef / se
        index = pd.Index(self.fixed.names, name="term")
        if self.df is not None:  # dfmethod(): t statistics with per-coefficient DF
            df = np.asarray(self.df)
            crit = t_critical(self.level, df)
            return pd.DataFrame({"estimate": coef, "se": se, "t": z, "df": df, "p": t_two_sided_p(z, df),
                                 "ci_lower": coef - crit * se, "ci_upper": coef + crit * se}, index=index)
        crit = critical_value(self.level)
        return pd.DataFrame({"estimate": coef, "se": se, "z": z, "p": normal_two_sided_p(z),
                             "ci_lower": coef - crit * se, "ci_upper": coef + crit * se}, index=index)

    @property
    def random_effects(self) -> pd.DataFrame:
        """Random-effects parameters on the variance scale with SEs and CIs."""
        from ..output.rows import random_rows

        rows = random_rows(self, stddev=False)
        return pd.DataFrame([(r.equation, r.name, r.estimate, r.se, r.lower, r.upper) for r in rows],
                            columns=["equation", "parameter", "estimate", "se", "ci_lower", "ci_upper"]
                            ).set_index(["equation", "parameter"])

    def to_dict(self) -> dict[str, Any]:
        """The fit in the layout of the conformance cases (``SCHEMA.md``, "results")."""
        def mat(a: np.ndarray, mask: np.ndarray | None = None) -> list:
            return [[None if (mask is not None and not mask[i, j]) or not np.isfinite(a[i, j]) else float(a[i, j])
                     for j in range(a.shape[1])] for i in range(a.shape[0])]
        random = [{"level": e.label, "terms": list(e.names), "cov": mat(e.cov),
                   "se": mat(e.se, e.free_entries)} for e in self.equations]
        n_groups: dict[str, int] = {}
        for e in self.equations:
            n_groups[e.count_key] = e.n_groups
        residual, res_extra = self._residual_dict()
        extra = {"AIC": float(self.aic), "BIC": float(self.bic), "k": int(self.k), "N": int(self.nobs),
                 "n_groups": n_groups, "wald_chi2": float(self.wald.stat), "wald_df": int(self.wald.df),
                 "lr_chi2": float(self.lr.stat), "lr_df": int(self.lr.df)}
        extra.update(self._df_extra())
        return {"loglik": float(self.loglik),
                "fixed": {"names": list(self.fixed.names), "coef": self.fixed.coef.tolist(),
                          "se": self.fixed.se.tolist()},
                "random": random,
                "residual": residual,
                "extra": {**extra, **res_extra}}

    def _df_extra(self) -> dict[str, Any]:
        """Small-sample DF of a REML fit (lmerTest/pbkrtest conventions), for small n."""
        from .small_sample import AUTO_N, small_sample_summary

        if self.method != "reml" or self.residual_rows or self.nobs > AUTO_N:
            return {} if self.df is None else {f"df_{self.df_method}": list(self.df)}
        out = small_sample_summary(self)
        if self.df is not None:
            out[f"df_{self.df_method}"] = list(self.df)
        return out

    def _residual_dict(self) -> tuple[dict, dict]:
        """The "residual" entry and the residual structure's numbers for "extra"."""
        if not self.residual_rows:
            return {"var": float(self.residual_var), "se": float(self.residual_se)}, {}
        rows = {name: (value, se) for name, value, se in self.residual_rows}
        var, se = rows.get("var(e)", rows.get("sigma2", (None, None)))
        extra: dict[str, Any] = {"residual_parameters": {n: v for n, (v, _) in rows.items()},
                                 "residual_parameters_se": {n: s for n, (_, s) in rows.items()}}
        extra.update(self.residual_extra)
        if "cov(e)" in rows:
            if rows["cov(e)"][0] >= 0 and not self.equations:
                # with cov(e) ≥ 0 this marginal model is the random-intercept model
                # (var(_cons) = cov(e)), so that model's log likelihood is this one
                extra["ll_random_intercept_model"] = self.loglik
        if self.residual_label.startswith(("Unstructured", "Banded")) and " corr." not in self.residual_label:
            extra.update(_unstructured_matrices(rows))
        by = self.residual_label.partition(", by ")[2]
        if by and any(n.endswith(": var(e)") for n in rows):
            extra["residual_var_by"] = {f"{by}={n.split(':')[0]}": v for n, (v, _) in rows.items()
                                        if n.endswith(": var(e)")}
            extra["residual_var_by_se"] = {f"{by}={n.split(':')[0]}": s for n, (_, s) in rows.items()
                                           if n.endswith(": var(e)")}
        return {"var": var, "se": se}, extra

    # --- presentation ------------------------------------------------------------
    def table(self, **options: Any) -> str:
        """Stata's output; options as Stata's (``stddeviations``, ``noheader``, ...)."""
        from ..output.stata_table import render

        return render(self, **{**self.options, **options})

    def iteration_log(self) -> str:
        """Stata-style iteration log of the optimization (``Iteration 0:  log likelihood = ...``)."""
        from ..output.iterlog import iteration_log

        return "\n".join(iteration_log(self.optsummary, self.method == "reml"))

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<MixedResults {self.title}: {self.depvar}, N={self.nobs}, log likelihood={self.loglik:.8g}>"

    def _repr_html_(self) -> str:
        from ..output.html import render_html

        return render_html(self)

    # --- postestimation (multilevel.postestimation; nothing is refitted) -----------
    def predict(self, kind: str = "xb", data: pd.DataFrame | None = None, **options: Any):
        """Stata's ``predict``: ``xb stdp fitted residuals rstandard reffects reses``."""
        from ..postestimation import predict

        return predict(self, kind, data=data, **options)

    def estat(self, subcommand: str, **options: Any):
        """Stata's ``estat``: ``icc group recovariance wcorrelation sd ic``."""
        from ..postestimation import estat

        return estat(self, subcommand, **options)

    def test(self, hypothesis):
        """Wald test of linear hypotheses on the fixed effects (``"week = 6"``, ``["x1", "x2"]``)."""
        from ..postestimation import test

        return test(self, hypothesis)

    def lincom(self, expression: str, level: float | None = None):
        """Linear combination of the fixed effects with SE and CI (``"x1 + x2"``)."""
        from ..postestimation import lincom

        return lincom(self, expression, level=level)

    def random_effects_table(self) -> pd.DataFrame:
        """BLUPs per level, group and term with their standard errors (tidy DataFrame)."""
        from ..postestimation import random_effects_table

        return random_effects_table(self)

    def summary(self, style: str = "stata"):
        """Stata's table (``"stata"``) or lme4's ``summary()`` layout (``"lme4"``); print it."""
        from ..output.lme4_summary import summary

        return summary(self, style)

    def plot(self, kind: str = "caterpillar", **options: Any):
        """A plot (matplotlib): ``caterpillar``, ``residuals``, ``qq``, ``trajectories``; returns the Axes."""
        from ..plots import plot

        return plot(self, kind, **options)


def _unstructured_matrices(rows: dict) -> dict:
    """``residual_cov_matrix`` (and its SEs) from Stata's var(e#)/cov(e#,e#) rows."""
    levels = [n[5:-1] for n in rows if n.startswith("var(e")]
    T = len(levels)
    cov, se = np.zeros((T, T)), np.zeros((T, T))
    se[:] = np.nan  # structural zeros of banded() have no SE
    for i, a in enumerate(levels):
        cov[i, i], se[i, i] = rows[f"var(e{a})"]
        for j in range(i):
            value = rows.get(f"cov(e{levels[j]},e{a})")
            if value is not None:
                cov[i, j] = cov[j, i] = value[0]
                se[i, j] = se[j, i] = value[1]
    return {"residual_t_levels": levels, "residual_cov_matrix": cov.tolist(),
            "residual_cov_matrix_se": [[None if np.isnan(v) else float(v) for v in row] for row in se]}
