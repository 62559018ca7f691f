"""The random-effects rows of the table model, shared by text, HTML and pandas.

Variances get CIs from the log-SD metric, correlations from atanh, and
covariances a normal CI on their own scale, as Stata ([ME] mixed, Methods
and formulas).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inference.distributions import critical_value


@dataclass(frozen=True)
class Row:
    """One line of the random-effects table."""

    equation: str
    name: str
    estimate: float
    se: float
    lower: float
    upper: float


def _var_row(eq: str, label: str, phi: float, phi_se: float, crit: float, stddev: bool) -> Row:
    if stddev:
        sd = np.exp(phi)
        return Row(eq, f"sd({label})", sd, sd * phi_se, np.exp(phi - crit * phi_se), np.exp(phi + crit * phi_se))
    var = np.exp(2 * phi)
    return Row(eq, f"var({label})", var, 2 * var * phi_se,
               np.exp(2 * (phi - crit * phi_se)), np.exp(2 * (phi + crit * phi_se)))


def _cov_row(eq: str, label: str, cov: float, cov_se: float, atanh: float, atanh_se: float,
             crit: float, stddev: bool) -> Row:
    if stddev:
        r = np.tanh(atanh)
        return Row(eq, f"corr({label})", r, (1 - r * r) * atanh_se,
                   np.tanh(atanh - crit * atanh_se), np.tanh(atanh + crit * atanh_se))
    return Row(eq, f"cov({label})", cov, cov_se, cov - crit * cov_se, cov + crit * cov_se)


def equation_rows(e, level: float, stddev: bool) -> list[Row]:
    """Rows of one :class:`EquationResult` in Stata's order."""
    crit = critical_value(level)
    head, names, k = e.label, e.names, len(e.names)
    if e.structure in ("Identity", "Exchangeable"):
        rows = [_var_row(head, " ".join(names), e.phi[0], e.phi_se[0], crit, stddev)]
        if e.structure == "Exchangeable":
            rows.append(_cov_row(head, " ".join(names), e.cov[0, 1], e.se[0, 1], e.phi[1], e.phi_se[1],
                                 crit, stddev))
        return rows
    rows = [_var_row(head, names[i], e.phi[i], e.phi_se[i], crit, stddev) for i in range(k)]
    if e.structure == "Unstructured":
        pairs = [(i, j) for i in range(k) for j in range(i)]
        for idx, (i, j) in enumerate(pairs):
            a, b = sorted((i, j))
            rows.append(_cov_row(head, f"{names[a]},{names[b]}", e.cov[a, b], e.se[a, b],
                                 e.phi[k + idx], e.phi_se[k + idx], crit, stddev))
        rows[k:] = sorted(rows[k:], key=lambda r: _pair_order(r.name, names))
    return rows


def _pair_order(name: str, names: tuple[str, ...]) -> tuple[int, int]:
    a, b = name[name.index("(") + 1:-1].split(",")
    return names.index(a), names.index(b)


def residual_row(res, stddev: bool) -> Row:
    crit = critical_value(res.level)
    phi = 0.5 * np.log(res.residual_var)
    return _var_row("Residual", "Residual", phi, res.residual_phi_se, crit, stddev)


def structure_rows(res) -> list[Row]:
    """Rows of a residuals() structure: variances (and menl's σ² and power constant) on the log scale, correlation-type
    parameters (``rho``) on the atanh scale, the rest normal, as Stata."""
    crit = critical_value(res.level)
    rows = []
    for name, value, se in res.residual_rows:
        base = name.split(": ")[-1]
        if base.startswith("var(") or base in ("sigma2", "_cons"):
            phi, phi_se = 0.5 * np.log(value), se / (2 * value)
            rows.append(Row("Residual", name, value, se, np.exp(2 * (phi - crit * phi_se)),
                            np.exp(2 * (phi + crit * phi_se))))
        elif base.startswith(("rho", "corr(")):
            a, a_se = np.arctanh(value), se / (1 - value ** 2)
            rows.append(Row("Residual", name, value, se, np.tanh(a - crit * a_se), np.tanh(a + crit * a_se)))
        else:
            rows.append(Row("Residual", name, value, se, value - crit * se, value + crit * se))
    return rows


def random_rows(res, stddev: bool = False) -> list[Row]:
    """All random-effects rows of a result, residual last."""
    rows = [r for e in res.equations for r in equation_rows(e, res.level, stddev)]
    if res.residual_rows:
        return rows + structure_rows(res)
    return rows + [residual_row(res, stddev)]
