"""Caterpillar plot of the BLUPs, residuals against fitted values, normal QQ plot."""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from ..inference.distributions import critical_value
from ..spec.errors import SpecError
from ._mpl import axes


def caterpillar(res, level: str | None = None, term: str | None = None, ax=None, ci: float | None = None):
    """BLUPs of one level and term, sorted, each with its interval b̂ ± z·SE.

    The BLUPs and SEs are ``res.random_effects_table()`` (Stata's ``predict,
    reffects`` and ``reses``: the conditional SD after ML, the comparative SE
    after REML); ``ci`` is the confidence level (default: the fit's).
    ``level`` defaults to the top level, ``term`` to the intercept (``_cons``)
    or the level's first term.  One marker and one error bar per group,
    groups on the y axis labelled by their values, a vertical line at 0.
    """
    table = res.random_effects_table()
    level = _pick(level, list(dict.fromkeys(table["level"])), "level")
    rows = table[table["level"] == level]
    terms = list(dict.fromkeys(rows["term"]))
    term = _pick(term, terms, "term", default="_cons" if "_cons" in terms else terms[0])
    rows = rows[rows["term"] == term].sort_values("estimate", kind="stable")
    z = critical_value(res.level if ci is None else ci)
    y = np.arange(len(rows))
    ax = axes(ax, figsize=(6.4, max(4.8, 0.16 * len(rows) + 1.0)))
    ax.errorbar(rows["estimate"], y, xerr=z * rows["se"].to_numpy(), fmt="o", markersize=3,
                elinewidth=1, capsize=0)
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, [str(g) for g in rows["group"]], fontsize="small")
    ax.set_ylim(-1, len(rows))
    ax.set_xlabel(f"BLUP of {term} with {res.level if ci is None else ci:g}% interval")
    ax.set_ylabel(level)
    ax.set_title(f"Random effects: {level}: {term}")
    return ax


def _pick(value, choices: list, what: str, default=None):
    if value is None:
        return choices[0] if default is None else default
    if value not in choices:
        raise SpecError(f"{what} {value!r} is not in the model; choose one of {', '.join(map(str, choices))}")
    return value


def residuals_vs_fitted(res, ax=None):
    """Residuals y − ŷ against the fitted values ŷ = xβ̂ + zb̂, with a line at 0."""
    fitted, resid = res.predict("fitted"), res.predict("residuals")
    keep = fitted.notna() & resid.notna()
    ax = axes(ax)
    ax.scatter(fitted[keep], resid[keep], s=10)
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("Fitted values: xb + Zu")
    ax.set_ylabel("Residuals")
    return ax


def qq(res, which: str = "residuals", level: str | None = None, term: str | None = None, ax=None):
    """Normal quantile plot (Stata's ``qnorm``) with the line y = x.

    ``which="residuals"``: the residuals divided by σ̂_e; ``which="reffects"``:
    the BLUPs of ``level``/``term`` divided by their SD, sqrt of the variance
    component.  The i-th smallest of N values is plotted against
    Φ⁻¹(i / (N + 1)), as Stata's ``qnorm``.
    """
    if which == "residuals":
        values = res.predict("residuals").dropna().to_numpy() / np.sqrt(res.residual_var)
        label = "Standardized residuals"
    elif which == "reffects":
        values, label = _standardized_blups(res, level, term)
    else:
        raise ValueError(f"which must be 'residuals' or 'reffects', not {which!r}")
    values = np.sort(values)
    theory = ndtri(np.arange(1, len(values) + 1) / (len(values) + 1))
    ax = axes(ax)
    ax.scatter(theory, values, s=10)
    lim = [min(theory[0], values[0]), max(theory[-1], values[-1])]
    ax.plot(lim, lim, color="grey", linewidth=0.8)
    ax.set_xlabel("Inverse normal")
    ax.set_ylabel(label)
    return ax


def _standardized_blups(res, level, term):
    table = res.random_effects_table()
    level = _pick(level, list(dict.fromkeys(table["level"])), "level")
    rows = table[table["level"] == level]
    terms = list(dict.fromkeys(rows["term"]))
    term = _pick(term, terms, "term", default="_cons" if "_cons" in terms else terms[0])
    eq = next(e for e in res.equations if e.label == level)
    sd = np.sqrt(eq.cov[eq.names.index(term), eq.names.index(term)]) if term in eq.names else 1.0
    return rows.loc[rows["term"] == term, "estimate"].to_numpy() / sd, f"Standardized BLUPs: {level}: {term}"
