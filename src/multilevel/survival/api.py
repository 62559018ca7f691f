"""``mestreg``: spec + ``stset`` -> survival family -> the GLMM fit -> results.

The survival model is a GLMM whose conditional density is the survival likelihood of each record
(:mod:`.families`), so estimation, integration (Laplace, adaptive quadrature), standard errors and
output are the GLMM's ([ME] mestreg).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .. import design as _design
from ..blas import fitting_threads
from ..glmm.api import _check_design, _check_levels, _check_options, _integration, _resolve, refuse_weights_and_vce
from ..spec import ModelSpec, SpecError
from ..spec.errors import DataError
from .families import DISTRIBUTIONS, PH_CAPABLE, make_survival_family
from .stset import parse_stset

_SHOWN = {"exponential": "exponential", "weibull": "Weibull", "lognormal": "lognormal",
          "loglogistic": "loglogistic", "gamma": "gamma"}


@fitting_threads
def fit_spec(spec: ModelSpec, data: pd.DataFrame, stset: str | None):
    """Fit ``mestreg`` on ``data`` with the survival-time settings ``stset``."""
    from ..glmm.fit import fit

    if stset is None:
        raise SpecError("mestreg needs the survival-time settings, e.g. stset='stset time, failure(died)'")
    if not spec.levels:
        raise SpecError("mestreg: the model has no random-effects equation ('|| group:'); "
                        "fit a model without random effects instead")
    _check_options(spec)
    refuse_weights_and_vce(spec)
    st = parse_stset(stset)
    opts = dict(spec.options)
    if not opts.get("distribution"):
        raise SpecError(f"mestreg needs distribution(); choose one of {', '.join(DISTRIBUTIONS)}")
    dist = _resolve(str(opts["distribution"]), DISTRIBUTIONS, "distribution")
    aft = bool(opts.get("time")) or dist not in PH_CAPABLE
    if opts.get("nohr") and aft:
        raise SpecError("nohr is for the proportional-hazards metric")
    if opts.get("tratio") and not aft:
        raise SpecError("tratio is for the accelerated failure-time metric (add time)")
    method, points = _integration(opts)
    frame = st.columns(data)
    design = _design.build(replace(spec, response="_t"), frame, extra_variables=["_d", "_t0"])
    _check_design(design)
    d = frame["_d"].to_numpy(dtype=float)[design.sample.rows]
    if not np.any(d > 0):
        raise DataError("mestreg: no failures in the estimation sample")
    family = make_survival_family(dist, design.y, aft, frame["_t0"].to_numpy(dtype=float)[design.sample.rows])
    if (method == "laplace" or points == 1) and len(family.late) and dist not in PH_CAPABLE:
        # the Laplace approximation here takes each record's curvature in η as ≤ 0 (clipped at 0), which
        # ln f(t)^d S(t)^(1-d) − ln S(t0) of the AFT families need not be: the result would be off
        raise SpecError(f"intmethod(laplace) with delayed entry is not available for distribution({dist}): a "
                        "record's log likelihood need not be concave in the linear predictor; use adaptive "
                        "quadrature (the default mvaghermite)")
    _check_levels(design, method, points)
    metric = "AFT" if aft else "PH"
    opts["stset"] = st.header()
    if not aft and not opts.get("nohr"):
        opts["hr"] = True
    res = fit(design, family, d, np.zeros(design.n), method=method, points=points,
              title=f"Mixed-effects {_SHOWN[dist]} {metric} regression", lr_label=f"{_SHOWN[dist]} model",
              backend=opts.pop("optimizer", "nlopt"), level=float(opts.get("level", 95.0)),
              options=opts, command="mestreg")
    res._remember_inputs(family, d, np.zeros(design.n))
    return res


def mestreg(formula: str, data: pd.DataFrame, stset: str, **options: Any):
    """``mestreg indepvars || group: ..., distribution(weibull)`` after ``stset``.

    ``stset`` is Stata's ``stset timevar, failure(failvar)``; keyword options are the command's
    (``distribution="weibull"``, ``time=True``, ``nohr=True``, ``intmethod=...``, ...).
    """
    from ..spec import parse

    spec = parse(formula, command="mestreg")
    if spec.command != "mestreg":
        raise SpecError(f"'{spec.command}' given to mestreg()", formula)
    return fit_spec(spec.with_options(**options) if options else spec, data, stset)
