"""The estimation sample: ``if``/``in`` qualifiers and listwise deletion.

As Stata: observations outside ``if``/``in`` are excluded first, then any
observation with a missing value in a variable the model uses is dropped,
and the number dropped is reported.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec.errors import DataError, SpecError


@dataclass(frozen=True)
class SampleInfo:
    """Which rows of the data were used, and why the others were not."""

    n_data: int
    n_excluded_if_in: int
    n_dropped_missing: int
    rows: np.ndarray  # positions (0-based) of the rows used, in data order

    @property
    def n_used(self) -> int:
        return len(self.rows)


def check_variables(data: pd.DataFrame, names: list[str]) -> None:
    """Raise a :class:`DataError` naming every unknown variable (with suggestions)."""
    missing = [n for n in dict.fromkeys(names) if n not in data.columns]
    if not missing:
        return
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=1)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise DataError(f"variable{'s' if len(missing) > 1 else ''} not found in the data: " + ", ".join(hints))


def select(data: pd.DataFrame, variables: list[str], if_expr: str | None,
           in_range: tuple[int, int] | None, columns: dict[str, pd.Series] | None = None) -> SampleInfo:
    """Rows satisfying ``if``/``in`` with no missing value in ``variables`` (``columns``: those
    variables' columns, if already looked up)."""
    if columns is None:
        check_variables(data, variables)
        columns = {var: data[var] for var in variables}
    keep = np.ones(len(data), dtype=bool)
    if in_range is not None:
        keep &= _in_mask(len(data), in_range)
    if if_expr:
        keep &= _if_mask(data, if_expr)
    n_if_in = int((~keep).sum())
    complete = np.ones(len(data), dtype=bool)
    for var in variables:
        complete &= _present(columns[var])
    n_missing = int((keep & ~complete).sum())
    rows = np.flatnonzero(keep & complete)
    if len(rows) == 0:
        raise DataError(f"no observations: {n_if_in} excluded by if/in and {n_missing} with missing values "
                        f"in {', '.join(variables)}")
    return SampleInfo(len(data), n_if_in, n_missing, rows)


def _present(column: pd.Series) -> np.ndarray:
    """Mask of non-missing values (NaN/None/NA); plain numpy columns without pandas' ``notna``."""
    values = column.to_numpy() if isinstance(column.dtype, np.dtype) else None
    if values is not None and values.dtype.kind in "biu":
        return np.ones(len(values), dtype=bool)  # integer and boolean arrays cannot hold missing values
    if values is not None and values.dtype.kind == "f":
        return ~np.isnan(values)
    return column.notna().to_numpy()


def _in_mask(n: int, in_range: tuple[int, int]) -> np.ndarray:
    first, last = in_range
    first = n + first + 1 if first < 0 else first
    last = n + last + 1 if last < 0 else last
    if not 1 <= first <= last <= n:
        raise SpecError(f"'in {in_range[0]}/{in_range[1]}' is outside the {n} observations")
    mask = np.zeros(n, dtype=bool)
    mask[first - 1:last] = True
    return mask


def _if_mask(data: pd.DataFrame, expr: str) -> np.ndarray:
    """Evaluate a Stata ``if`` expression with pandas.

    Stata operators are translated: ``&`` and ``|`` stay, ``!=``/``~=`` mean
    not equal, ``!`` means not.  Missing values compare as in pandas (not as
    Stata's "missing is +infinity").
    """
    py = re.sub(r"~=", "!=", expr)
    py = re.sub(r"!(?!=)", "~", py)
    try:
        mask = data.eval(py, engine="python")
    except Exception as exc:  # pandas raises many kinds for bad expressions
        raise SpecError(f"cannot evaluate the if expression ({exc})", expr) from None
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(data),):
        raise SpecError("the if expression must give true/false for each observation", expr)
    return mask
