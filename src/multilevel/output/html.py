"""HTML view of the same table model as the Stata text (for Jupyter)."""
from __future__ import annotations

from html import escape

from .rows import random_rows
from .stata_fmt import fmt_f, fmt_g


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(res, stddev: bool = False) -> str:
    """Header facts, coefficient table and random-effects table, numbers formatted as Stata's."""
    ll = "Log restricted-likelihood" if res.method == "reml" else "Log likelihood"
    facts = [["Number of obs", f"{res.nobs:,}"], [ll, fmt_g(res.loglik, 10).strip()]]
    facts += [[f"Groups ({e.label})", f"{e.n_groups:,}"] for e in res.equations if not e.names[0].startswith("R.")]
    if res.wald.df:
        facts.append([f"Wald chi2({res.wald.df})", fmt_f(res.wald.stat, 10, 2).strip()])
    fe = res.fixed_effects
    lvl = f"{res.level:g}"
    fixed = [[name, fmt_g(r.estimate).strip(), fmt_g(r.se).strip(), fmt_f(r.z, 8, 2).strip(),
              fmt_f(r.p, 5, 3).strip(), fmt_g(r.ci_lower).strip(), fmt_g(r.ci_upper).strip()]
             for name, r in fe.iterrows()]
    random = [[r.equation, r.name, fmt_g(r.estimate).strip(), fmt_g(r.se).strip(), fmt_g(r.lower).strip(),
               fmt_g(r.upper).strip()] for r in random_rows(res, stddev)]
    return (f"<div class='multilevel-results'><p><b>{escape(res.title)}</b></p>"
            + _table(["", ""], facts)
            + _table([res.depvar, "Coefficient", "Std. err.", "z", "P>|z|", f"[{lvl}% conf.", "interval]"], fixed)
            + _table(["Equation", "Random-effects parameters", "Estimate", "Std. err.", f"[{lvl}% conf.",
                      "interval]"], random)
            + "</div>")
