"""Stata's text output of ``mixed``: header, coefficient table, random-effects table.

Layout as Stata 17 prints it (78 columns; [ME] mixed, Remarks and examples).
"""
from __future__ import annotations

import re

import numpy as np

from .rows import equation_rows, residual_row, structure_rows
from .stata_fmt import fmt_f, fmt_g

WIDTH = 78
LINE = "-" * WIDTH


def abbreviate(name: str, width: int) -> str:
    """Stata's ``abbrev()``: keep the start and the last character around ``~``."""
    return name if len(name) <= width else name[:width - 2] + "~" + name[-1]


def _right(label: str, text: str) -> str:
    """A header line with ``label`` at column 49 and ``=`` at column 67."""
    return f"{'':48}{label:<18}= {text:>10}"


def _pair(left: str, label: str, text: str) -> str:
    return f"{left:<48}{label:<18}= {text:>10}"


def header(res) -> list[str]:
    lines = [_pair(res.title, "Number of obs", f"{res.nobs:,}")]
    levels = _group_levels(res)
    if len(levels) == 1:
        name, n, (lo, avg, hi) = levels[0]
        lines.append(_pair(f"Group variable: {name}", "Number of groups", f"{n:,}"))
        lines += [f"{'':48}Obs per group:",
                  f"{'':62}min ={lo:>11,}", f"{'':62}avg ={avg:>11.1f}", f"{'':62}max ={hi:>11,}", ""]
    elif levels and not res.options.get("nogroup"):
        lines += ["", "-" * 61, "                |     No. of       Observations per group",
                  " Group variable |     groups    Minimum    Average    Maximum", "----------------+" + "-" * 44]
        for name, n, (lo, avg, hi) in levels:
            lines.append(f"{abbreviate(name, 15):>15} |{n:>11,}{lo:>11,}{avg:>11.1f}{hi:>11,}")
        lines += ["-" * 61, ""]
    wald = res.wald
    if res.df is not None:
        lines += _df_lines(res)
    ll_label = "Log restricted-likelihood" if res.method == "reml" else "Log likelihood"
    if res.vce:
        ll_label = "Log pseudolikelihood"
    ll_text = f"{ll_label} = {fmt_g(res.loglik, 10).strip()}"
    if wald.kind == "F" and wald.df and np.isnan(wald.df2):
        # no common denominator DF (dfmethod(repeated/anova) with unequal DF): Stata prints dots
        return lines + [f"{'':48}{f'F({wald.df},':<10}.  )    =     .", f"{ll_text:<48}{'Prob > F':<18}=     ."]
    if wald.kind == "F":
        test_text, prob = f"F({wald.df}, {wald.df2:.2f})", "Prob > F"
    else:
        test_text, prob = f"Wald chi2({wald.df})", "Prob > chi2"
    lines.append(_right(test_text, fmt_f(wald.stat, 10, 2) if wald.df else "."))
    p_text = fmt_f(wald.pvalue, 10, 4) if wald.df else "."
    lines.append(_pair(ll_text, prob, p_text))
    return lines


DF_LABELS = {"residual": "Residual", "repeated": "Repeated", "anova": "ANOVA", "satterthwaite": "Satterthwaite",
             "satterthwaite_eim": "Satterthwaite", "kenwardroger": "Kenward-Roger"}


def _df_lines(res) -> list[str]:
    df = res.df
    return [f"{'DF method: ' + DF_LABELS[res.df_method]:<48}DF:{'':11}min ={min(df):>11.2f}",
            f"{'':62}avg ={sum(df) / len(df):>11.2f}", f"{'':62}max ={max(df):>11.2f}", ""]


def _group_levels(res) -> list[tuple[str, int, tuple[int, float, int]]]:
    """Distinct grouping levels (``_all`` once) with counts, top level first."""
    seen, out = set(), []
    for e in res.equations:
        key = e.group_vars if not e.names[0].startswith("R.") else ("_all",)
        name = "_all" if key == ("_all",) else e.label
        if key in seen:
            continue
        seen.add(key)
        if key == ("_all",):
            out.append((name, 1, (res.nobs, float(res.nobs), res.nobs)))
        else:
            out.append((name, e.n_groups, e.obs_per_group))
    return out


def _columns(res, dftable: str) -> tuple[str, object]:
    """Header text and row formatter of the coefficient table's columns after Std. err.

    ``dftable()`` (with ``dfmethod()``): ``default`` t, P>|t| and the CI; ``ci`` the DF and the
    CI; ``pvalue`` the DF, t and P>|t|.
    """
    lvl = f"{res.level:g}"
    ci_head = f"[{lvl}% conf. interval]"
    if res.df is None:
        return (f"     z    P>|z|     {ci_head}",
                lambda r: f"{fmt_f(r.z, 9, 2)}{fmt_f(r.p, 8, 3)}    {fmt_g(r.ci_lower)}   {fmt_g(r.ci_upper)}")
    if dftable == "ci":
        return (f"      DF     {ci_head}",
                lambda r: f"{fmt_f(r.df, 9, 2)}    {fmt_g(r.ci_lower)}   {fmt_g(r.ci_upper)}")
    if dftable == "pvalue":
        return ("      DF        t    P>|t|",
                lambda r: f"{fmt_f(r.df, 9, 2)}{fmt_f(r.t, 9, 2)}{fmt_f(r.p, 9, 3)}")
    return (f"     t    P>|t|     {ci_head}",
            lambda r: f"{fmt_f(r.t, 9, 2)}{fmt_f(r.p, 8, 3)}    {fmt_g(r.ci_lower)}   {fmt_g(r.ci_upper)}")


