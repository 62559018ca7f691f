"""``estat`` after ``mixed``: icc, group, recovariance, wcorrelation, sd, ic.

Each subcommand returns a small frozen result whose ``str()`` is Stata's
display and whose ``to_frame()`` is a pandas DataFrame of the same numbers
([ME] mixed postestimation; [ME] estat icc; [R] estat ic).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..inference.distributions import critical_value
from ..output.stata_fmt import fmt_g
from ..spec.errors import SpecError
from ._state import design_of, natural_offsets, natural_vcov, require_iid_errors

SUBCOMMANDS = ("icc", "group", "recovariance", "wcorrelation", "sd", "ic")
_ABBREV = {"recov": "recovariance", "wcor": "wcorrelation", "wcorr": "wcorrelation", "gr": "group"}


def estat(res, subcommand: str, **options):
    """Stata's ``estat <subcommand>`` after ``mixed``.

    ``icc`` (``level=``), ``group``, ``recovariance`` (``relevel=``,
    ``correlation=True``), ``wcorrelation`` (``at={"id": 3}``,
    ``covariance=True``), ``sd`` (``variance=True``), ``ic`` (``n=``).
    """
    name = _ABBREV.get(subcommand.strip().lower(), subcommand.strip().lower())
    if name not in SUBCOMMANDS:
        raise ValueError(f"unknown estat subcommand {subcommand!r}; choose one of {', '.join(SUBCOMMANDS)}")
    return {"icc": icc, "group": group, "recovariance": recovariance, "wcorrelation": wcorrelation,
            "sd": sd, "ic": ic}[name](res, **options)


class _Display:
    """``__str__`` gives Stata's text, ``_repr_html_`` the same text in a <pre>."""

    def lines(self) -> list[str]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __str__(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"


_RULE = "-" * 78


# --- estat icc -----------------------------------------------------------------------
@dataclass(frozen=True)
class IccResult(_Display):
    """Intraclass correlations per nested level, with delta-method SEs and logit-scale CIs."""

    levels: tuple[str, ...]
    icc: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float = 95.0

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"icc": self.icc, "se": self.se, "ci_lower": self.lower, "ci_upper": self.upper},
                            index=pd.Index(self.levels, name="level"))

    def lines(self) -> list[str]:
        out = ["", "Intraclass correlation", "", _RULE,
               f"{'Level':>28} |        ICC   Std. err.     [{self.level:g}% conf. interval]",
               "-" * 29 + "+" + "-" * 48]
        for name, v, s, lo, hi in zip(self.levels, self.icc, self.se, self.lower, self.upper):
            out.append(f"{name[-28:]:>28} |  {fmt_g(v)}  {fmt_g(s)}     {fmt_g(lo)}   {fmt_g(hi)}")
        return out + [_RULE]


