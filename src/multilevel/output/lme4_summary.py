"""lme4's ``summary()`` of a linear mixed model, for those who read that layout.

``render_lme4(res)`` prints what ``print(summary(lmer(...)))`` prints, from the
frozen results: the title and formula, REML criterion or the AIC/BIC/logLik
line, quantiles of the scaled residuals, ``VarCorr`` (Groups, Name, Variance,
Std.Dev., Corr), the numbers of observations and groups, the fixed effects
(Estimate, Std. Error, t value) and their correlations, with R's number
formatting (lme4 1.1-31 ``print.summary.merMod``, ``formatVC``,
``printCoefmat`` with ``digits = 4``).  The names are lme4's where they differ
(``(Intercept)`` for ``_cons``, nested groups ``cask:batch``, independent
terms split as ``Subject``/``Subject.1``); the fixed-effect names of factors
stay Stata's (``2.f``).  The title names our class in place of ``lmerMod``,
and there is no ``Data:`` line (the results do not know the data's name).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .r_fmt import (WIDTH, abbreviate, format_num, print_matrix, print_named, r_round,
                    zapsmall)

DIGITS = 4                        # print.summary.merMod: max(3, getOption("digits") - 3)
COR_MAX = 12                      # getOption("lme4.summary.cor.max")


@dataclass(frozen=True)
class _Block:
    """One lme4 random-effects term: its group, column names and covariance matrix."""

    group: str
    factor: str                   # the grouping factor (for "Number of obs: ..., groups:")
    names: tuple[str, ...]
    cov: np.ndarray
    n_levels: int


def render_lme4(res) -> str:
    """The lme4-style summary of a :class:`~multilevel.inference.results.MixedResults`."""
    blocks = _blocks(res)
    lines = [_title(res), f"Formula: {lme4_formula(res.spec)}"]
    weight = res.spec.options.get("weight")
    if weight:                    # Stata's weights, in Stata's notation (lme4's weights= differ)
        lines.append(f"Weights: [{weight[0]}={weight[1]}]")
    if res.spec.if_expr:
        lines.append(f" Subset: {res.spec.if_expr}")
    lines += [""] + _criterion(res) + [""]
    lines += _scaled_residuals(res)
    lines += ["Random effects:"] + _varcorr(res, blocks)
    lines.append(_groups_line(res, blocks))
    lines += _fixed(res)
    lines += _notes(res)
    return "\n".join(lines)


# --- header ---------------------------------------------------------------------------
def _title(res) -> str:
    # lme4's methTitle pastes "maximum likelihood" with an empty string: two spaces follow
    how = "REML" if res.method == "reml" else "maximum likelihood "
    return f"Linear mixed model fit by {how} ['{type(res).__name__}']"


def lme4_formula(spec) -> str:
    """The model as an lme4 formula (``weight ~ week + (1 | id)``)."""
    fixed = spec.fixed or "1"
    if not spec.constant:
        fixed = "0 + " + fixed if spec.fixed else "0"
    parts = [fixed] + [_bar(lv) for lv in spec.levels if lv.terms or lv.constant]
    return f"{spec.response} ~ " + " + ".join(p for p in parts if p)


def _bar(level) -> str:
    """One random-effects equation as lme4 bars."""
    rterms = [t[2:] for t in level.terms if t.startswith("R.")]
    if rterms:
        return " + ".join(f"(1 | {g})" for g in rterms)
    group = _group_name(level.label, level.group)
    slopes = " + ".join(level.terms)
    if not slopes:
        return f"(1 | {group})"
    lhs = slopes if level.constant else f"0 + {slopes}"
    bar = "||" if level.covariance == "independent" and len(level.term_names) > 1 else "|"
    return f"({lhs} {bar} {group})"


def _group_name(label: str, group_vars: tuple[str, ...]) -> str:
    """lme4's name of a grouping factor: ``a:b`` as written, nested levels inner first (``cask:batch``)."""
    return label if ":" in label else ":".join(reversed(group_vars))


def _criterion(res) -> list[str]:
    """``REML criterion at convergence`` or the AIC/BIC/logLik/deviance/df.resid line."""
    dev = -2 * res.loglik
    if res.method == "reml":
        return [f"REML criterion at convergence: {format_num([float(r_round(dev, 1))])[0].strip()}"]
    values = r_round([res.aic, res.bic, res.loglik, dev, res.nobs - res.k], 1)
    cells = format_num(values)
    cells[-1] = format_num([values[-1]])[0]
    return print_named(["AIC", "BIC", "logLik", "deviance", "df.resid"], cells)


