"""GLMM command functions: ``meglm`` and its wrappers, and lme4's ``glmer``.

Each turns its input into a :class:`~multilevel.spec.ModelSpec` and goes
through :func:`fit_spec` (spec -> family -> design -> fit -> results).
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .. import design as _design
from ..blas import fitting_threads
from ..spec import ModelSpec, SpecError, parse
from ..spec.errors import DataError
from .families import ALLOWED, Ordinal, Weighted, make_family
from .model import METHODS

# command -> (family, link)
COMMANDS = {
    "melogit": ("bernoulli", "logit"), "meprobit": ("bernoulli", "probit"),
    "mecloglog": ("bernoulli", "cloglog"), "mepoisson": ("poisson", "log"),
    "menbreg": ("nbinomial", "log"), "meologit": ("ordinal", "logit"), "meoprobit": ("ordinal", "probit"),
    "megamma": ("gamma", "log"), "meglm": (None, None),
}
TITLES = {"melogit": "logistic", "meprobit": "probit", "mecloglog": "cloglog", "mepoisson": "Poisson",
          "menbreg": "nbinomial", "meologit": "ologit", "meoprobit": "oprobit", "megamma": "gamma"}
_LR = {("bernoulli", "logit"): "logistic", ("binomial", "logit"): "logistic", ("ordinal", "logit"): "ologit",
       ("ordinal", "probit"): "oprobit", ("ordinal", "cloglog"): "ocloglog", ("poisson", "log"): "Poisson",
       ("nbinomial", "log"): "nbinomial", ("gaussian", "identity"): "linear"}
KEYWORDS = ("family", "link", "binomial", "exposure", "offset", "intmethod", "intpoints", "dispersion",
            "or", "irr", "eform", "level", "stddeviations", "variance", "noretable", "nofetable",
            "noheader", "nogroup", "nolrtest", "nolog", "log", "optimizer", "startvalues", "startgrid",
            "from_", "noestimate", "vce")
MAX_POINTS = 128


@fitting_threads
def fit_spec(spec: ModelSpec, data: pd.DataFrame):
    """Fit a GLMM command's spec on ``data``."""
    from .fit import fit

    if not spec.levels:
        raise SpecError(f"{spec.command}: the model has no random-effects equation ('|| group:' or "
                        "'(1 | group)'); fit a model without random effects instead")
    _check_options(spec)
    opts = dict(spec.options)
    fam_name, link, trials_arg = _family(spec.command, opts)
    method, points = _integration(opts)
    if fam_name == "ordinal" and spec.constant:
        spec = replace(spec, constant=False)    # cut points take the place of the constant
    extra_vars = [v for v in (trials_arg, opts.get("exposure"), opts.get("offset"))
                  if isinstance(v, str)]
    design = _design.build(spec, data, extra_variables=extra_vars, weight_kinds=("fw", "iw", "pw"))
    _check_design(design)
    vce = _check_weights(design, opts, spec.command, method, data)
    frame = data.iloc[design.sample.rows]
    y = design.y
    if fam_name == "ordinal":
        y, levels = Ordinal.codes(y, spec.command)
        family = make_family("ordinal", link, levels=levels)
    else:
        trials = None
        if fam_name == "binomial":
            trials = (frame[trials_arg].to_numpy(dtype=float) if isinstance(trials_arg, str)
                      else np.full(design.n, float(trials_arg)))
        family = make_family(fam_name, link, trials=trials, dispersion=str(opts.get("dispersion", "mean")))
    family.check(y, spec.command)
    model_family = family if design.weights is None else Weighted(family, design.weights.level1)
    _check_levels(design, method, points)
    title = f"Mixed-effects {TITLES[spec.command]} regression" if spec.command in TITLES else "Mixed-effects GLM"
    offset = _offset(frame, opts, spec.command)
    res = fit(design, model_family, y, offset, method=method, points=points,
              title=title, lr_label=_LR.get((family.name, family.link), family.name) + " model",
              backend=opts.pop("optimizer", "nlopt"), level=float(opts.get("level", 95.0)),
              options=opts, command=spec.command, vce=vce)
    res._remember_inputs(family, y, offset)
    return res


