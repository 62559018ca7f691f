"""From a :class:`ModelSpec` and a DataFrame to the numeric design.

The input frame is never modified: the sample is selected by position and
every array here is a new one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec.errors import DataError
from ..spec.model import ModelSpec
from . import fixed, random
from .fixed import FixedTerm
from .random import ReEquation
from . import weights as weights_design
from .residual import ResidualDesign
from .weights import Weights
from .residual import build as build_residual
from .residual import parse as parse_residual
from .sample import SampleInfo, check_variables, select


@dataclass(frozen=True)
class Design:
    """Everything numeric the model cores need, on the estimation sample."""

    spec: ModelSpec
    y: np.ndarray
    fixed: FixedTerm
    equations: tuple[ReEquation, ...]
    sample: SampleInfo
    residual: ResidualDesign | None = None  # residuals() structure, if any
    weights: Weights | None = None          # [fw=]/[pw=] and higher-level weights, if any

    @property
    def residual_key(self) -> tuple[str, ...]:
        """Grouping variables of the residual structure's groups (the lowest level, or menl's
        group() within it)."""
        if self.residual is not None and self.residual.key:
            return self.residual.key
        return self.spec.levels[-1].group if self.spec.levels else ()

    @property
    def n_effective(self) -> float:
        """Number of observations: Σ w_j w_i|j with weights, or the rows."""
        return float(self.weights.total.sum()) if self.weights is not None else float(len(self.y))

    @property
    def nobs(self) -> int:
        """Stata's e(N): the sum of frequency weights, else the rows (sampling, importance weights)."""
        w = self.weights
        return int(round(w.total.sum())) if w is not None and w.kind == "fw" else self.n

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def X(self) -> np.ndarray:
        return self.fixed.X


def build(spec: ModelSpec, data: pd.DataFrame, extra_variables: tuple[str, ...] | list[str] = (),
          weight_kinds: tuple[str, ...] = ("fw", "pw")) -> Design:
    """The :class:`Design` of ``spec`` on ``data`` (listwise deletion, as Stata).

    ``extra_variables`` are other columns the model uses (binomial trials,
    exposure, offset): they must exist and take part in listwise deletion.  ``weight_kinds``:
    the weight types the command takes.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    rspec = parse_residual(spec.options["residuals"]) if spec.options.get("residuals") else None
    weight_vars = weights_design.variables(spec)
    if weight_vars and rspec is not None:
        raise DataError("weights cannot be combined with residuals(): the pseudo-likelihood weights "
                        "conditionally independent level-1 observations, and sampling weights need "
                        "vce(robust), which is not available with residuals()")
    extra_variables = list(extra_variables) + weight_vars
    used = ([spec.response] + fixed.variables(spec.fixed) + random.variables(spec.levels)
            + list(extra_variables) + (rspec.variables if rspec else []))
    names = list(dict.fromkeys(used))
    check_variables(data, names)
    columns = {name: data[name] for name in names}  # each looked up once: ~15 µs per pandas lookup
    sample = select(data, names, spec.if_expr, spec.in_range, columns)
    if sample.n_used == len(data):
        frame = data.reset_index(drop=True) if not isinstance(data.index, pd.RangeIndex) else data
    else:
        frame = data.iloc[sample.rows].reset_index(drop=True)
        columns = {name: frame[name] for name in names}
    y = _response(columns[spec.response], spec.response)
    fx = fixed.build(spec.fixed, spec.constant, frame, columns, r_coding=spec.r_coding)
    equations = tuple(random.build(spec.levels, frame, columns))
    residual = None
    if rspec is not None:
        if not spec.levels:
            raise DataError("residuals() needs a level for its groups: add '|| group:, noconstant'")
        residual = build_residual(rspec, spec.levels[-1].group, frame)
    weights = weights_design.build(spec, frame, equations, weight_kinds)
    return Design(spec, y, fx, equations, sample, residual, weights)


def _response(column: pd.Series, name: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(f"dependent variable '{name}' must be numeric (it is {column.dtype})")
    return column.to_numpy(dtype=float)