def _scaled_residuals(res) -> list[str]:
    resid = np.asarray(res.predict("residuals"), dtype=float)
    resid = resid[~np.isnan(resid)] / np.sqrt(res.residual_var)
    q = zapsmall(np.quantile(resid, [0, 0.25, 0.5, 0.75, 1]), DIGITS + 1)
    return (["Scaled residuals: "] + print_named(["Min", "1Q", "Median", "3Q", "Max"], format_num(q, DIGITS))
            + [""])


# --- random effects -------------------------------------------------------------------
def _lme4_order(names: tuple[str, ...]) -> list[int]:
    """Column order of lme4: the intercept first."""
    return sorted(range(len(names)), key=lambda i: names[i] != "_cons")


def _blocks(res) -> list[_Block]:
    """The random-effects terms as lme4 forms them, in lme4's order."""
    blocks: list[_Block] = []
    for e in res.equations:
        if e.names[0].startswith("R."):
            for i, name in enumerate(e.names):
                blocks.append(_Block(name[2:], name[2:], ("(Intercept)",), e.cov[i:i + 1, i:i + 1], e.n_groups))
            continue
        group = _group_name(e.label, e.group_vars)
        order = _lme4_order(e.names)
        names = tuple("(Intercept)" if e.names[i] == "_cons" else e.names[i] for i in order)
        cov = e.cov[np.ix_(order, order)]
        if e.structure in ("Independent", "Identity") and len(order) > 1:
            blocks += [_Block(group, group, (n,), cov[i:i + 1, i:i + 1], e.n_groups) for i, n in enumerate(names)]
        else:
            blocks.append(_Block(group, group, names, cov, e.n_groups))
    nl = [b.n_levels for b in blocks]
    if any(b > a for a, b in zip(nl, nl[1:])):
        # mkReTrms: rev(order(nl)), i.e. decreasing, ties in reverse order
        blocks = [blocks[i] for i in reversed(sorted(range(len(blocks)), key=lambda i: nl[i]))]
    return blocks


def _make_unique(names: list[str]) -> list[str]:
    """R's ``make.unique``: ``Subject``, ``Subject.1``, ..."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}.{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def _varcorr(res, blocks: list[_Block]) -> list[str]:
    """lme4's ``formatVC`` table, printed as R prints a character matrix."""
    groups = _make_unique([b.group for b in blocks]) + ["Residual"]
    sds = [np.sqrt(np.diag(b.cov)) for b in blocks] + [np.array([np.sqrt(res.residual_var)])]
    sd = np.concatenate(sds)
    lens = [len(s) for s in sds]
    rows = []
    for g, n in zip(groups, lens):
        rows += [[g if j == 0 else "", ""] for j in range(n)]
    names = [n for b in blocks for n in b.names] + [""]
    variance, stddev = format_num(sd ** 2, DIGITS), format_num(sd, DIGITS)
    for i, row in enumerate(rows):
        row[1:] = [names[i], variance[i], stddev[i]]
    head = ["Groups", "Name", "Variance", "Std.Dev."]
    maxlen = max(lens)
    if maxlen > 1:
        corr = [c for b in blocks for c in _corr_rows(b.cov, maxlen)]
        corr += [[""] * (maxlen - 1)] * (len(rows) - len(corr))
        rows = [r + c for r, c in zip(rows, corr)]
        head += ["Corr"] + [""] * (maxlen - 2)
    return print_matrix([""] * len(rows), head, rows)


def _corr_rows(cov: np.ndarray, maxlen: int) -> list[list[str]]:
    """The lower triangle of a term's correlations, ``format(round(x, 2), nsmall = 2)``."""
    k = cov.shape[0]
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    dig = max(2, DIGITS - 2)
    cells = format_num(r_round(corr.ravel(order="F"), dig), nsmall=dig)
    rows = [[cells[j * k + i] if i > j else "" for j in range(k)] + [""] * (maxlen - k) for i in range(k)]
    return [r[:maxlen - 1] for r in rows]


