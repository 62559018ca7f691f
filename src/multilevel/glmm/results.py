"""Frozen results of a GLMM fit; presentation only reads them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from ..inference.results import EquationResult, FitSummary, FixedEffects
from ..inference.tests import TestResult
from ..optimize import OptSummary


@dataclass(frozen=True)
class Ancillary:
    """An ancillary parameter in Stata's metric (``cut1``, ``lnalpha``, ``logs``) and its SE."""

    name: str
    estimate: float
    se: float


@dataclass(frozen=True)
class GLMMResults(FitSummary):
    """Everything a fitted GLMM reports; immutable.

    ``str(res)`` gives Stata's table and ``res.to_dict()`` the layout of the
    conformance cases' "results" (``residual`` is ``None``: a GLMM has no
    residual variance, except family(gaussian)).
    """

    spec: Any
    title: str
    family: str
    link: str
    dispersion: str | None
    intmethod: str
    intpoints: int
    nobs: int
    depvar: str
    fixed: FixedEffects
    ancillary: tuple[Ancillary, ...]
    equations: tuple[EquationResult, ...]
    loglik: float
    wald: TestResult
    lr: TestResult
    lr_label: str
    ll_fixed_only: float
    k: int
    optsummary: OptSummary
    theta: np.ndarray
    level: float = 95.0
    sample_notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    design: Any = None
    command: str = "meglm"
    method: str = "ml"
    vce: str = ""                 # "" (observed information) or "Robust"
    clusters: tuple = ()          # (number of clusters, cluster variable) for a robust vce

    # --- summaries: aic, bic, converged from FitSummary ----------------------------------
    @property
    def residual_var(self) -> float | None:
        """σ²_e for family(gaussian); None otherwise."""
        a = self._anc("lnsig_e")
        return None if a is None else float(np.exp(2 * a.estimate))

    def _anc(self, name: str) -> Ancillary | None:
        return next((a for a in self.ancillary if a.name == name), None)

    @property
    def fixed_effects(self) -> pd.DataFrame:
        """Coefficient table: estimate, SE, z, P>|z| and the CI at ``level``."""
        coef, se = self.fixed.coef, self.fixed.se
        z = coef / se
        crit = special.ndtri(0.5 + self.level / 200)
        return pd.DataFrame({"estimate": coef, "se": se, "z": z, "p": 2 * special.ndtr(-np.abs(z)),
                             "ci_lower": coef - crit * se, "ci_upper": coef + crit * se},
                            index=pd.Index(self.fixed.names, name="term"))

    @property
    def random_effects(self) -> pd.DataFrame:
        """Random-effects parameters on the variance scale with SEs and CIs."""
        from ..output.rows import equation_rows

        rows = [r for e in self.equations for r in equation_rows(e, self.level, False)]
        return pd.DataFrame([(r.equation, r.name, r.estimate, r.se, r.lower, r.upper) for r in rows],
                            columns=["equation", "parameter", "estimate", "se", "ci_lower", "ci_upper"]
                            ).set_index(["equation", "parameter"])

    def derived(self) -> dict[str, float]:
        """Ancillary parameters and their transforms (α = e^{lnα}, shape = e^{−logs}, Weibull
        p = e^{ln_p}, σ = e^{lnσ}, γ = e^{lnγ}; after ``mestreg``, σ = e^{logs}) with SEs."""
        out: dict[str, float] = {}
        for a in self.ancillary:
            out[a.name], out[f"se_{a.name}"] = a.estimate, a.se
        logs = ("logs", "sigma", 1) if self.command == "mestreg" else ("logs", "shape", -1)
        for src, name, sign in (("lnalpha", "alpha", 1), ("lndelta", "delta", 1), logs,
                                ("ln_p", "p", 1), ("lnsigma", "sigma", 1), ("lngamma", "gamma", 1)):
            a = self._anc(src)
            if a is not None:
                v = float(np.exp(sign * a.estimate))
                out[name], out[f"se_{name}"] = v, v * a.se
        return out

    def correlations(self) -> dict[str, float]:
        """Correlations of correlated random effects, ``corr_x_cons`` (the level is
        prefixed, ``corr_g_x_cons``, when two equations share term names)."""
        out: dict[str, float] = {}
        for e in self.equations:
            if e.structure not in ("Unstructured", "Exchangeable"):
                continue
            sd = np.sqrt(np.diag(e.cov))
            for i in range(len(e.names)):
                for j in range(i + 1, len(e.names)):
                    key = f"corr_{e.names[i].lstrip('_')}_{e.names[j].lstrip('_')}"
                    if key in out:
                        key = f"corr_{e.label}_{key[5:]}"
                    out[key] = float(e.cov[i, j] / (sd[i] * sd[j]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fit in the layout of the conformance cases (``SCHEMA.md``, "results")."""
        def mat(a: np.ndarray, mask: np.ndarray | None = None) -> list:
            return [[None if (mask is not None and not mask[i, j]) or not np.isfinite(a[i, j]) else float(a[i, j])
                     for j in range(a.shape[1])] for i in range(a.shape[0])]
        random = [{"level": e.label, "terms": list(e.names), "cov": mat(e.cov),
                   "se": mat(e.se, e.free_entries)} for e in self.equations]
        n_groups = {e.count_key: e.n_groups for e in self.equations}
        extra = {"AIC": self.aic, "BIC": self.bic, "k": self.k, "N": self.nobs, "n_groups": n_groups,
                 "wald_chi2": self.wald.stat, "wald_df": self.wald.df,
                 "lr_chi2": self.lr.stat, "lr_df": self.lr.df, "ll_fixed_only": self.ll_fixed_only}
        extra.update(self.derived())
        extra.update(self.correlations())
        residual = None
        a = self._anc("lnsig_e")
        if a is not None:
            var = float(np.exp(2 * a.estimate))
            residual = {"var": var, "se": 2 * var * a.se}
        return {"loglik": self.loglik,
                "fixed": {"names": list(self.fixed.names), "coef": self.fixed.coef.tolist(),
                          "se": self.fixed.se.tolist()},
                "random": random, "residual": residual, "extra": extra}

    # --- presentation ------------------------------------------------------------------
    def table(self, **options: Any) -> str:
        """Stata's output; options as Stata's (``or``, ``irr``, ``stddeviations``, ...)."""
        from ..output.glmm_table import render

        return render(self, **{**self.options, **options})

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        from ..output.glmm_html import render_html

        return render_html(self, **{**self.options})

    def iteration_log(self) -> str:
        """Stata-style iteration log (``Iteration k:  log likelihood = ...``) of the fit."""
        from ..output.glmm_iterlog import iteration_log

        return iteration_log(self)

    # --- postestimation (thin wrappers over multilevel.postestimation) --------------------
    def predict(self, kind: str = "mu", data: pd.DataFrame | None = None, **options: Any):
        """Stata's ``predict``: ``mu pr eta xb stdp pearson deviance anscombe reffects reses``;
        ``conditional="ebmeans"|"ebmodes"|"fixedonly"``, ``marginal=True``, ``outcome=``."""
        from ..postestimation.glmm_predict import predict

        return predict(self, kind, data, **options)

    def estat(self, subcommand: str, **options: Any):
        """Stata's ``estat``: ``icc group sd ic``."""
        from ..postestimation.glmm_estat import estat

        return estat(self, subcommand, **options)

    def random_effects_table(self, conditional: str = "ebmeans", intpoints: int | None = None) -> pd.DataFrame:
        """One row per (level, group, term): predicted random effect and its posterior SD."""
        from ..postestimation.glmm_predict import random_effects_table

        return random_effects_table(self, conditional, intpoints)

    def _remember_inputs(self, family, y: np.ndarray, offset: np.ndarray) -> None:
        """Keep the family object, coded response and offset for postestimation (not a field)."""
        from ..postestimation.glmm_state import remember

        remember(self, family, y, offset)

    def __repr__(self) -> str:
        return f"<GLMMResults {self.title}: {self.depvar}, N={self.nobs}, log likelihood={self.loglik:.8g}>"
