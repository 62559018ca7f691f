"""The residual-structure part of the design: groups, time values and by() levels.

Stata's ``residuals(restype [#] [, t(varname) by(varname)])``: residuals are
correlated within the groups of the lowest random-effects level.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..covariance.residual import KINDS
from ..spec.errors import DataError, SpecError
from ..spec.options import split_top, tokenize_options
from .random import group_codes


@dataclass(frozen=True)
class ResidualSpec:
    """Parsed ``residuals()`` option."""

    kind: str
    order: int | None = None
    t: str | None = None
    by: str | None = None
    correlation_only: bool = False   # menl's rescorrelation(unstructured | banded): equal variances
    by_variances: bool = True        # by() levels have their own variances (menl's rescorrelation(): not)

    @property
    def variables(self) -> list[str]:
        return [v for v in (self.t, self.by) if v]


def parse(text: str) -> ResidualSpec:
    """``"ar 1, t(time)"`` -> ResidualSpec("ar", 1, "time")."""
    parts = split_top(text, ",")
    words = parts[0].split()
    if not words:
        raise SpecError("residuals() needs a structure", text)
    kind = next((k for k in KINDS if k.startswith(words[0].lower()) and len(words[0]) >= 2), None)
    if kind is None:
        raise SpecError(f"unknown residual structure '{words[0]}' (choose one of {', '.join(KINDS)})", text)
    order = None   # toeplitz, banded without #: every lag (set by build())
    if kind in ("ar", "ma", "banded", "toeplitz"):
        has = len(words) > 1 and re.fullmatch(r"\d+", words[1])
        order = int(words[1]) if has else (1 if kind in ("ar", "ma") else None)
    opts = dict(tokenize_options(parts[1])) if len(parts) > 1 else {}
    unknown = set(opts) - {"t", "by"}
    if unknown:
        raise SpecError(f"unknown residuals() option(s) {', '.join(sorted(unknown))}", text)
    if kind in ("ar", "ma", "toeplitz", "exponential") and not opts.get("t"):
        raise SpecError(f"residuals({kind}) needs t(varname)", text)
    return ResidualSpec(kind, order, opts.get("t"), opts.get("by"))


@dataclass(frozen=True)
class VarianceDesign:
    """menl's ``resvariance(kind v [, strata() noconstant] | distinct, index(v))`` on the rows.

    ``v``: the covariate per row (the fitted values for ``_yhat``, set by the caller);
    ``strata``: stratum (for ``distinct`` index level) code per row, with ``labels``.
    """

    kind: str
    covariate: str              # variable name or "_yhat" (index variable for distinct)
    v: np.ndarray
    strata: np.ndarray
    labels: tuple
    strata_var: str | None = None
    constant: bool = True

    def function(self):
        """The :class:`~multilevel.covariance.residual.VarianceFunction`."""
        from ..covariance import residual as cr

        if self.kind == "distinct":
            return cr.Distinct(len(self.labels))
        if self.kind == "power":
            return cr.Power(len(self.labels), self.constant)
        if self.kind == "exponential":
            return cr.ExponentialVariance(len(self.labels), max(float(np.max(np.abs(self.v))), 1e-8))
        return cr.LinearVariance(len(self.labels))


@dataclass(frozen=True)
class ResidualDesign:
    """Rows grouped for the residual structure.

    ``groups``: group code of each row (the lowest random-effects level);
    ``t``: time value of each row (position within group when no t());
    ``by``: by() level code of each row and the level labels;
    ``variance``: a variance function (menl's ``resvariance()``) applied on top, if any.
    """

    spec: ResidualSpec
    groups: np.ndarray
    t: np.ndarray
    t_levels: np.ndarray
    by: np.ndarray
    by_levels: tuple
    variance: VarianceDesign | None = None
    key: tuple[str, ...] = ()          # the grouping variables of ``groups``


def build(spec: ResidualSpec, group_key: tuple[str, ...], frame: pd.DataFrame) -> ResidualDesign:
    groups, _ = group_codes(frame, group_key)
    if spec.t:
        t = frame[spec.t].to_numpy(dtype=float)
    else:
        t = (pd.Series(np.ones(len(frame))).groupby(groups).cumsum()).to_numpy()
    if spec.kind in ("ar", "ma", "toeplitz", "unstructured", "banded") and np.any(t != np.round(t)):
        raise DataError(f"t() variable '{spec.t}' must be integer-valued for residuals({spec.kind})")
    if spec.kind in ("unstructured", "banded", "ar", "ma", "toeplitz", "exponential"):
        dup = pd.DataFrame({"g": groups, "t": t}).duplicated().any()
        if dup:
            raise DataError(f"t() variable '{spec.t}' has repeated values within a group")
    if spec.kind in ("toeplitz", "banded") and spec.order is None:
        spec = replace(spec, order=_max_lag(spec.kind, groups, t))
    if spec.by:
        by, levels = group_codes(frame, (spec.by,))
        if spec.kind != "independent":
            varies = pd.Series(by).groupby(groups).nunique().max() > 1
            if varies:
                raise DataError(f"by() variable '{spec.by}' must be constant within groups for "
                                f"residuals({spec.kind})")
    else:
        by, levels = np.zeros(len(frame), dtype=np.int32), ("",)
    return ResidualDesign(spec, groups, t, np.unique(t), by, levels, key=tuple(group_key))


def _max_lag(kind: str, groups: np.ndarray, t: np.ndarray) -> int:
    """The default # of ``toeplitz`` and ``banded`` ([ME] mixed, residuals()): every lag, the
    largest time difference within a group (toeplitz) or the number of t() levels − 1 (banded)."""
    if kind == "banded":
        return max(len(np.unique(t)) - 1, 1)
    span = pd.Series(t).groupby(groups).agg(lambda s: s.max() - s.min())
    return max(int(span.max()), 1)