def _groups_line(res, blocks: list[_Block]) -> str:
    factors: dict[str, int] = {}
    for b in blocks:
        factors.setdefault(b.factor, b.n_levels)
    head = f"Number of obs: {res.nobs}, groups: "
    tail = "; ".join(f"{f}, {n}" for f, n in factors.items())
    return f"{head} {tail}" if len(head) + 1 + len(tail) <= WIDTH else f"{head}\n{tail}"


# --- fixed effects --------------------------------------------------------------------
def _fixed(res) -> list[str]:
    names = res.fixed.names
    if not names:
        return []
    order = _lme4_order(names)
    labels = ["(Intercept)" if names[i] == "_cons" else names[i] for i in order]
    coef, se = res.fixed.coef[order], res.fixed.se[order]
    cells = coef_matrix(np.column_stack([coef, se, coef / se]))
    lines = ["", "Fixed effects:"] + print_matrix(labels, ["Estimate", "Std. Error", "t value"], cells,
                                                   right=True)
    if 1 < len(names) <= COR_MAX:
        vcov = res.fixed.vcov[np.ix_(order, order)]
        lines += ["", "Correlation of Fixed Effects:"] + _fixed_corr(labels, vcov)
    return lines


def coef_matrix(xm: np.ndarray, digits: int = DIGITS) -> list[list[str]]:
    """R's ``printCoefmat`` cells for (estimate, SE, test statistic) columns."""
    cs = xm[:, :2]
    acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
    digmin = 1 + (np.floor(np.log10([acs.min(), acs.max()])) if acs.size else np.zeros(2))
    rounded = r_round(cs, max(1, int(max(digits - digmin))))
    est = np.array(format_num(rounded.ravel(order="F"), digits), dtype=object).reshape(cs.shape, order="F")
    tst = format_num(r_round(xm[:, 2], max(1, min(5, digits - 1))), digits)
    # printCoefmat: a non-zero shown as 0 (or the reverse) is reformatted with one digit less
    shown = np.array([[float(c) if c.strip() not in ("NA", "NaN") else np.nan for c in row] for row in est])
    fix = (cs == 0) != (shown == 0)
    if fix.any():
        again = format_num(cs[fix], max(1, digits - 1))
        est[fix] = again
    cells = [[*est[i], tst[i]] for i in range(len(xm))]
    for i in range(len(xm)):
        cells[i] = ["NA" if np.isnan(xm[i, j]) else c for j, c in enumerate(cells[i])]
    return cells


def _fixed_corr(labels: list[str], vcov: np.ndarray) -> list[str]:
    p = len(labels)
    sd = np.sqrt(np.diag(vcov))
    corr = vcov / np.outer(sd, sd)
    cells = format_num(r_round(corr.ravel(order="F"), 3), nsmall=3)
    rows, cols = abbreviate(labels, 11), abbreviate(labels, 6)
    body = [[cells[j * p + i] if i > j else "" for j in range(p - 1)] for i in range(1, p)]
    return print_matrix(rows[1:], cols[:-1], body)


def _notes(res) -> list[str]:
    notes = []
    if getattr(res, "vce", ""):
        clusters = getattr(res, "clusters", ())
        notes.append(f"Std. Error: {res.vce.lower()}" + (f", {clusters[0]} clusters in {clusters[1]}" if clusters else ""))
    if res.df is not None:
        notes.append(f"t values: dfmethod({res.df_method}); their DF and p-values are in res.fixed_effects")
    if res.residual_label:
        notes.append(f"Residual structure: {res.residual_label} (its parameters: the Stata table); "
                     "Residual shows var(e)")
    for e in res.equations:
        if e.structure == "Exchangeable" or (e.structure == "Identity" and len(e.names) > 1
                                              and not e.names[0].startswith("R.")):
            notes.append(f"covariance({e.structure.lower()}) for {e.label}: equal variances"
                         + (" and correlations" if e.structure == "Exchangeable" else ""))
    return notes


class Summary:
    """Text of a summary; shows as itself in a console or notebook (``print`` it, or ``str``)."""

    def __init__(self, text: str, style: str):
        self.text, self.style = text, style

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        from html import escape

        return f"<pre>{escape(self.text)}</pre>"


STYLES = ("stata", "lme4")


def summary(res, style: str = "stata") -> Summary:
    """Stata's table (``style="stata"``) or lme4's ``summary()`` (``style="lme4"``)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    return Summary(res.table() if style == "stata" else render_lme4(res), style)