def _check_options(spec: ModelSpec) -> None:
    """mixed's options that would change the estimates are an error, not ignored: reml,
    residuals() and dfmethod() ([ME] meglm has none of them)."""
    opts = spec.options
    if spec.method == "reml":
        raise SpecError(f"{spec.command}: option reml not allowed (GLMMs are fitted by maximum likelihood)")
    for name in ("residuals", "dfmethod"):
        if name in opts:
            raise SpecError(f"{spec.command}: option {name}() not allowed (it is mixed's)")


def refuse_weights_and_vce(spec: ModelSpec) -> None:
    """For a command whose fit has no weights or robust variance (mestreg): an error, not ignored."""
    opts = spec.options
    if opts.get("weight") or opts.get("level_weights"):
        raise SpecError(f"{spec.command}: weights are not implemented for {spec.command}; fit without them")
    vce = str(opts.get("vce", "oim")).strip().lower()
    if vce not in ("oim", ""):
        raise SpecError(f"{spec.command}: vce({vce}) is not implemented for {spec.command} (only the "
                        "observed information, vce(oim))")


def _family(command: str, opts: dict[str, Any]) -> tuple[str, str, Any]:
    """(family, link, trials) from the command and its options."""
    fam, link = COMMANDS[command]
    trials: Any = None
    if command == "meglm":
        words = str(opts.get("family", "gaussian")).split()
        fam = _resolve(words[0], tuple(ALLOWED), "family")
        if fam == "binomial":
            trials = words[1] if len(words) > 1 else 1
        elif fam == "nbinomial" and len(words) > 1:
            opts["dispersion"] = _resolve(words[1], ("mean", "constant"), "nbinomial dispersion")
        link = _resolve(opts["link"], ("identity", "log", "logit", "probit", "cloglog"), "link") \
            if opts.get("link") else None
    elif opts.get("family") or opts.get("link"):
        raise SpecError(f"{command} does not take family() or link(); use meglm")
    if opts.get("binomial") not in (None, True):
        if fam != "bernoulli":
            raise SpecError(f"binomial() is not allowed with {command}")
        fam, trials = "binomial", opts["binomial"]
    if fam == "binomial" and isinstance(trials, str):
        trials = _number_or_name(trials)
    if "dispersion" in opts:
        opts["dispersion"] = _resolve(str(opts["dispersion"]), ("mean", "constant"), "dispersion")
    return fam, link, trials