def coefficient_table(res, dftable: str = "default") -> list[str]:
    fe = res.fixed_effects
    head, row_text = _columns(res, str(dftable or "default").strip().lower())
    se_label = "std. err." if res.vce else "Std. err."
    lines = [LINE, f"{abbreviate(res.depvar, 12):>12} | Coefficient  {se_label} {head}",
             "-" * 13 + "+" + "-" * 64]
    if res.vce:
        n, var = res.clusters
        note = f"(Std. err. adjusted for {n:,} clusters in {var})"
        lines[:1] = [f"{note:>78}", LINE, f"{'':13}|{'':15}Robust"]
    for (before, text), (_, row) in zip(factor_rows(fe.index), fe.iterrows()):
        lines += before
        lines.append(text + f"  {fmt_g(row.estimate)}  {fmt_g(row.se)}" + row_text(row))
    for name in res.fixed.omitted:
        lines.append(f"{abbreviate(name, 12):>12} |          0  (omitted)")
    lines.append(LINE)
    return lines


def factor_rows(names):
    """For each coefficient, the lines to print before its row (a blank line and the factor's
    header, as Stata groups factor levels; a rule and the equation's name before the first
    coefficient of an equation ``phi1:x``, as Stata's multiple-equation tables) and the row's label
    column."""
    previous, equation = None, None
    for i, full in enumerate(names):
        eq, _, name = full.rpartition(":")
        before = []
        if eq != equation and (eq or equation):
            before += ["-" * 13 + "+" + "-" * 64] if i > 0 else []
            before += [f"{abbreviate(eq, 12):<12} |"] if eq else []
            equation, previous = eq, None
        group, label = _factor_parts(name)
        if group != previous and (group or previous) and i > 0 and not (before and previous is None):
            before.append(f"{'':12} |")
        if group and group != previous:
            before.append(f"{abbreviate(group, 12):>12} |")
        previous = group
        yield before, (f"{label:>11}  |" if group else f"{abbreviate(label, 12):>12} |")


def _factor_parts(name: str) -> tuple[str | None, str]:
    """``1.male#c.age`` -> (``male#c.age``, ``1``); ``age`` -> (None, ``age``)."""
    pieces = name.split("#")
    levels = [re.match(r"^([^.]+)\.(.+)$", p) for p in pieces]
    factor = [m for m in levels if m and m.group(1) != "c"]
    if not factor:
        return None, name
    group = "#".join(m.group(2) if (m and m.group(1) != "c") else p for m, p in zip(levels, pieces))
    return group, " ".join(m.group(1) for m in factor)


def random_table(res, stddev: bool) -> list[str]:
    lvl = f"{res.level:g}"
    sep = "-" * 29 + "+" + "-" * 48
    lines = [LINE, f"  Random-effects parameters  |   Estimate   Std. err.     [{lvl}% conf. interval]", sep]
    for e in res.equations:
        lines.append(f"{(e.label + ': ' + e.structure)[:29]:<29}|")
        lines += [_random_line(r) for r in equation_rows(e, res.level, stddev)]
        lines.append(sep)
    if res.residual_rows:
        head, _, by = ("Residual: " + res.residual_label).partition(", by ")
        lines += [f"{head + (',' if by else ''):<29}|"] + ([f"{'    by ' + by:<29}|"] if by else [])
        lines += [_random_line(r) for r in structure_rows(res)]
    else:
        lines.append(_random_line(residual_row(res, stddev)))
    return lines + [LINE]


def _random_line(r) -> str:
    return (f"{abbreviate(r.name, 28):>28} |  {fmt_g(r.estimate)}  {fmt_g(r.se)}"
            f"     {fmt_g(r.lower)}   {fmt_g(r.upper)}")


def lr_line(res, against: str = "linear model") -> list[str]:
    """``LR test vs. <against>: chibar2(01) = ...`` (or chi2(k) with Stata's note)."""
    lr = res.lr
    if lr.kind == "chibar2":
        left = f"LR test vs. {against}: chibar2(01) = {lr.stat:.2f}"
        return [f"{left:<54}Prob >= chibar2 = {lr.pvalue:.4f}"]
    left = f"LR test vs. {against}: chi2({lr.df}) = {lr.stat:.2f}"
    return [f"{left:<54}Prob > chi2 = {lr.pvalue:.4f}", "",
            "Note: LR test is conservative and provided only for reference."]


def render(res, stddeviations: bool = False, noheader: bool = False, nofetable: bool = False,
           noretable: bool = False, dftable: str = "default", **_ignored) -> str:
    """The whole Stata output as one string."""
    out: list[str] = []
    if not noheader:
        out += header(res) + [""]
    if not nofetable:
        out += coefficient_table(res, dftable) + [""]
    if not noretable:
        out += random_table(res, bool(stddeviations))
    if res.lr.df and not res.options.get("nolrtest") and not res.vce:
        out += lr_line(res)
    for note in res.warnings:
        out += ["", f"Note: {note}"]
    return "\n".join(out).rstrip("\n") + "\n"