def icc(res, level: float | None = None) -> IccResult:
    """Intraclass correlations at each nested level ([ME] estat icc).

    With levels 1..L from the top and σ²_l the variance of the random
    intercept at level l, the ICC of level j (conditional on the levels above
    it, labelled ``j|...|1`` as Stata) is

    .. math:: ρ_j = \\frac{\\sum_{l \\le j} σ^2_l}{\\sum_{l=1}^{L} σ^2_l + σ^2_e},

    the correlation of two responses that share the groups of levels 1..j.
    Random slopes are set to 0 (the ICC conditional on the covariates being
    0).  The SE is the delta method over the observed information in
    Stata's metric (log SDs); the CI is computed on the logit scale and
    transformed back, so that it stays in (0, 1) (StataCorp, Statalist
    2012-05 msg01195).  Crossed effects have no ICC, as in Stata.
    """
    require_iid_errors(res, "estat icc")
    level = res.level if level is None else float(level)
    groups = _nested_levels(res)
    phi, V, free = natural_vcov(res)
    cons = [_cons_index(res, eqs) for _, eqs in groups]
    n_levels = len(groups)

    def rho(p: np.ndarray, j: int) -> float:
        var = [sum(np.exp(2 * p[i]) for i in idx) for idx in cons]
        return sum(var[:j + 1]) / (sum(var) + np.exp(2 * p[-1]))

    est, se = np.empty(n_levels), np.empty(n_levels)
    Vf = np.where(np.isnan(V), 0.0, V)  # a parameter on the boundary contributes no variance
    for j in range(n_levels):
        est[j] = rho(phi, j)
        grad = _gradient(lambda p, j=j: rho(p, j), phi, free)
        se[j] = float(np.sqrt(grad @ Vf @ grad))
    z = critical_value(level)
    half = z * se / (est * (1 - est))
    logit = np.log(est / (1 - est))
    labels = tuple("|".join(name for name, _ in reversed(groups[:j + 1])) for j in range(n_levels))
    return IccResult(labels, est, se, _expit(logit - half), _expit(logit + half), level)


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _gradient(f, x: np.ndarray, free: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros(len(x))
    for i in np.flatnonzero(free):
        e = np.zeros(len(x))
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _nested_levels(res) -> list[tuple[str, list[int]]]:
    """Distinct levels from the top, each with its equations; an error if crossed."""
    design = design_of(res)
    levels: list[tuple[str, list[int]]] = []
    keys: list[tuple] = []
    for i, eq in enumerate(design.equations):
        if not eq.group_key or eq.names[0].startswith("R."):
            raise SpecError("estat icc is not available for crossed-effects models (_all: R.var)")
        if eq.group_key in keys:
            levels[keys.index(eq.group_key)][1].append(i)
        else:
            keys.append(eq.group_key)
            levels.append((eq.label, [i]))
    refs = [design.equations[eqs[0]].refs for _, eqs in levels]
    for upper, lower, (name, _) in zip(refs, refs[1:], levels[1:]):
        pairs = np.unique(np.column_stack([lower, upper]), axis=0)
        if len(pairs) != len(np.unique(lower)):
            raise SpecError(f"estat icc is not available for crossed-effects models: the groups of '{name}' "
                            "are not nested in those of the level above")
    return levels


def _cons_index(res, eqs: list[int]) -> list[int]:
    """Positions in φ of the log SD of each equation's random intercept."""
    offsets = natural_offsets(res)
    out = []
    for i in eqs:
        e = res.equations[i]
        if "_cons" in e.names:
            shared = e.structure in ("Identity", "Exchangeable")
            out.append(offsets[i].start + (0 if shared else e.names.index("_cons")))
    if not out:
        raise SpecError(f"estat icc needs a random intercept at every level; '{res.equations[eqs[0]].label}' "
                        "has none")
    return out


# --- estat group ---------------------------------------------------------------------
@dataclass(frozen=True)
class GroupResult(_Display):
    """Number of groups and observations per group at each level."""

    rows: tuple[tuple[str, int, int, float, int], ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=["level", "groups", "min", "avg", "max"]).set_index("level")

    def lines(self) -> list[str]:
        out = ["", "-" * 61, "                |     No. of       Observations per group",
               " Group variable |     groups    Minimum    Average    Maximum", "----------------+" + "-" * 44]
        for name, n, lo, avg, hi in self.rows:
            out.append(f"{name[-15:]:>15} |{n:>11,}{lo:>11,}{avg:>11.1f}{hi:>11,}")
        return out + ["-" * 61]


def group(res) -> GroupResult:
    """``estat group``: the composition of the nested groups."""
    from ..output.stata_table import _group_levels

    return GroupResult(tuple((name, n, lo, avg, hi) for name, n, (lo, avg, hi) in _group_levels(res)))


# --- estat recovariance ----------------------------------------------------------------
@dataclass(frozen=True)
class MatrixResult(_Display):
    """Named square matrices with a title each (recovariance, wcorrelation)."""

    titles: tuple[str, ...]
    matrices: tuple[pd.DataFrame, ...]
    notes: tuple[str, ...] = field(default=())

    def to_frame(self) -> pd.DataFrame:
        if len(self.matrices) == 1:
            return self.matrices[0]
        return pd.concat(dict(zip(self.titles, self.matrices)), names=["matrix"])

    def lines(self) -> list[str]:
        out: list[str] = []
        for title, m in zip(self.titles, self.matrices):
            out += ["", title, ""] + _matrix_lines(m)
        return out + list(self.notes)


def _matrix_lines(m: pd.DataFrame, lower: bool = True, per_block: int = 6) -> list[str]:
    """A matrix as Stata's ``matrix list``: lower triangle when symmetric, 6 columns a block."""
    out: list[str] = []
    for start in range(0, m.shape[1], per_block):
        cols = list(range(start, min(start + per_block, m.shape[1])))
        if out:
            out.append("")
        out += [f"{'':12} |" + "".join(f"{str(m.columns[j])[-10:]:>11}" for j in cols),
                "-" * 13 + "+" + "-" * (11 * len(cols))]
        for i, (name, row) in enumerate(m.iterrows()):
            if lower and i < start:
                continue
            vals = row.to_numpy()[start:min(i + 1, cols[-1] + 1) if lower else cols[-1] + 1]
            out.append(f"{str(name)[-12:]:>12} |" + "".join(f" {fmt_g(v, 10)}" for v in vals))
    return out


def recovariance(res, relevel: str | None = None, correlation: bool = False) -> MatrixResult:
    """``estat recovariance``: the estimated random-effects covariance (or correlation) matrices.

    Equations that share a grouping (repeated levels) are shown together,
    block diagonal, as Stata shows one matrix per level.
    """
    by_level: dict[str, list] = {}
    for e in res.equations:
        if relevel is None or relevel in (e.label, *e.group_vars[-1:]):
            by_level.setdefault(e.label, []).append(e)
    if not by_level:
        names = ", ".join(dict.fromkeys(e.label for e in res.equations))
        raise SpecError(f"relevel({relevel}) names no level of the model; its levels are {names}")
    titles, mats = [], []
    for label, eqs in by_level.items():
        names = [n for e in eqs for n in e.names]
        cov = np.zeros((len(names), len(names)))
        at = 0
        for e in eqs:
            k = len(e.names)
            cov[at:at + k, at:at + k] = e.cov
            at += k
        if correlation:
            sd = np.sqrt(np.diag(cov))
            with np.errstate(invalid="ignore", divide="ignore"):
                cov = cov / np.outer(sd, sd)
        kind = "correlation" if correlation else "covariance"
        titles.append(f"Random-effects {kind} matrix for level {label}")
        mats.append(pd.DataFrame(cov, index=names, columns=names))
    return MatrixResult(tuple(titles), tuple(mats))


# --- estat wcorrelation ------------------------------------------------------------------
def wcorrelation(res, at: dict | None = None, covariance: bool = False) -> "WcorrResult":
    """``estat wcorrelation``: the model-implied covariance of the responses within one cluster.

    .. math:: V_j = \\sum_{\\text{eq}} Z_{j} G Z_{j}^T + σ^2_e I

    over the observations of one top-level group (``at={"id": 3}``; the
    first group by default).  Returns the standard deviations and the
    correlation matrix (``covariance=True``: the covariance matrix).
    """
    require_iid_errors(res, "estat wcorrelation")
    design = design_of(res)
    top = next((i for i, eq in enumerate(design.equations) if eq.group_key), None)
    if top is None:
        raise SpecError("estat wcorrelation needs a grouping level (the model has only _all equations)")
    eq0 = design.equations[top]
    rows, label = _cluster_rows(eq0, at)
    V = res.residual_var * np.eye(len(rows))
    for eq, e in zip(design.equations, res.equations):
        refs = eq.refs[rows]
        same = refs[:, None] == refs[None, :]
        z = eq.z[rows]
        V += same * (z @ e.cov @ z.T)
    return WcorrResult(head=label, V=V, covariance=covariance, rows=rows)


@dataclass(frozen=True)
class WcorrResult(_Display):
    """The implied covariance of the responses in one cluster; SDs and correlations."""

    head: str
    V: np.ndarray
    covariance: bool
    rows: np.ndarray   # positions of the cluster's observations in the estimation sample

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.V))

    @property
    def corr(self) -> np.ndarray:
        return self.V / np.outer(self.sd, self.sd)

    def to_frame(self) -> pd.DataFrame:
        obs = pd.Index(np.arange(1, len(self.rows) + 1), name="obs")
        return pd.DataFrame(self.V if self.covariance else self.corr, index=obs, columns=obs)

    def lines(self) -> list[str]:
        matrix = self.to_frame()
        if self.covariance:
            return ["", f"Covariances for {self.head}:", ""] + _matrix_lines(matrix)
        sd = pd.DataFrame([self.sd], index=["sd"], columns=matrix.columns)
        return (["", f"Standard deviations and correlations for {self.head}:", "", "Standard deviations:", ""]
                + _matrix_lines(sd, lower=False) + ["", "Correlations:", ""] + _matrix_lines(matrix))