def _number_or_name(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _resolve(word: str, choices: tuple[str, ...], what: str) -> str:
    low = word.lower()
    if low in choices:
        return low
    hits = [c for c in choices if c.startswith(low) and len(low) >= min(3, len(c))]
    if len(hits) != 1:
        raise SpecError(f"unknown {what} '{word}'; choose one of {', '.join(choices)}")
    return hits[0]


def _integration(opts: dict[str, Any]) -> tuple[str, int]:
    method = _resolve(str(opts.get("intmethod", "mvaghermite")), METHODS, "intmethod") \
        if opts.get("intmethod") else "mvaghermite"
    points = int(opts.get("intpoints", 7) or 7)
    if not 1 <= points <= MAX_POINTS:
        raise SpecError(f"intpoints({points}) must be between 1 and {MAX_POINTS}")
    if method == "laplace":
        points = 1
    return method, points


def _check_levels(design, method: str, points: int) -> None:
    from ..lmm.terms import make_terms

    terms = make_terms(design.equations)
    if method == "laplace" or points == 1:
        return
    from .quadrature import product_rule

    if len(terms) > 1:
        from .nested import NestedIntegrator, nesting

        keys = sorted({eq.group_key for eq in design.equations}, key=len)
        levels = nesting(terms)
        if levels is None or any(eq.names[0].startswith("R.") for eq in design.equations) or any(
                b[:len(a)] != a for a, b in zip(keys[:-1], keys[1:])):
            raise SpecError(f"intmethod({method}) with crossed random effects is not available; "
                            "use intmethod(laplace)")
        NestedIntegrator(levels, points, method)      # says how many node combinations it would need
        return
    product_rule(points, terms[0].k)


def _check_weights(design, opts: dict[str, Any], command: str, method: str, data: pd.DataFrame):
    """The weights and ``vce()`` the GLMM fit covers, and the robust variance's clusters
    ((code per observation, variable) or None).  Level-1 ``[fw=]``/``[iw=]``/``[pw=]`` are the
    weighted likelihood of :class:`~.families.Weighted`; ``[pw=]`` implies ``vce(robust)``
    (clusters at the top level), as Stata.  Higher-level weights, crossed models and a robust
    variance by Laplace are a clear error."""
    from ..inference.robust import cluster_codes

    w = design.weights
    vce = str(opts.get("vce") or "").strip()
    if w is not None:
        if any(eq.names[0].startswith("R.") or not eq.group_key for eq in design.equations) or \
                len({eq.group_key[0] for eq in design.equations}) > 1:
            raise SpecError(f"{command}: weights are not allowed with crossed random effects, as in Stata")
        if w.higher:
            raise SpecError(f"{command}: weights at higher levels of a model with several levels are not "
                            "available yet for the GLMM commands; level-1 [fw=], [iw=], [pw=] are, and "
                            "fweight(), iweight(), pweight() with one grouping level")
        if w.cluster is not None and method == "laplace":
            raise SpecError(f"{command}: weights of the groups are not available yet with "
                            "intmethod(laplace); use adaptive quadrature")
        if w.cluster is not None and w.kind != "pw" and vce and vce.lower() != "oim":
            raise SpecError(f"{command}: vce({vce}) with {w.kind[0]}weight() at the group level is not "
                            "available yet")
    if w is not None and w.kind == "pw":
        if vce.lower() == "oim":
            raise SpecError("sampling weights require vce(robust) or vce(cluster), as in Stata")
        vce = vce or "robust"
    if not vce or vce.lower() == "oim":
        return None
    if method == "laplace":
        raise SpecError(f"{command}: the robust variance (vce(robust), vce(cluster), [pw=]) is not "
                        "available yet with intmethod(laplace); use adaptive quadrature")
    try:
        return cluster_codes(design, vce, data)
    except ValueError as err:
        raise SpecError(f"{command}: {err}") from None


def _check_design(design) -> None:
    for eq in design.equations:
        if eq.n_groups < 2 and eq.group_key:
            raise DataError(f"level '{eq.label}' has a single group; a random effect needs at least two groups")


def _offset(frame: pd.DataFrame, opts: dict[str, Any], command: str) -> np.ndarray:
    off = np.zeros(len(frame))
    if isinstance(opts.get("offset"), str):
        off = off + frame[opts["offset"]].to_numpy(dtype=float)
    if isinstance(opts.get("exposure"), str):
        e = frame[opts["exposure"]].to_numpy(dtype=float)
        if np.any(e <= 0):
            raise DataError(f"{command}: exposure({opts['exposure']}) must be positive")
        off = off + np.log(e)
    return off


# --- public command functions --------------------------------------------------------------


def _command(command: str, formula: str, data: pd.DataFrame, options: dict[str, Any]):
    unknown = set(options) - set(KEYWORDS)
    if unknown:
        raise TypeError(f"unknown keyword argument(s): {', '.join(sorted(unknown))}")
    spec = parse(formula, command=command)
    if spec.command != command:
        raise SpecError(f"'{spec.command}' given to {command}()", formula)
    if "from_" in options:      # Stata's from(); ``from`` is a Python keyword
        options = dict(options)
        options["from"] = options.pop("from_")
    return fit_spec(spec.with_options(**options), data)


def meglm(formula: str, data: pd.DataFrame, **options: Any):
    """Fit a GLMM: ``meglm("y x || id:", data, family="poisson", link="log")``.

    Stata (``y x || id:``) or lme4 (``y ~ x + (1|id)``) syntax; keyword
    options are Stata's (``family="binomial n"``, ``link``, ``intmethod``,
    ``intpoints``, ``exposure``, ``offset``, ``eform``...); start values by
    ``startvalues``, ``startgrid``, ``from_`` (a dict name -> value or a
    previous fit) and ``noestimate`` (:mod:`multilevel.glmm.start`).  Returns
    :class:`~multilevel.glmm.results.GLMMResults`.
    """
    return _command("meglm", formula, data, options)


def melogit(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects logistic regression (Stata ``melogit``; ``binomial=`` for trials)."""
    return _command("melogit", formula, data, options)


def meprobit(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects probit regression (Stata ``meprobit``)."""
    return _command("meprobit", formula, data, options)


def mecloglog(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects complementary log-log regression (Stata ``mecloglog``)."""
    return _command("mecloglog", formula, data, options)


def mepoisson(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects Poisson regression (Stata ``mepoisson``; ``exposure=``, ``offset=``)."""
    return _command("mepoisson", formula, data, options)


def menbreg(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects negative binomial regression (``dispersion="mean"`` or ``"constant"``)."""
    return _command("menbreg", formula, data, options)


def meologit(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects ordered logistic regression (Stata ``meologit``)."""
    return _command("meologit", formula, data, options)


def meoprobit(formula: str, data: pd.DataFrame, **options: Any):
    """Mixed-effects ordered probit regression (Stata ``meoprobit``)."""
    return _command("meoprobit", formula, data, options)


_LME4_FAMILIES = {"binomial": "binomial", "bernoulli": "bernoulli", "poisson": "poisson",
                  "negative_binomial": "nbinomial", "nbinom2": "nbinomial", "nbinomial": "nbinomial",
                  "gamma": "gamma", "gaussian": "gaussian", "ordinal": "ordinal"}
_CBIND = re.compile(r"^\s*cbind\s*\((?P<a>[^,]+),(?P<b>[^)]+)\)\s*~")


def glmer(formula: str, data: pd.DataFrame, family: str = "binomial", link: str | None = None,
          nAGQ: int = 1, weights: str | np.ndarray | None = None, **options: Any):
    """lme4's ``glmer``: ``glmer("y ~ x + (1|g)", data, family="binomial")``.

    ``nAGQ=1`` (the default, as lme4) is the Laplace approximation; ``nAGQ>1``
    is mode–curvature adaptive quadrature with that many points (lme4's
    rule; pass ``intmethod="mvaghermite"`` for Stata's).  Binomial responses
    may be 0/1, ``cbind(successes, failures)``, or proportions with
    ``weights`` = trials.  ``family="ordinal"`` fits a cumulative-link model
    (``link`` logit or probit).
    """
    fam = _LME4_FAMILIES.get(str(family).lower())
    if fam is None:
        raise SpecError(f"unknown family '{family}'; choose one of {', '.join(_LME4_FAMILIES)}")
    frame = data
    m = _CBIND.match(formula)
    if fam in ("binomial", "bernoulli") and m:
        succ, fail = m.group("a").strip(), m.group("b").strip()
        frame = data.assign(_trials=data.eval(f"({succ}) + ({fail})"), _successes=data.eval(succ))
        response = succ if re.fullmatch(r"[A-Za-z_]\w*", succ) else "_successes"
        formula = f"{response} ~" + formula[m.end():]
        options.setdefault("family", "binomial _trials")
    elif fam in ("binomial", "bernoulli") and weights is not None:
        w = data[weights].to_numpy(dtype=float) if isinstance(weights, str) else np.asarray(weights, float)
        response = formula.split("~")[0].strip()
        frame = data.assign(_trials=w, _successes=np.round(data[response].to_numpy(dtype=float) * w))
        formula = "_successes ~" + formula.split("~", 1)[1]
        options.setdefault("family", "binomial _trials")
    elif fam == "binomial":
        fam = "bernoulli"
    options.setdefault("family", fam)
    if link:
        options["link"] = link
    if "intmethod" not in options:
        options["intmethod"] = "laplace" if nAGQ <= 1 else "mcaghermite"
        options.setdefault("intpoints", max(int(nAGQ), 1))
    if fam == "ordinal":
        options.pop("family")
        cmd = {"logit": "meologit", "probit": "meoprobit"}.get(link or "logit")
        options.pop("link", None)
        if cmd is None:
            raise SpecError(f"ordinal link '{link}' is not available in glmer(); use logit or probit")
        return _command(cmd, formula, frame, options)
    return _command("meglm", formula, frame, options)
