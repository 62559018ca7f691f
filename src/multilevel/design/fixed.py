"""The fixed-effects matrix X: formulaic builds it, we name and check it.

Columns linearly dependent on earlier ones are omitted (Stata's ``_rmcoll``:
``_cons`` is kept and later columns are dropped), and reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec.errors import DataError
from ..spec.factor import stata_name


@dataclass(frozen=True)
class FixedTerm:
    """The fixed-effects design: full-rank X and what was left out."""

    X: np.ndarray
    names: tuple[str, ...]
    omitted: tuple[str, ...]
    model_spec: object | None  # formulaic ModelSpec, to rebuild X on new data


def variables(formula: str) -> list[str]:
    """Data columns a formulaic right-hand side uses."""
    if not formula.strip():
        return []
    from formulaic import Formula

    return sorted(str(v) for v in Formula(formula).required_variables)


def build(formula: str, constant: bool, frame: pd.DataFrame) -> FixedTerm:
    """X for ``formula`` on ``frame`` with Stata names, ``_cons`` last."""
    for var in variables(formula):
        if not _numeric(frame[var]) and f"C({var}" not in formula:
            raise DataError(f"variable '{var}' is not numeric; use i.{var} for a categorical variable")
    rhs = (formula if formula.strip() else "1") + ("" if constant else " - 1")
    from formulaic import model_matrix

    mm = model_matrix(rhs, _categoricals_as_int(frame, formula), na_action="raise")
    cols = [stata_name(c) for c in mm.columns]
    X = np.asarray(mm, dtype=float)
    if "_cons" in cols:
        i = cols.index("_cons")
        order = [j for j in range(len(cols)) if j != i] + [i]
        X, cols = X[:, order], [cols[j] for j in order]
    keep = _independent_columns(X, prefer_last=constant)
    omitted = tuple(c for c, k in zip(cols, keep) if not k)
    return FixedTerm(X[:, keep], tuple(c for c, k in zip(cols, keep) if k), omitted, mm.model_spec)


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series)


def _categoricals_as_int(frame: pd.DataFrame, formula: str) -> pd.DataFrame:
    """Integer-valued float columns used as factors become ints, so levels print as ``2`` not ``2.0``."""
    out = frame
    for var in frame.columns:
        if f"C({var}" in formula and pd.api.types.is_float_dtype(frame[var]):
            values = frame[var].to_numpy()
            if np.all(np.mod(values, 1) == 0):
                out = out.assign(**{var: values.astype(np.int64)})
    return out


def _independent_columns(X: np.ndarray, prefer_last: bool, tol: float = 1e-9) -> np.ndarray:
    """Mask of columns kept when each is checked against those kept before it.

    With a constant, ``_cons`` (the last column) is checked first, as Stata
    keeps the constant and omits a later collinear variable.
    """
    p = X.shape[1]
    order = ([p - 1] + list(range(p - 1))) if (prefer_last and p) else list(range(p))
    keep = np.zeros(p, dtype=bool)
    basis = np.zeros((X.shape[0], 0))
    for j in order:
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        resid = col
        for _ in range(2):  # Gram-Schmidt twice keeps the basis orthogonal
            resid = resid - basis @ (basis.T @ resid)
        if np.linalg.norm(resid) > tol * norm:
            basis = np.column_stack([basis, resid / np.linalg.norm(resid)])
            keep[j] = True
    return keep
