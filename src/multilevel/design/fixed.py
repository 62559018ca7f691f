"""The fixed-effects matrix X: formulaic builds it, we name and check it.

Columns linearly dependent on earlier ones are omitted (Stata's ``_rmcoll``:
``_cons`` is kept and later columns are dropped), and reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..linalg.dense import schur_pivots, spd_solve
from ..spec.errors import DataError
from ..spec.factor import level_label, stata_name
from .levels import base_and_levels


@dataclass(frozen=True)
class FixedTerm:
    """The fixed-effects design: full-rank X and what was left out."""

    X: np.ndarray
    names: tuple[str, ...]
    omitted: tuple[str, ...]
    model_spec: object | None  # formulaic ModelSpec (None when X is plain columns)
    columns: tuple[str, ...] = ()  # all columns before omission, Stata names
    factors: tuple = ()  # (variable, levels) of each i.var read without formulaic, in order

    def matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for new data: the same columns (omitted ones left out), same encoding."""
        if self.model_spec is None and self.factors:
            X = _simple_columns(data, len(data), self._terms(), "_cons" in self.columns, dict(self.factors))[0]
        elif self.model_spec is None:
            X = _plain_columns([data[c].to_numpy(dtype=float) for c in self.columns if c != "_cons"],
                               "_cons" in self.columns, len(data))
        else:
            mm = self.model_spec.get_model_matrix(_categoricals_as_int(data, str(self.model_spec.formula)))
            X = _cons_last(np.asarray(mm, dtype=float), [stata_name(c) for c in mm.columns],
                           "_cons" in self.columns)[0]
        keep = [c in self.names for c in self.columns]
        return X[:, keep]

    def _terms(self) -> list[tuple[str, bool, str | None]]:
        """(variable, is a factor, base) per term of a formula read without formulaic."""
        factors, out = dict(self.factors), []
        for c in self.columns:
            var = c.split(".", 1)[1] if "." in c else c
            if c != "_cons" and not any(t[0] == var for t in out):
                out.append((var, var in factors, factors[var][0] if var in factors else None))
        return out


def variables(formula: str) -> list[str]:
    """Data columns a formulaic right-hand side uses."""
    if not formula.strip():
        return []
    terms = [t.strip() for t in formula.split("+")]
    if all(_PLAIN.match(t) for t in terms):
        return list(dict.fromkeys(terms))
    simple = _simple_terms(formula)
    if simple is not None:
        return sorted(var for var, _, _ in simple)
    from formulaic import Formula

    return sorted(str(v) for v in Formula(formula).required_variables)


def build(formula: str, constant: bool, frame: pd.DataFrame,
          looked_up: dict[str, pd.Series] | None = None, r_coding: bool = False) -> FixedTerm:
    """X for ``formula`` on ``frame`` with Stata names, ``_cons`` last (``looked_up``: columns of
    ``frame`` already taken).

    A formula of plain variable names is read straight from the columns;
    anything else (factors, interactions, transforms) goes through formulaic.
    Factors are coded as with a constant whether or not there is one (Stata's base
    levels, [U] 11.4.3); ``r_coding`` without a constant codes the first factor in full
    (R's ``0 + factor(x)``).
    """
    looked_up = looked_up or {}
    simple = None if (r_coding and not constant) else _simple_terms(formula)
    if simple is not None:
        columns = {var: looked_up[var] if var in looked_up else frame[var] for var, _, _ in simple}
        if all(_integer_valued(columns[var]) for var, factor, _ in simple if factor):
            return _simple_build(simple, constant, columns, len(frame))
    columns = {var: looked_up[var] if var in looked_up else frame[var] for var in variables(formula)}
    for var, column in columns.items():
        if not _numeric(column) and f"C({var}" not in formula:
            raise DataError(f"variable '{var}' is not numeric; use i.{var} for a categorical variable")
    plain = [t.strip() for t in formula.split("+")] if formula.strip() else []
    if all(_PLAIN.match(t) for t in plain):
        model_spec = None
        X = _plain_columns([columns[t].to_numpy(dtype=float) for t in plain], constant, len(frame))
        cols = plain + (["_cons"] if constant else [])
    else:
        rhs = (formula if formula.strip() else "1") + ("" if constant or not r_coding else " - 1")
        from formulaic import model_matrix

        mm = model_matrix(rhs, _categoricals_as_int(frame, formula), na_action="raise")
        model_spec = mm.model_spec
        X, cols = _cons_last(np.asarray(mm, dtype=float), [stata_name(c) for c in mm.columns], constant)
    return _full_rank(X, cols, constant, model_spec)


def _full_rank(X: np.ndarray, cols: list[str], constant: bool, model_spec, factors: tuple = ()) -> FixedTerm:
    """The :class:`FixedTerm` with the columns that depend on earlier ones omitted."""
    keep = _independent_columns(X, prefer_last=constant)
    omitted = tuple(c for c, k in zip(cols, keep) if not k)
    return FixedTerm(X if keep.all() else X[:, keep], tuple(c for c, k in zip(cols, keep) if k), omitted,
                     model_spec, tuple(cols), factors)


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FACTOR = re.compile(r"^C\(([A-Za-z_][A-Za-z0-9_]*)(?:,\s*contr\.treatment\(base=([^()]+)\))?\)$")