def _cluster_rows(eq, at: dict | None) -> tuple[np.ndarray, str]:
    if at is None:
        code = 0
    else:
        if not isinstance(at, dict) or len(at) != 1:
            raise SpecError("at= takes one {variable: value} pair naming a group of the top level")
        (var, value), = at.items()
        if (var,) != eq.group_key[-1:]:
            raise SpecError(f"at= must name the top-level variable '{eq.group_key[-1]}', not '{var}'")
        matches = [i for i, g in enumerate(eq.groups) if (g[-1] if isinstance(g, tuple) else g) == value]
        if not matches:
            raise SpecError(f"{var} = {value} is not a group of the estimation sample")
        code = matches[0]
    group_label = eq.groups[code]
    return np.flatnonzero(eq.refs == code), f"{eq.group_key[-1]} = {group_label}"


# --- estat sd --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SdResult(_Display):
    """The random-effects table as standard deviations and correlations (or variances)."""

    text: tuple[str, ...]
    frame: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    def lines(self) -> list[str]:
        return [""] + list(self.text)


def sd(res, variance: bool = False) -> SdResult:
    """``estat sd``: SDs and correlations (``variance=True``: variances and covariances), with SEs and CIs."""
    from ..output.rows import random_rows
    from ..output.stata_table import random_table

    rows = random_rows(res, stddev=not variance)
    frame = pd.DataFrame([(r.equation, r.name, r.estimate, r.se, r.lower, r.upper) for r in rows],
                         columns=["equation", "parameter", "estimate", "se", "ci_lower", "ci_upper"]
                         ).set_index(["equation", "parameter"])
    return SdResult(tuple(random_table(res, stddev=not variance)), frame)


