"""HTML view of a GLMM fit (for Jupyter): the numbers of the Stata text table.

Same table model as :mod:`.glmm_table`: header facts, coefficient table
(odds ratios / IRRs with ``or``/``irr``/``eform``), ancillary parameters,
random-effects parameters and the LR test against the model without random
effects; every number is formatted as in the text.
"""
from __future__ import annotations

from html import escape

import numpy as np
from scipy import special

from .glmm_table import EFORM, _eform
from .html import _table
from .rows import equation_rows
from .stata_fmt import fmt_f, fmt_g
from .stata_table import _group_levels


def _facts(res) -> list[list[str]]:
    facts = [["Number of obs", f"{res.nobs:,}"]]
    if res.command == "meglm":
        facts += [["Family", res.family], ["Link", res.link]]
    if res.family == "nbinomial":
        facts.append(["Overdispersion", str(res.dispersion)])
    facts += [[f"Groups ({name})", f"{n:,}"] for name, n, _ in _group_levels(res)]
    facts.append(["Integration method", res.intmethod])
    if res.intmethod != "laplace":
        facts.append(["Integration pts.", str(res.intpoints)])
    facts.append(["Log pseudolikelihood" if res.vce else "Log likelihood", fmt_g(res.loglik, 10).strip()])
    if res.vce:
        facts.append(["Std. err. adjusted for", f"{res.clusters[0]:,} clusters in {res.clusters[1]}"])
    if res.wald.df:
        facts += [[f"Wald chi2({res.wald.df})", fmt_f(res.wald.stat, 10, 2).strip()],
                  ["Prob > chi2", fmt_f(res.wald.pvalue, 10, 4).strip()]]
    return facts


def _fixed(res, eform: str | None) -> list[list[str]]:
    rows = []
    for name, r in res.fixed_effects.iterrows():
        est, se, lo, hi = r.estimate, r.se, r.ci_lower, r.ci_upper
        if eform:
            est, se, lo, hi = np.exp(est), np.exp(est) * se, np.exp(lo), np.exp(hi)
        rows.append([name, fmt_g(est).strip(), fmt_g(se).strip(), fmt_f(r.z, 8, 2).strip(),
                     fmt_f(r.p, 5, 3).strip(), fmt_g(lo).strip(), fmt_g(hi).strip()])
    crit = special.ndtri(0.5 + res.level / 200)
    for a in res.ancillary:
        if a.name != "lnsig_e":
            rows.append(["/" + a.name, fmt_g(a.estimate).strip(), fmt_g(a.se).strip(), "", "",
                         fmt_g(a.estimate - crit * a.se).strip(), fmt_g(a.estimate + crit * a.se).strip()])
    return rows


def _random(res, stddev: bool) -> list[list[str]]:
    return [[r.equation, r.name, fmt_g(r.estimate).strip(), fmt_g(r.se).strip(), fmt_g(r.lower).strip(),
             fmt_g(r.upper).strip()] for e in res.equations for r in equation_rows(e, res.level, stddev)]


def render_html(res, stddeviations: bool = False, **options) -> str:
    """The fit as an HTML fragment."""
    eform = _eform(res, options)
    lvl = f"{res.level:g}"
    head = EFORM[eform] if eform else "Coefficient"
    parts = [f"<div class='multilevel-results'><p><b>{escape(res.title)}</b></p>", _table(["", ""], _facts(res)),
             _table([res.depvar, head, "Robust std. err." if res.vce else "Std. err.", "z", "P>|z|",
                     f"[{lvl}% conf.", "interval]"], _fixed(res, eform)),
             _table(["Equation", "Random-effects parameters", "Estimate", "Std. err.", f"[{lvl}% conf.",
                     "interval]"], _random(res, bool(stddeviations)))]
    if res.lr.df and not options.get("nolrtest") and not res.vce:
        from .glmm_table import lr_line

        parts.append(f"<p>{escape(lr_line(res)[0])}</p>")
    parts += [f"<p>Note: {escape(n)}</p>" for n in res.warnings]
    return "".join(parts) + "</div>"