def _simple_terms(formula: str) -> list[tuple[str, bool, str | None]] | None:
    """(variable, is a factor, base) per term when every term is a variable or ``C(variable)``
    (Stata's ``i.x`` / ``ib#.x``) and none repeats; None otherwise (formulaic builds X then)."""
    out = []
    for term in (t.strip() for t in formula.split("+")) if formula.strip() else ():
        factor = _FACTOR.match(term)
        if factor:
            out.append((factor.group(1), True, factor.group(2)))
        elif _PLAIN.match(term):
            out.append((term, False, None))
        else:
            return None
    return out if len({var for var, _, _ in out}) == len(out) else None


def _integer_valued(column: pd.Series) -> bool:
    """A numeric column whose values are all whole numbers (factor levels named ``2.x``)."""
    if not isinstance(column.dtype, np.dtype) or column.dtype.kind not in "iuf":
        return False
    values = column.to_numpy()
    return column.dtype.kind in "iu" or bool(np.all(np.mod(values, 1) == 0))


def _simple_build(terms: list[tuple[str, bool, str | None]], constant: bool, columns: dict, n: int) -> FixedTerm:
    """X of plain variables and integer-coded factors without formulaic: the factors' indicator
    columns for every level but the base (the lowest, or ``ib#.``'s), in formulaic's order and
    with Stata's names (``96.year``), ``_cons`` last."""
    for var, factor, _ in terms:
        if not factor and not _numeric(columns[var]):
            raise DataError(f"variable '{var}' is not numeric; use i.{var} for a categorical variable")
    X, cols, factors = _simple_columns(columns, n, terms, constant, {})
    return _full_rank(X, cols, constant, None, tuple(factors.items()))


def _simple_columns(data, n: int, terms: list[tuple[str, bool, str | None]], constant: bool,
                    fitted: dict) -> tuple[np.ndarray, list[str], dict]:
    """Columns of :func:`_simple_build` from ``data[var]``; ``fitted``: the fit's (base, levels)
    per factor (new data: a level the fit did not see is an error)."""
    values, cols, factors = [], [], {}
    for var, factor, base in terms:
        x = data[var].to_numpy()
        if not factor:
            values.append(x.astype(float, copy=False))
            cols.append(var)
            continue
        if x.dtype.kind == "f":
            if not np.all(np.mod(x, 1) == 0):
                raise DataError(f"factor variable '{var}' has values that are not whole numbers")
            x = x.astype(np.int64)
        if var in fitted:
            base_level, levels = fitted[var]
            unseen = np.setdiff1d(np.unique(x), [base_level, *levels])
            if len(unseen):
                raise DataError(f"level(s) {', '.join(map(str, unseen))} of '{var}' do not occur in the fit")
        else:
            base_level, levels = base_and_levels(x, base, f"i.{var}")
        factors[var] = (base_level, levels)
        for lv in levels:
            values.append((x == lv).astype(float))
            cols.append(f"{level_label(str(lv))}.{var}")
    return _plain_columns(values, constant, n), cols + (["_cons"] if constant else []), factors


def _plain_columns(columns: list[np.ndarray], constant: bool, n: int) -> np.ndarray:
    """The n×p matrix of the given columns, then a column of ones with a constant (column-major:
    each column is one contiguous copy)."""
    X = np.empty((n, len(columns) + constant), order="F")
    for j, values in enumerate(columns):
        X[:, j] = values
    if constant:
        X[:, -1] = 1.0
    return X


def _cons_last(X: np.ndarray, cols: list[str], constant: bool = True) -> tuple[np.ndarray, list[str]]:
    """Columns reordered with ``_cons`` last; without ``constant`` it is dropped (the
    factors keep the coding they have with it)."""
    if "_cons" not in cols:
        return X, cols
    i = cols.index("_cons")
    order = [j for j in range(len(cols)) if j != i] + ([i] if constant else [])
    return X[:, order], [cols[j] for j in order]


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


def _independent_columns(X: np.ndarray, prefer_last: bool, tol: float = 1e-13) -> np.ndarray:
    """Mask of columns kept when each is checked against those kept before it.

    With a constant, ``_cons`` (the last column) is checked first, as Stata
    keeps the constant and omits a later collinear variable.  Works on the
    Gram matrix XᵀX (one pass over the data): column j is dependent when the
    squared norm of its residual on the kept columns (a Schur complement) is
    below ``tol`` times its squared norm.
    """
    p = X.shape[1]
    order = ([p - 1] + list(range(p - 1))) if (prefer_last and p) else list(range(p))
    gram = X.T @ X
    keep = np.zeros(p, dtype=bool)
    ordered = gram[np.ix_(order, order)]
    pivots = schur_pivots(ordered) if p else None
    if pivots is not None and np.all(pivots > tol * np.diag(ordered)):  # no column is dependent
        keep[:] = True
        return keep
    kept: list[int] = []
    for j in order:
        norm2 = gram[j, j]
        if norm2 <= 0:
            continue
        if kept:
            g = gram[np.ix_(kept, kept)]
            b = gram[kept, j]
            resid2 = norm2 - b @ spd_solve(g, b)
        else:
            resid2 = norm2
        if resid2 > tol * norm2:
            keep[j] = True
            kept.append(j)
    return keep
