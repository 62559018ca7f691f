"""menl's within-group error options ([ME] menl, Options: Residuals).

``resvariance(power v|_yhat [, strata() noconstant] | exponential v|_yhat [, strata()] |
linear v | distinct, index(v) | identity)``, ``rescorrelation(exchangeable | ar # | ma # |
ctar1 | toeplitz #, t() group())`` and ``rescovariance(identity, by() | independent, index() |
exchangeable | ar # | ma # | ctar1 | toeplitz # | banded #, index() | unstructured, index(),
t() by() group())`` are mapped onto ``mixed``'s residual structures (covariance/residual.py;
``ctar1`` is ``mixed``'s ``exponential``, ρ^|t−s|) and the variance functions g of
Var(e_ij) = σ² g²(δ, v_ij).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..design.random import group_codes
from ..design.residual import ResidualDesign, ResidualSpec, VarianceDesign
from ..design.residual import build as build_residual
from ..spec.errors import DataError, SpecError
from ..spec.options import resolve, split_top, tokenize_options

_VARIANCE = {"identity": "id", "linear": "lin", "power": "pow", "exponential": "exp", "distinct": "dis"}
_CORRELATION = {"identity": "id", "exchangeable": "exc", "ar": "ar", "ma": "ma", "ctar1": "ctar1",
                "toeplitz": "to", "banded": "ba", "unstructured": "un"}
_COVARIANCE = {**_CORRELATION, "independent": "ind"}
_MIXED_KIND = {"ctar1": "exponential", "identity": "independent"}   # menl name -> mixed's structure
_SUBOPTIONS = {"t": "t", "index": "index", "by": "by", "group": "group", "strata": "strata",
               "noconstant": "nocons"}


@dataclass(frozen=True)
class VarianceSpec:
    kind: str                    # power, exponential, linear, distinct
    covariate: str               # variable, _yhat, or the index() variable of distinct
    strata: str | None = None
    constant: bool = True


@dataclass(frozen=True)
class MenlResiduals:
    """The within-group error structure: a correlation (``mixed``'s ResidualSpec; ``independent``
    when there is none) and a variance function, within the groups of ``group``."""

    correlation: ResidualSpec
    variance: VarianceSpec | None
    group: str | None

    @property
    def variables(self) -> list[str]:
        names = self.correlation.variables + [self.group]
        if self.variance is not None:
            names += [self.variance.covariate, self.variance.strata]
        return [v for v in dict.fromkeys(names) if v and v != "_yhat"]

    @property
    def uses_yhat(self) -> bool:
        return self.variance is not None and self.variance.covariate == "_yhat"

    def design(self, group_key: tuple[str, ...], frame: pd.DataFrame, fitted: np.ndarray | None) -> ResidualDesign:
        """The ResidualDesign on the estimation sample; ``fitted``: the current fitted values (_yhat)."""
        rd = build_residual(self.correlation, group_key, frame)
        if self.variance is None:
            return rd
        vd = _variance_design(self.variance, frame, fitted)
        if vd.strata_var and pd.Series(vd.strata).groupby(rd.groups).nunique().max() > 1:
            raise DataError(f"strata() variable '{vd.strata_var}' must be constant within the groups of "
                            f"{'>'.join(group_key)}")
        return ResidualDesign(rd.spec, rd.groups, rd.t, rd.t_levels, rd.by, rd.by_levels, vd, rd.key)


def _variance_design(vs: VarianceSpec, frame: pd.DataFrame, fitted: np.ndarray | None) -> VarianceDesign:
    if vs.kind == "distinct":
        codes, labels = group_codes(frame, (vs.covariate,))
        return VarianceDesign("distinct", vs.covariate, np.zeros(len(frame)), codes, labels)
    if vs.covariate == "_yhat":
        v = np.asarray(fitted, dtype=float) if fitted is not None else np.ones(len(frame))
    else:
        if not pd.api.types.is_numeric_dtype(frame[vs.covariate]):
            raise DataError(f"resvariance() variable '{vs.covariate}' must be numeric")
        v = frame[vs.covariate].to_numpy(dtype=float)
        if vs.kind == "linear" and np.any(v <= 0):
            raise DataError(f"resvariance(linear {vs.covariate}) needs {vs.covariate} > 0")
    if vs.kind == "power" and not vs.constant and np.any(v == 0):
        raise DataError(f"resvariance(power {vs.covariate}, noconstant): {vs.covariate} is 0 in {np.sum(v == 0)} "
                        "observations, where |v|^delta is 0 or infinite; use power with its constant")
    if vs.strata:
        codes, labels = group_codes(frame, (vs.strata,))
    else:
        codes, labels = np.zeros(len(frame), dtype=np.int32), ("",)
    return VarianceDesign(vs.kind, vs.covariate, v, codes, labels, vs.strata, vs.constant)


def parse_residuals(options: dict, text: str) -> MenlResiduals | None:
    """The residual options of a menl command (None: i.i.d. errors)."""
    cov, var, corr = (options.pop(k, None) for k in ("rescovariance", "resvariance", "rescorrelation"))
    if cov is not None and (var is not None or corr is not None):
        raise SpecError("rescovariance() cannot be combined with resvariance() or rescorrelation()", text)
    groups: list[str] = []
    variance, correlation = None, ResidualSpec("independent")
    if cov is not None:
        correlation, variance = _covariance(cov, groups, text)
    else:
        if var is not None:
            variance = _variance(var, groups, text)
        if corr is not None:
            correlation = _correlation(corr, groups, text)
        if variance is not None and variance.kind == "distinct" and correlation.by not in (None, variance.covariate):
            raise SpecError("resvariance(distinct, index()) with rescorrelation(..., by()) of another variable is "
                            "not available yet", text)
    if len(set(groups)) > 1:
        raise SpecError(f"group() differs between the residual options: {', '.join(groups)}", text)
    if variance is None and correlation.kind == "independent" and not correlation.by:
        return None
    return MenlResiduals(correlation, variance, groups[0] if groups else None)


def _split(arg: str | None, table: dict, what: str, text: str) -> tuple[str, list[str], dict]:
    """``"ar 2, t(time)"`` -> ("ar", ["2"], {"t": "time"})."""
    head, *rest = split_top(arg or "", ",")
    words = head.split()
    if not words:
        raise SpecError(f"{what}() needs a structure", text)
    kind = resolve(words[0], table, f"{what}() structure", text)
    opts = {}
    for name, value in tokenize_options(",".join(rest), text):
        full = resolve(name, _SUBOPTIONS, f"{what}() suboption", text)
        opts[full] = value.strip() if value is not None else True
    return kind, words[1:], opts


def _order(kind: str, words: list[str], text: str) -> int | None:
    if not words:
        return 1 if kind in ("ar", "ma") else None
    if len(words) > 1 or not re.fullmatch(r"\d+", words[0]) or (int(words[0]) < 1 and kind != "banded"):
        raise SpecError(f"{kind} needs a positive integer order, not '{' '.join(words)}'", text)
    return int(words[0])


def _allowed(opts: dict, allowed: set[str], what: str, text: str, groups: list[str]) -> None:
    extra = set(opts) - allowed - {"group"}
    if extra:
        raise SpecError(f"{what} does not take {', '.join(sorted(extra))}()", text)
    if "group" in opts:
        groups.append(opts["group"])


def _variance(arg: str, groups: list[str], text: str) -> VarianceSpec | None:
    kind, words, opts = _split(arg, _VARIANCE, "resvariance", text)
    what = f"resvariance({kind})"
    if kind == "identity":
        _allowed(opts, set(), what, text, groups)
        return None
    if kind == "distinct":
        _allowed(opts, {"index"}, what, text, groups)
        if words or not opts.get("index"):
            raise SpecError("resvariance(distinct) needs index(varname) and nothing else", text)
        return VarianceSpec("distinct", opts["index"])
    if len(words) != 1 or not re.fullmatch(r"[A-Za-z_]\w*", words[0]):
        raise SpecError(f"{what} needs one variable{'' if kind == 'linear' else ' or _yhat'}", text)
    if kind == "linear":
        _allowed(opts, set(), what, text, groups)
        if words[0] == "_yhat":
            raise SpecError("resvariance(linear) needs a variable, not _yhat", text)
        return VarianceSpec("linear", words[0])
    _allowed(opts, {"strata", "noconstant"} if kind == "power" else {"strata"}, what, text, groups)
    return VarianceSpec(kind, words[0], opts.get("strata"), "noconstant" not in opts)


def _correlation(arg: str, groups: list[str], text: str) -> ResidualSpec:
    kind, words, opts = _split(arg, _CORRELATION, "rescorrelation", text)
    if kind in ("banded", "unstructured"):
        spec, _ = _indexed(kind, words, opts, "rescorrelation", groups, text)
        return ResidualSpec(spec.kind, spec.order, spec.t, correlation_only=True)
    spec = _structure(kind, words, opts, "rescorrelation", groups, text, by=True)
    return replace(spec, by_variances=False) if spec.by else spec   # by(): the correlations only


def _covariance(arg: str, groups: list[str], text: str) -> tuple[ResidualSpec, VarianceSpec | None]:
    kind, words, opts = _split(arg, _COVARIANCE, "rescovariance", text)
    if kind == "independent":
        _allowed(opts, {"index"}, "rescovariance(independent)", text, groups)
        if words or not opts.get("index"):
            raise SpecError("rescovariance(independent) needs index(varname)", text)
        return ResidualSpec("independent"), VarianceSpec("distinct", opts["index"])
    if kind in ("banded", "unstructured"):
        return _indexed(kind, words, opts, "rescovariance", groups, text)
    return _structure(kind, words, opts, "rescovariance", groups, text, by=True), None


def _indexed(kind: str, words: list[str], opts: dict, what: str, groups: list[str],
             text: str) -> tuple[ResidualSpec, None]:
    """``banded [#], index(v)`` and ``unstructured, index(v)`` (banded without # is unstructured)."""
    _allowed(opts, {"index"}, f"{what}({kind})", text, groups)
    if not opts.get("index"):
        raise SpecError(f"{what}({kind}) needs index(varname)", text)
    order = _order(kind, words, text) if kind == "banded" else None
    return ResidualSpec(kind if order is not None else "unstructured", order, opts["index"]), None


def _structure(kind: str, words: list[str], opts: dict, what: str, groups: list[str], text: str,
               by: bool = False) -> ResidualSpec:
    """identity, exchangeable, ar, ma, ctar1, toeplitz as mixed's structures."""
    needs_t = kind in ("ar", "ma", "ctar1", "toeplitz")
    _allowed(opts, ({"t"} if needs_t else set()) | ({"by"} if by else set()), f"{what}({kind})", text, groups)
    if needs_t and not opts.get("t"):
        raise SpecError(f"{what}({kind}) needs t(varname)", text)
    if words and kind not in ("ar", "ma", "toeplitz"):
        raise SpecError(f"{what}({kind}) takes no order", text)
    order = _order(kind, words, text) if kind in ("ar", "ma", "toeplitz") else None
    return ResidualSpec(_MIXED_KIND.get(kind, kind), order, opts.get("t"), opts.get("by"))
