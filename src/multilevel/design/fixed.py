"""The fixed-effects matrix X: formulaic builds it, we name and check it.

Columns linearly dependent on earlier ones are omitted (Stata's ``_rmcoll``:
``_cons`` is kept and later columns are dropped), and reported.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..linalg.dense import schur_pivots, spd_solve
from ..spec.errors import DataError
from ..spec.factor import _POWER_COL as _POWER, level_label, stata_name
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
    cells: tuple = ()  # (term, ((variable, levels, base), ...)) of each interaction coded in cells

    def matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for new data: the same columns (omitted ones left out), same encoding."""
        if self.model_spec is None and self.factors:
            X = _simple_columns(data, len(data), self._terms(), "_cons" in self.columns, dict(self.factors))[0]
        elif self.model_spec is None:
            X = _plain_columns([data[c].to_numpy(dtype=float) for c in self.columns if c != "_cons"],
                               "_cons" in self.columns, len(data))
        else:
            mm = self.model_spec.get_model_matrix(_categoricals_as_int(data, str(self.model_spec.formula)))
            X, cols, _ = _interaction_cells(mm, data, dict(self.cells))
            X = _cons_last(X, cols, "_cons" in self.columns)[0]
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
        X, cols, cells = _interaction_cells(mm, frame, {} if r_coding else None)
        X, cols = _cons_last(X, cols, constant)
        return _full_rank(X, cols, constant, model_spec, cells=tuple(cells.items()))
    return _full_rank(X, cols, constant, model_spec)


def _full_rank(X: np.ndarray, cols: list[str], constant: bool, model_spec, factors: tuple = (),
               cells: tuple = ()) -> FixedTerm:
    """The :class:`FixedTerm` with the columns that depend on earlier ones omitted (in
    interactions coded in cells, those with the fewest factors at their base level first)."""
    bases = {f"{level_label(str(base))}.{var}" for _, levels in cells for var, base, _ in levels}
    at_base = [sum(p in bases for p in c.split("#")) for c in cols]
    keep = _independent_columns(X, prefer_last=constant, priority=at_base if cells else None)
    omitted = tuple(c for c, k in zip(cols, keep) if not k)
    return FixedTerm(X if keep.all() else X[:, keep], tuple(c for c, k in zip(cols, keep) if k), omitted,
                     model_spec, tuple(cols), factors, cells)


def _interaction_cells(mm, data: pd.DataFrame, fitted: dict | None) -> tuple[np.ndarray, list[str], dict]:
    """formulaic's X and Stata names, with each interaction that formulaic codes otherwise than
    Stata coded as Stata does: a column per cell (every level of every factor), less the cell
    with every factor at its base level when the term has no continuous part ([U] 11.4.3 and
    help fvvarlist: ``i.group#i.sex`` are "indicators for each combination of levels of group
    and sex"; ``sex#c.age`` is "two variables ... if age is also in the model, one of the two
    virtual variables will be treated as a base"). formulaic codes a term that lacks one of its
    margins (``i.a#i.b`` without ``i.a`` or ``i.b``) as if it had them (``1.b 1.a#0.b 1.a#1.b``):
    the same fit, other coefficients. Names are Stata's without its b/o markers (``0.a#1.b``
    for ``0b.a#1.b``). ``fitted``: the fit's (variable, base, levels) per recoded term, for new
    data or R coding (``{}``); None at the fit, which decides which terms are recoded."""
    X, names = np.asarray(mm, dtype=float), [stata_name(c) for c in mm.columns]
    present = {frozenset(_split(str(t))) for t in mm.model_spec.terms}
    blocks, cols, cells = [], [], {}
    for term, sl in mm.model_spec.term_slices.items():
        pieces = _split(str(term))
        factors = {p: _FACTOR.match(p) for p in pieces if _FACTOR.match(p)}
        continuous = [p for p in pieces if p not in factors]
        candidate = (str(term) in fitted if fitted is not None else
                     len(pieces) > 1 and factors and all(_PLAIN.match(p) or _POWER.match(p) for p in continuous)
                     and not all(frozenset(set(pieces) - {f}) in present for f in factors))
        if candidate:
            levels = fitted[str(term)] if fitted is not None else tuple(
                (m.group(1), *base_and_levels(data[m.group(1)].to_numpy(), m.group(2), f"i.{m.group(1)}"))
                for m in factors.values())
            cell_X, cell_names = _cells(data, pieces, factors, continuous, levels)
            if fitted is not None or not set(names[sl]) <= set(cell_names):  # formulaic's is not Stata's
                cells[str(term)] = levels
                blocks.append(cell_X)
                cols += cell_names
                continue
        blocks.append(X[:, sl])
        cols += names[sl]
    return np.column_stack(blocks), cols, cells


def _cells(data: pd.DataFrame, pieces: list[str], factors: dict, continuous: list[str],
           levels: tuple) -> tuple[np.ndarray, list[str]]:
    """The cell columns of one interaction and their Stata names (see :func:`_interaction_cells`)."""
    slope = np.ones(len(data))
    for p in continuous:
        power = _POWER.match(p)
        slope = slope * (data[power.group(1)].to_numpy(dtype=float) ** int(power.group(2)) if power
                         else data[p].to_numpy(dtype=float))
    values, names = [], []
    for cell in itertools.product(*[sorted((base, *others)) for _, base, others in levels]):
        if not continuous and all(lv == base for lv, (_, base, _) in zip(cell, levels)):
            continue
        x = slope.copy()
        for lv, (var, _, _) in zip(cell, levels):
            x *= data[var].to_numpy() == lv
        values.append(x)
        labels = iter(f"{level_label(str(lv))}.{var}" for lv, (var, _, _) in zip(cell, levels))
        names.append("#".join(next(labels) if p in factors else stata_name(p) if _POWER.match(p) else f"c.{p}"
                              for p in pieces))
    return np.column_stack(values) if values else np.empty((len(data), 0)), names


def _split(term: str) -> list[str]:
    return [] if term == "1" else [p.strip() for p in term.split(":")]


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


def _independent_columns(X: np.ndarray, prefer_last: bool, tol: float = 1e-13,
                         priority: list[int] | None = None) -> np.ndarray:
    """Mask of columns kept when each is checked against those kept before it.

    With a constant, ``_cons`` (the last column) is checked first, as Stata
    keeps the constant and omits a later collinear variable.  Works on the
    Gram matrix XᵀX (one pass over the data): column j is dependent when the
    squared norm of its residual on the kept columns (a Schur complement) is
    below ``tol`` times its squared norm. ``priority``: columns are checked by ascending
    priority (stably), e.g. the interaction cells with fewer factors at their base level first,
    so those with more are the ones omitted (``1.a#0.b#0.c`` in ``i.a i.a#i.b#i.c``, as Stata's
    ``i.a##i.b`` omits ``1o.a#0b.b`` rather than ``1.a#1.b``).
    """
    p = X.shape[1]
    order = ([p - 1] + list(range(p - 1))) if (prefer_last and p) else list(range(p))
    if priority:  # a stable sort: columns in order within each priority
        order = order[:1] + sorted(order[1:], key=lambda j: priority[j]) if prefer_last else sorted(
            order, key=lambda j: priority[j])
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
