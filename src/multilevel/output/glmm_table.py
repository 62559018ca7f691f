"""Stata's text output of the ``me`` GLMM commands (``melogit``, ``mepoisson``, ``meglm``, ...).

One table holds the fixed effects, the ancillary parameters (``/cut1``,
``/lnalpha``, ``/logs``) and the random-effects parameters, as Stata 17
prints it ([ME] melogit, Remarks and examples), followed by the LR test
against the model without random effects.  Reads only the results.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from .rows import equation_rows
from .stata_fmt import fmt_f, fmt_g
from .stata_table import LINE, _group_levels, _pair, _right, abbreviate, factor_rows, lr_line

SEP = "-" * 13 + "+" + "-" * 64
EFORM = {"or": "Odds ratio", "irr": "IRR", "eform": "exp(b)", "hr": "Haz. ratio", "tratio": "Time ratio"}
# the notes under an exponentiated table: (what the coefficients become, what _cons estimates)
EFORM_NOTES = {"or": ("odds ratios", "odds"), "irr": ("incidence-rate ratios", "incidence rate"),
               "eform": ("exponentiated coefficients", "exp(b)"), "hr": ("hazard ratios", "hazard"),
               "tratio": ("time ratios", "time")}


def header(res) -> list[str]:
    lines = []
    if res.command == "mestreg":  # the stset settings, as Stata prints them above the header
        st = res.options["stset"]
        width = max(18, *(len(label) + 2 for label, _ in st))
        lines += [f"{label + ':':>{width}} {value}" for label, value in st] + [""]
    lines.append(_pair(res.title, "Number of obs", f"{res.nobs:,}"))
    if res.command == "meglm":
        lines += [f"{'Family:':<15}{res.family:>16}", f"{'Link:':<15}{res.link:>16}"]
    if res.family == "nbinomial":
        lines.append(f"{'Overdispersion:':<15}{res.dispersion:>16}")
    levels = _group_levels(res)
    if len(levels) == 1:
        name, n, (lo, avg, hi) = levels[0]
        lines += [_pair(f"Group variable: {name}", "Number of groups", f"{n:,}"), "",
                  f"{'':48}Obs per group:", f"{'':62}min ={lo:>11,}", f"{'':62}avg ={avg:>11.1f}",
                  f"{'':62}max ={hi:>11,}"]
    elif levels and not res.options.get("nogroup"):
        lines += ["", "-" * 61, "                |     No. of       Observations per group",
                  " Group variable |     groups    Minimum    Average    Maximum", "----------------+" + "-" * 44]
        lines += [f"{abbreviate(name, 15):>15} |{n:>11,}{lo:>11,}{avg:>11.1f}{hi:>11,}"
                  for name, n, (lo, avg, hi) in levels]
        lines.append("-" * 61)
    lines.append("")
    method = f"Integration method: {res.intmethod}"
    lines.append(_pair(method, "Integration pts.", str(res.intpoints)) if res.intmethod != "laplace" else method)
    wald = res.wald
    lines += ["", _right(f"Wald chi2({wald.df})", fmt_f(wald.stat, 10, 2) if wald.df else "."),
              _pair(f"Log {'pseudolikelihood' if res.vce else 'likelihood'} = {fmt_g(res.loglik, 10).strip()}",
                    "Prob > chi2",
                    fmt_f(wald.pvalue, 10, 4) if wald.df else ".")]
    return lines


def _eform(res, options: dict) -> str | None:
    for key in EFORM:
        if options.get(key):
            return key
    return None


def coefficient_rows(res, eform: str | None) -> list[str]:
    fe = res.fixed_effects
    head = EFORM[eform] if eform else "Coefficient"
    lvl = f"{res.level:g}"
    lines = [LINE, f"{abbreviate(res.depvar, 12):>12} | {head:>11}  {'std. err.' if res.vce else 'Std. err.'}"
             f"      z    P>|z|     [{lvl}% conf. interval]", SEP]
    if res.vce:     # as mixed's table (stata_table.coefficient_table)
        note = f"(Std. err. adjusted for {res.clusters[0]:,} clusters in {res.clusters[1]})"
        lines[:1] = [f"{note:>78}", LINE, f"{'':13}|{'':15}Robust"]
    for (before, text), (_, row) in zip(factor_rows(fe.index), fe.iterrows()):
        lines += before
        est, se, lo, hi = row.estimate, row.se, row.ci_lower, row.ci_upper
        if eform:
            est, se, lo, hi = np.exp(est), np.exp(est) * se, np.exp(lo), np.exp(hi)
        lines.append(text + f"  {fmt_g(est)}  {fmt_g(se)}{fmt_f(row.z, 9, 2)}{fmt_f(row.p, 8, 3)}"
                            f"    {fmt_g(lo)}   {fmt_g(hi)}")
    lines += [f"{abbreviate(n, 12):>12} |          0  (omitted)" for n in res.fixed.omitted]
    for option, label in (("exposure", "ln({})"), ("offset", "{}")):  # Stata's constrained rows
        if isinstance(res.options.get(option), str):
            lines.append(f"{abbreviate(label.format(res.options[option]), 12):>12} |          1  ({option})")
    return lines


def _no_test_line(label: str, est: float, se: float, lo: float, hi: float, sep: str = " |") -> str:
    return f"{label}{sep}  {fmt_g(est)}  {fmt_g(se)}{'':21}{fmt_g(lo)}   {fmt_g(hi)}"


def ancillary_rows(res) -> list[str]:
    """``/cut1``, ``/lnalpha``, ``/logs`` with Wald CIs, no z test (as Stata)."""
    shown = [a for a in res.ancillary if a.name != "lnsig_e"]
    if not shown:
        return []
    crit = special.ndtri(0.5 + res.level / 200)
    lines = [SEP]
    for a in shown:
        lines.append(_no_test_line(f"{'/' + a.name:>12}", a.estimate, a.se,
                                   a.estimate - crit * a.se, a.estimate + crit * a.se))
    return lines


def random_rows(res, stddev: bool) -> list[str]:
    lines = []
    for e in res.equations:
        lines += [SEP, f"{abbreviate(e.label, 13):<13}|"]
        for r in equation_rows(e, res.level, stddev):
            lines.append(_no_test_line(f"{abbreviate(r.name, 13):>13}", r.estimate, r.se, r.lower, r.upper, "|"))
    a = res._anc("lnsig_e")
    if a is not None:
        crit = special.ndtri(0.5 + res.level / 200)
        k = 1 if stddev else 2
        name = f"{'sd' if stddev else 'var'}(e.{res.depvar})"
        est = np.exp(k * a.estimate)
        lines += [SEP, _no_test_line(f"{abbreviate(name, 13):>13}", est, k * est * a.se,
                                     np.exp(k * (a.estimate - crit * a.se)),
                                     np.exp(k * (a.estimate + crit * a.se)), "|")]
    return lines + [LINE]


def render(res, stddeviations: bool = False, noheader: bool = False, nofetable: bool = False,
           noretable: bool = False, **options) -> str:
    """The whole Stata output as one string."""
    eform = _eform(res, options)
    out: list[str] = []
    if not noheader:
        out += header(res)
    body = [] if nofetable else coefficient_rows(res, eform) + ancillary_rows(res)
    body += [] if noretable else random_rows(res, bool(stddeviations))
    if nofetable and not noretable:
        body = [LINE] + body[1:]
    if body and body[-1] != LINE:
        body.append(LINE)
    out += body
    if eform and not nofetable and "_cons" in res.fixed.names:
        what = EFORM_NOTES[eform]
        out += [f"Note: Estimates are transformed only in the first equation to {what[0]}.",
                f"Note: _cons estimates baseline {what[1]} (conditional on zero random effects)."]
    if res.lr.df and not options.get("nolrtest") and not res.vce:
        out += lr_line(res, res.lr_label)
    for note in res.warnings:
        out += ["", f"Note: {note}"]
    return "\n".join(out).rstrip("\n") + "\n"
