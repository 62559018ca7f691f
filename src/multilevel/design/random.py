"""Random-effects equations: group codes and the small per-observation z.

As MixedModels.jl's ``ReMat``: Z is never formed; an equation holds the
group code of each observation (``refs``) and the n×k matrix ``z`` of its
columns, so that ``Z[i, refs[i]*k:(refs[i]+1)*k] = z[i]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec.errors import DataError
from ..spec.factor import level_label
from ..spec.model import ReLevel
from .levels import base_and_levels


@dataclass(frozen=True)
class ReEquation:
    """One random-effects equation on the estimation sample.

    Attributes
    ----------
    level:      index of the equation in ``ModelSpec.levels``
    label:      name shown in output (``id``, ``variety``, ``_all``)
    group_key:  grouping variables (equations with equal keys share groups)
    refs:       0-based group code of each observation (int32)
    groups:     label of each group, in code order
    z:          n×k values of the equation's columns
    names:      Stata names of the columns (``week``, ``_cons``, ``R.plate``)
    covariance: Stata covariance name
    """

    level: int
    label: str
    group_key: tuple[str, ...]
    refs: np.ndarray
    groups: tuple
    z: np.ndarray
    names: tuple[str, ...]
    covariance: str
    counts: np.ndarray | None = None  # observations per group, when refs are not kept (streamed data)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def k(self) -> int:
        return self.z.shape[1]

    @property
    def count_key(self) -> str:
        """Key of this equation in ``n_groups`` (the variable for ``R.var``)."""
        if self.names[0].startswith("R."):
            return self.names[0][2:]
        return self.label


def variables(levels: tuple[ReLevel, ...]) -> list[str]:
    """Data columns the random part uses (grouping variables and slopes)."""
    out: list[str] = []
    for lvl in levels:
        out.extend(lvl.group)
        out.extend(t.split(".", 1)[1] if "." in t else t for t in lvl.terms)
    return list(dict.fromkeys(out))


def build(levels: tuple[ReLevel, ...], frame: pd.DataFrame,
          looked_up: dict[str, pd.Series] | None = None) -> list[ReEquation]:
    """One :class:`ReEquation` per level (per ``R.var`` in an ``_all`` level); ``looked_up``:
    columns of ``frame`` already taken."""
    looked_up = looked_up or {}

    def column(name: str) -> pd.Series:
        return looked_up[name] if name in looked_up else frame[name]

    out = []
    n = len(frame)
    for i, lvl in enumerate(levels):
        if not lvl.terms and not lvl.constant:
            continue  # a level that only names the groups of a residual structure
        if any(t.startswith("R.") for t in lvl.terms):
            if len(lvl.terms) > 1:
                raise DataError("give each R.var its own '|| _all:' equation")
            var = lvl.terms[0][2:]
            refs, groups = group_codes(frame, (var,), column)
            out.append(ReEquation(i, lvl.name, (var,), refs, groups, np.ones((n, 1)),
                                  (lvl.terms[0],), lvl.covariance))
            continue
        names, cols = [], []
        for term in lvl.terms:
            for name, values in _term_columns(column, term):
                names.append(name)
                cols.append(values)
        if lvl.constant:
            names.append("_cons")
            cols.append(np.ones(n))
        refs, groups = group_codes(frame, lvl.group, column)
        out.append(ReEquation(i, lvl.name, lvl.group, refs, groups, np.column_stack(cols),
                              tuple(names), lvl.covariance))
    return out


def _term_columns(column, term: str) -> list[tuple[str, np.ndarray]]:
    """Columns of a random-effects term (``column(name)``: the data's column): a numeric
    variable, or the indicators of a factor variable's levels except the base (``i.x``: the
    lowest level; ``ib#.x``: level #), named as Stata names them (``2.x``)."""
    if "." not in term:
        values = column(term)
        if not pd.api.types.is_numeric_dtype(values):
            raise DataError(f"random slope '{term}' is not numeric; use i.{term} for a factor")
        return [(term, values.to_numpy(dtype=float))]
    prefix, var = term.split(".", 1)
    values = column(var).to_numpy()
    _, levels = base_and_levels(values, None if prefix == "i" else prefix[2:], term)
    return [(f"{level_label(str(lv))}.{var}", (values == lv).astype(float)) for lv in levels]


def group_codes(frame: pd.DataFrame, key: tuple[str, ...], column=None) -> tuple[np.ndarray, tuple]:
    """Sorted group codes of the combinations of ``key`` (``_all``: one group); ``column(name)``:
    a column of ``frame`` already looked up, if given."""
    if not key:
        return np.zeros(len(frame), dtype=np.int32), ("_all",)
    if len(key) == 1:
        column = frame[key[0]] if column is None else column(key[0])
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biu":  # no missing values possible
            uniques, codes = _integer_codes(column.to_numpy())
            return codes.astype(np.int32), tuple(uniques.tolist())
        codes, uniques = pd.factorize(column, sort=True)
        return codes.astype(np.int32), tuple(uniques)
    grouped = frame.groupby(list(key), sort=True)
    codes = grouped.ngroup().to_numpy().astype(np.int32)
    return codes, tuple(grouped.groups.keys())


def _integer_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and each value's position among them (``np.unique`` with
    ``return_inverse``); by counting when the values span a range not much wider than their
    number (ids 1..G: one pass instead of a sort)."""
    if len(values) == 0 or values.dtype.kind == "b":
        return np.unique(values, return_inverse=True)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= 4 * len(values) + 1024:
        return np.unique(values, return_inverse=True)
    shifted = values - lo if lo else values
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[shifted] = True
    rank = np.cumsum(present) - 1
    return (np.flatnonzero(present) + lo).astype(values.dtype), rank[shifted]

