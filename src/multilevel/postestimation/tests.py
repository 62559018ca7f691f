"""Tests after ``mixed``: ``lrtest`` of nested fits, Wald ``test`` and ``lincom``.

Sources: [R] lrtest, [R] test, [R] lincom; Self & Liang (1987, JASA 82,
605–610) for the χ̄²(01) = ½χ²(0) + ½χ²(1) mixture when one variance is
tested on the boundary of its parameter space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..inference.distributions import chi2_sf, critical_value, normal_two_sided_p
from ..output.stata_fmt import fmt_f, fmt_g
from ..spec.errors import DataError, SpecError
from . import hypotheses
from .estat import _Display

BOUNDARY_NOTE = ("Note: The reported degrees of freedom assumes the null hypothesis is not on the boundary of\n"
                 "      the parameter space.  If this is not true, then the reported test is conservative.")


# --- lrtest ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LRTestResult(_Display):
    """A likelihood-ratio test of a restricted fit against an unrestricted one."""

    stat: float
    df: int
    pvalue: float
    kind: str                       # "chi2" or "chibar2"
    restricted: str
    unrestricted: str
    loglik: tuple[float, float]     # (restricted, unrestricted)
    note: str = ""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"stat": [self.stat], "df": [self.df], "pvalue": [self.pvalue], "kind": [self.kind],
                             "ll_restricted": [self.loglik[0]], "ll_unrestricted": [self.loglik[1]]})

    def lines(self) -> list[str]:
        out = ["", "Likelihood-ratio test", f"Assumption: {self.restricted} nested within {self.unrestricted}", ""]
        if self.kind == "chibar2":
            out += [f" LR chibar2(01) = {self.stat:6.2f}", f"Prob >= chibar2 = {self.pvalue:6.4f}"]
        else:
            label = f" LR chi2({self.df})"
            out += [f"{label} = {self.stat:6.2f}", f"{'Prob > chi2':>{len(label)}} = {self.pvalue:6.4f}"]
        return out + (["", self.note] if self.note else [])


def lrtest(a, b, names: tuple[str, str] = ("a", "b")) -> LRTestResult:
    """Likelihood-ratio test of two nested fits (either order), as Stata's ``lrtest``.

    .. math:: LR = 2(ℓ_u - ℓ_r) \\sim χ^2(k_u - k_r)

    Refuses fits on different samples, non-nested fits, and REML fits
    whose fixed parts differ (their restricted likelihoods are not
    comparable).  When the restricted fit drops exactly one random-effect
    variance, the null is on the boundary and the p-value is that of the
    χ̄²(01) mixture, ½P(χ²₁ > LR); when it drops several variance
    components, the χ² p-value is conservative and Stata's note says so.
    """
    _same_sample(a, b)
    if a.method != b.method:
        raise SpecError(f"cannot compare a {a.method.upper()} fit with a {b.method.upper()} fit; refit both "
                        "with the same method")
    if a.k == b.k:
        raise SpecError(f"the two fits have the same number of parameters ({a.k}); they are not nested")
    (r, r_name), (u, u_name) = sorted([(a, names[0]), (b, names[1])], key=lambda m: m[0].k)
    if a.method == "reml" and tuple(a.fixed.names) != tuple(b.fixed.names):
        raise SpecError("LR tests of REML fits whose fixed effects differ are not valid (the restricted "
                        "likelihoods are of different data); refit both by ML")
    _check_nested(r, u)
    diff = u.loglik - r.loglik
    if diff < -1e-6 * max(1.0, abs(u.loglik)):
        raise SpecError(f"the restricted fit has the higher log likelihood ({r.loglik:.6g} > {u.loglik:.6g}); "
                        "the fits are not nested or one did not converge")
    stat, df = max(2 * diff, 0.0), u.k - r.k
    dvar, dcov = np.subtract(_variance_counts(u), _variance_counts(r))
    if dvar == 1 and dcov == 0 and df == 1:
        p = 0.5 * chi2_sf(stat, 1) if stat > 0 else 1.0
        return LRTestResult(stat, 1, p, "chibar2", r_name, u_name, (r.loglik, u.loglik))
    note = BOUNDARY_NOTE if dvar > 0 else ""
    return LRTestResult(stat, df, chi2_sf(stat, df), "chi2", r_name, u_name,
                        (r.loglik, u.loglik), note)


def _same_sample(a, b) -> None:
    if a.depvar != b.depvar:
        raise DataError(f"the fits have different dependent variables ('{a.depvar}' and '{b.depvar}')")
    if a.nobs != b.nobs:
        raise DataError(f"the fits use different samples (N = {a.nobs} and N = {b.nobs}); an LR test needs "
                        "the same observations (e.g. drop rows with missing values before fitting both)")
    da, db = getattr(a, "design", None), getattr(b, "design", None)
    if da is not None and db is not None and not (
            np.array_equal(da.sample.rows, db.sample.rows) and np.array_equal(da.y, db.y)):
        raise DataError("the fits use different samples (the same number of observations but not the same "
                        "ones); an LR test needs the same observations")


def _check_nested(r, u) -> None:
    """Each fixed effect and random-effects equation of ``r`` is in ``u``."""
    extra = [n for n in r.fixed.names if n not in u.fixed.names]
    if extra:
        raise SpecError(f"the fits are not nested: {', '.join(extra)} is in the smaller fit only")
    for e in r.equations:
        same = [f for f in u.equations if tuple(f.group_vars) == tuple(e.group_vars) and set(e.names) <= set(f.names)]
        if not same:
            raise SpecError(f"the fits are not nested: random effects ({', '.join(e.names)}) at level "
                            f"'{e.label}' are in the smaller fit only")


def _variance_counts(res) -> tuple[int, int]:
    """(variances, covariance parameters) of the random-effects equations."""
    n_var = n_cov = 0
    for e in res.equations:
        v = 1 if e.structure in ("Identity", "Exchangeable") else len(e.names)
        n_var += v
        n_cov += len(e.phi) - v
    return n_var, n_cov


# --- Wald test ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WaldTestResult(_Display):
    """A Wald χ² test of linear constraints on the fixed effects."""

    constraints: tuple[str, ...]
    stat: float
    df: int
    pvalue: float
    dropped: tuple[int, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"chi2": [self.stat], "df": [self.df], "pvalue": [self.pvalue]})

    def lines(self) -> list[str]:
        out = [""] + [f" ({i + 1:>2})  {c}" for i, c in enumerate(self.constraints)]
        out += [f"       Constraint {i + 1} dropped" for i in self.dropped]
        return out + ["", f"           chi2({self.df:>3}) ={fmt_f(self.stat, 8, 2)}",
                      f"         Prob > chi2 ={fmt_f(self.pvalue, 10, 4)}"]


def test(res, hypothesis) -> WaldTestResult:
    """Wald test of linear hypotheses on the fixed effects (Stata's ``test``).

    ``"week = 6"``; ``["x1", "x2"]`` or ``"x1 x2"`` (all zero jointly);
    ``["x1 = x2", "x3 = 1"]``.

    .. math:: W = (Rβ̂ - r)^T (R \\hat V R^T)^{-1} (Rβ̂ - r) \\sim χ^2(\\operatorname{rank} R)

    Constraints that are linear combinations of earlier ones are dropped,
    as Stata does.
    """
    R, r, shown = _constraints(res, hypothesis)
    keep, dropped = _independent_rows(R)
    R, r = R[keep], r[keep]
    diff = R @ res.fixed.coef - r
    stat = float(diff @ np.linalg.solve(R @ res.fixed.vcov @ R.T, diff))
    df = len(keep)
    return WaldTestResult(tuple(shown), stat, df, chi2_sf(stat, df), tuple(dropped))


def _constraints(res, hypothesis) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names, depvar = tuple(res.fixed.names), res.depvar
    if isinstance(hypothesis, str):
        words = hypothesis.split()
        plain = len(words) > 1 and not any(op in hypothesis for op in "=+-*")
        items = words if plain else [hypothesis]
    else:
        items = list(hypothesis)
    if not items:
        raise SpecError("no hypothesis given")
    rows, rhs = zip(*(hypotheses.parse(h, names, depvar) for h in items))
    shown = [hypotheses.show(a, c, names, depvar) for a, c in zip(rows, rhs)]
    return np.array(rows), np.array(rhs), shown


def _independent_rows(R: np.ndarray, tol: float = 1e-10) -> tuple[list[int], list[int]]:
    keep: list[int] = []
    dropped: list[int] = []
    for i in range(len(R)):
        trial = R[keep + [i]]
        if np.linalg.matrix_rank(trial, tol=tol * max(1.0, np.abs(trial).max())) == len(keep) + 1:
            keep.append(i)
        else:
            dropped.append(i)
    return keep, dropped


# --- lincom ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LincomResult(_Display):
    """A linear combination of the fixed effects with its SE, z test and CI."""

    constraint: str
    estimate: float
    se: float
    depvar: str
    level: float = 95.0

    @property
    def z(self) -> float:
        return self.estimate / self.se

    @property
    def pvalue(self) -> float:
        return float(normal_two_sided_p(self.z))

    @property
    def ci(self) -> tuple[float, float]:
        crit = critical_value(self.level)
        return self.estimate - crit * self.se, self.estimate + crit * self.se

    def to_frame(self) -> pd.DataFrame:
        lo, hi = self.ci
        return pd.DataFrame({"estimate": [self.estimate], "se": [self.se], "z": [self.z], "p": [self.pvalue],
                             "ci_lower": [lo], "ci_upper": [hi]}, index=pd.Index(["(1)"]))

    def lines(self) -> list[str]:
        lo, hi = self.ci
        rule = "-" * 78
        head = f"{self.depvar[:12]:>12} | Coefficient  Std. err.      z    P>|z|     [{self.level:g}% conf. interval]"
        return ["", f" ( 1)  {self.constraint}", "", rule, head, "-" * 13 + "+" + "-" * 64,
                f"{'(1)':>12} |  {fmt_g(self.estimate)}  {fmt_g(self.se)}{fmt_f(self.z, 9, 2)}"
                f"{fmt_f(self.pvalue, 8, 3)}    {fmt_g(lo)}   {fmt_g(hi)}", rule]


def lincom(res, expression: str, level: float | None = None) -> LincomResult:
    """Estimate, SE, z and CI of a linear combination aᵀβ̂ (− a constant), Stata's ``lincom``.

    .. math:: \\operatorname{SE} = \\sqrt{a^T \\hat V a}
    """
    names = tuple(res.fixed.names)
    a, rhs = hypotheses.parse(expression, names, res.depvar)
    est = float(a @ res.fixed.coef - rhs)
    se = float(np.sqrt(a @ res.fixed.vcov @ a))
    return LincomResult(hypotheses.show(a, rhs, names, res.depvar), est, se, res.depvar,
                        res.level if level is None else float(level))
