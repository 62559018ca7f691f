"""Command functions: parse -> design -> fit -> results."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import design as _design
from .blas import fitting_threads
from .spec import ModelSpec, SpecError, parse
from .spec.stata import COMMANDS

GLMM_COMMANDS = ("meglm", "melogit", "meprobit", "mecloglog", "mepoisson", "menbreg", "meologit",
                 "meoprobit", "megamma")

# keyword arguments that are Stata reporting options
REPORTING = ("level", "variance", "stddeviations", "noretable", "nofetable", "noheader", "nogroup",
             "nolog", "nolrtest", "log", "dfmethod", "dftable", "residuals", "vce")


def _spec(text: str, command: str, reml: bool | None, options: dict[str, Any]) -> ModelSpec:
    spec = parse(text, command=command)
    if spec.command != command and command != "mixed":
        raise SpecError(f"'{spec.command}' given to {command}()", text)
    unknown = set(options) - set(REPORTING) - {"optimizer", "weights"}
    if unknown:
        raise TypeError(f"unknown keyword argument(s): {', '.join(sorted(unknown))}")
    if "weights" in options:  # lme4-style weights= : level-1 frequency weights (not lme4's precision weights)
        options = dict(options)
        options["weight"] = ("fw", options.pop("weights"))
    spec = spec.with_options(**options)
    if reml is not None:
        from dataclasses import replace

        spec = replace(spec, method="reml" if reml else "ml")
    return spec


def mixed(formula: str, data: pd.DataFrame, reml: bool | None = None, **options: Any):
    """Fit a linear mixed model; Stata (``y x || id:``) or lme4 (``y ~ x + (1|id)``) syntax.

    The default is ML, as Stata's ``mixed`` (lme4's default is REML).
    Keyword options are Stata's reporting options (``level=90``,
    ``stddeviations=True``, ``nolog=True``, ...) and ``optimizer``
    (``"nlopt"`` or ``"scipy"``).  Returns :class:`MixedResults`.
    """
    spec = _spec(formula, "mixed", reml, options)
    return _fit_spec(spec, data)


@fitting_threads
def _fit_spec(spec: ModelSpec, data: pd.DataFrame, stset: str | None = None):
    from .lmm.fit import fit as fit_lmm

    if spec.command == "mestreg":
        from .survival.api import fit_spec as fit_survival

        return fit_survival(spec, data, stset)
    if spec.command in GLMM_COMMANDS:
        from .glmm.api import fit_spec as fit_glmm

        return fit_glmm(spec, data)
    if spec.command != "mixed":
        raise SpecError(f"'{spec.command}' is not implemented yet; only 'mixed' is available")
    if not spec.levels:
        raise SpecError("the model has no random-effects equation ('|| group:' or '(1 | group)'); "
                        "fit a linear regression instead")
    given = [o for o in ("from", "startgrid", "noestimate") if o in spec.options]
    if given:
        raise SpecError(f"mixed: {', '.join(given)} is available for the GLMM commands (meglm, melogit, "
                        "...) only; mixed starts from its own values")
    empty = [lv.name for lv in spec.levels if not lv.terms and not lv.constant]
    if empty and not spec.options.get("residuals"):
        raise SpecError(f"random-effects equation '{empty[0]}:' has no terms (noconstant and no variables); "
                        "it is allowed only to give the groups of residuals()")
    from .lmm import streaming

    if isinstance(data, str) or streaming.is_dask(data):
        return _fit_streamed(spec, streaming.read(data))
    design = _design.build(spec, data)
    _check_design(design)
    opts = dict(spec.options)
    res = fit_lmm(design, reml=spec.method == "reml", backend=opts.pop("optimizer", "auto"),
                  level=float(opts.get("level", 95.0)), options=opts)
    from .inference.robust import needs_robust

    if opts.get("vce") or needs_robust(res):
        from .inference.robust import apply_vce

        try:
            res = apply_vce(res, str(opts.get("vce") or "robust"), data)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    if opts.get("dfmethod"):
        from .inference.small_sample import apply_dfmethod

        try:
            res = apply_dfmethod(res, str(opts["dfmethod"]))
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    return res


def _fit_streamed(spec: ModelSpec, ddf):
    """Fit from sufficient statistics accumulated over the partitions of a dask DataFrame."""
    from .lmm import streaming
    from .lmm.fit import optimize, results_at
    from .lmm.model import LinearMixedModel

    design, stats = streaming.build(spec, ddf)
    if stats.A22[-1, -1] <= 0:
        from .spec.errors import DataError

        raise DataError(f"dependent variable '{spec.response}' is constant in the estimation sample")
    model = LinearMixedModel(design, reml=spec.method == "reml", statistics=stats)
    opts = dict(spec.options)
    opts.pop("optimizer", None)
    return results_at(model, optimize(model, spec.options.get("optimizer", "auto")),
                      float(opts.get("level", 95.0)), opts)


def _check_design(design) -> None:
    from .spec.errors import DataError

    if np.ptp(design.y) == 0:
        raise DataError(f"dependent variable '{design.spec.response}' is constant in the estimation sample")
    for eq in design.equations:
        if eq.n_groups < 2 and eq.group_key:
            raise DataError(f"level '{eq.label}' has a single group; a random effect needs at least two groups")


# Stata's earlier commands for the same models ([ME] meqrlogit, meqrpoisson: the QR-decomposition
# estimators; xtmelogit, xtmepoisson: their names before Stata 13)
_OLD_COMMANDS = {"meqrlogit": "melogit", "xtmelogit": "melogit", "meqrpoisson": "mepoisson",
                 "xtmepoisson": "mepoisson"}


def fit(command: str, data: pd.DataFrame, stset: str | None = None, **options: Any):
    """Fit any supported command given as a full string (``"mixed weight week || id:, reml"``);
    ``mestreg`` also needs Stata's ``stset`` (``stset="stset time, failure(died)"``)."""
    words = command.strip().split(None, 1)
    if "~" in command or not words:
        raise SpecError("fit() needs a full command such as 'mixed y x || id:'", command, 0)
    if words[0].lower() not in COMMANDS:
        old = _OLD_COMMANDS.get(words[0].lower())
        raise SpecError(f"unknown command '{words[0]}'" + (f"; Stata's current command is {old}" if old else
                        "; supported: " + ", ".join(c for c in COMMANDS if c != "xtmixed")), command, 0)
    if words[0].lower() == "menl":
        from .nonlinear.fit import fit as fit_menl

        if options or stset is not None:
            raise TypeError("menl takes its options in the command text")
        return fit_menl(command, data)
    spec = parse(command)
    if stset is not None and spec.command != "mestreg":
        raise SpecError("stset= is for mestreg", command)
    if options:
        spec = _spec(command, spec.command, None, options)
    return _fit_spec(spec, data, stset)


def menl(command: str, data: pd.DataFrame):
    """Fit ``menl y = <expression>, define(...) covariance(...) reml`` (Stata's nonlinear mixed
    model; the leading ``menl`` is optional)."""
    from .nonlinear.fit import fit as fit_menl

    text = command if command.strip().lower().startswith("menl ") else f"menl {command}"
    return fit_menl(text, data)