# --- estat ic ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IcResult(_Display):
    """Akaike's and Schwarz's information criteria, as Stata's ``estat ic``."""

    N: int
    ll: float
    df: int
    aic: float
    bic: float
    reml: bool = False

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"N": [self.N], "ll0": [np.nan], "ll": [self.ll], "df": [self.df],
                             "AIC": [self.aic], "BIC": [self.bic]}, index=pd.Index(["."], name="model"))

    def lines(self) -> list[str]:
        rule = "-" * 77
        out = ["", "Akaike's information criterion and Bayesian information criterion", "", rule,
               "       Model |          N   ll(null)  ll(model)      df        AIC        BIC",
               "-------------+" + "-" * 63,
               f"           . |{self.N:>11,}          .  {fmt_g(self.ll)}{self.df:>8}  {fmt_g(self.aic)}  "
               f"{fmt_g(self.bic)}", rule,
               "Note: BIC uses N = number of observations. See [R] IC note."]
        if self.reml:
            out.append("Note: ll(model) is the log restricted-likelihood (REML).")
        return out


def ic(res, n: int | None = None) -> IcResult:
    """``estat ic``: AIC = −2ℓ + 2k and BIC = −2ℓ + k ln N.

    N is the number of observations, as Stata's convention for ``mixed``
    (``n=`` overrides it, as ``estat ic, n(#)``); k counts the fixed effects,
    the variance components and the residual variance.  After REML, ℓ is
    the restricted log likelihood (as Stata and lme4 report it).
    """
    N = res.nobs if n is None else int(n)
    return IcResult(N, res.loglik, res.k, -2 * res.loglik + 2 * res.k, -2 * res.loglik + res.k * np.log(N),
                    res.method == "reml")
