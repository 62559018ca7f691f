"""Stata's ``menl`` command text -> a vectorized Python function of the parameters.

``menl y = <expr> [, define(name: <expr>) ... covariance(U1 U2, vartype) reml initial(b1 1 ...)]``
([ME] menl, Syntax).  In the expressions:

- ``{b1}`` (or ``{b1=200}``, with an initial value) is a free parameter (a fixed effect);
- ``{U1[tree]}`` is the random effect ``U1`` of the groups of ``tree``, ``{S0[wafer>site]}`` that of
  the sites nested in wafers (the groups of wafer × site);
- ``{ka:}`` is the expression ``define(ka: ...)``, substituted in parentheses;
- other names are data columns; functions are Stata's (``exp ln log sqrt abs invlogit logit
  normal``) and ``^`` is the power.

The expression is compiled once into numpy code evaluated on whole columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..spec.errors import SpecError
from ..spec.options import COV_NAMES, resolve, split_top, tokenize_options
from .residuals import MenlResiduals, parse_residuals

FUNCTIONS = {"exp": np.exp, "ln": np.log, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
             "invlogit": special.expit, "logit": special.logit, "normal": special.ndtr,
             "lnnormal": special.log_ndtr, "log10": np.log10, "sin": np.sin, "cos": np.cos}
_BRACE = re.compile(r"\{([^{}]*)\}")
_PARAM = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:=\s*([-+0-9.eE]+)\s*)?$")
_RANDOM = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[\s*([A-Za-z_]\w*(?:\s*>\s*[A-Za-z_]\w*)*)\s*\]\s*$")
_DEFINE_REF = re.compile(r"^\s*([A-Za-z_]\w*)\s*:\s*$")
_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
_OPTIONS = {"define": "def", "covariance": "cov", "reml": "reml", "mle": "mle", "initial": "init",
            "level": "l", "variance": "var", "stddeviations": "stddev", "nolog": "nolo", "log": "log",
            "noretable": "noretable", "nofetable": "nofetable", "noheader": "noheader",
            "nogroup": "nogroup", "tsorder": "tsorder", "rescovariance": "rescov", "resvariance": "resvar",
            "rescorrelation": "rescorr"}


@dataclass(frozen=True)
class RandomEffect:
    name: str      # U1
    group: str     # tree; school>class for the classes nested in schools

    @property
    def key(self) -> tuple[str, ...]:
        """Grouping variables from the top down (``("school", "class")``)."""
        return tuple(self.group.split(">"))


@dataclass
class MenlSpec:
    """What a ``menl`` command says."""

    text: str
    response: str
    code: str                                   # Python expression in P, U, D and the functions
    params: list[str]                           # free parameters, in order of appearance
    random: list[RandomEffect]                  # in order of appearance
    initial: dict[str, float] = field(default_factory=dict)
    covariances: dict[tuple[str, ...], str] = field(default_factory=dict)  # (U1, U2) -> vartype
    method: str = "ml"
    options: dict = field(default_factory=dict)
    residuals: MenlResiduals | None = None      # resvariance() rescorrelation() rescovariance()

    @property
    def variables(self) -> list[str]:
        """Data columns used: response, covariates, grouping variables."""
        names = [m for m in re.findall(r'D\["(\w+)"\]', self.code)]
        residual = self.residuals.variables if self.residuals else []
        return list(dict.fromkeys([self.response] + names + [v for r in self.random for v in r.key] + residual))

    def function(self):
        """f(P, U, D) -> the mean of the response per observation (vectorized)."""
        compiled = compile(self.code, "<menl expression>", "eval")
        namespace = {"__builtins__": {}, **FUNCTIONS}

        def f(P: dict, U: dict, D: dict) -> np.ndarray:
            return eval(compiled, namespace, {"P": P, "U": U, "D": D})  # noqa: S307 - our own translation
        return f


def parse_menl(text: str) -> MenlSpec:
    """Parse ``menl y = expr, options``."""
    body = re.sub(r"^\s*menl\s+", "", text, flags=re.I)
    head, *rest = split_top(body, ",")
    if "=" not in head:
        raise SpecError("menl needs 'depvar = expression'", text)
    response, expr = (s.strip() for s in head.split("=", 1))
    if not re.fullmatch(r"[A-Za-z_]\w*", response):
        raise SpecError(f"dependent variable '{response}' is not a variable name", text)
    defines: dict[str, str] = {}
    options: dict = {}
    covariances: dict[tuple[str, ...], str] = {}
    initial: dict[str, float] = {}
    method = "ml"
    for name, arg in tokenize_options(",".join(rest), text):
        full = resolve(name, _OPTIONS, "menl option", text)
        if full == "define":
            key, _, value = (arg or "").partition(":")
            if not re.fullmatch(r"[A-Za-z_]\w*", key.strip()) or not value.strip():
                raise SpecError(f"define({arg}) must look like define(name: expression)", text)
            defines[key.strip()] = value.strip()
        elif full == "covariance":
            names, _, kind = (arg or "").rpartition(",")
            kind = resolve(kind.strip(), COV_NAMES, "covariance structure", text)
            covariances[tuple(names.split())] = kind
        elif full == "initial":
            words = (arg or "").split()
            try:
                initial.update({w: float(v) for w, v in zip(words[::2], words[1::2])})
            except ValueError:
                raise SpecError(f"initial({arg}) must list names and numbers", text) from None
        elif full in ("reml", "mle"):
            method = "reml" if full == "reml" else "ml"
        elif full in options and full in ("rescovariance", "resvariance", "rescorrelation"):
            raise SpecError(f"{full}() may be given once", text)
        else:
            options[full] = arg if arg is not None else True
    residuals = parse_residuals(options, text)
    params: list[str] = []
    random: list[RandomEffect] = []
    code = _translate(_substitute(expr, defines, text), params, random, initial, text)
    if not params:
        raise SpecError("the menl expression has no free parameters ({name})", text)
    if not random and (residuals is None or residuals.group is None):
        raise SpecError("the menl expression has no random effects ({U1[group]}); fit it with nonlinear "
                        "least squares instead, or give the groups of a marginal model's within-group errors "
                        "in group() of rescovariance(), rescorrelation() or resvariance()", text)
    return MenlSpec(text, response, code, params, random, initial, covariances, method, options, residuals)


def _substitute(expr: str, defines: dict[str, str], text: str, depth: int = 0) -> str:
    """Replace every ``{name:}`` by ``(define's expression)``, recursively."""
    if depth > 20:
        raise SpecError("define() expressions refer to each other in a cycle", text)

    def repl(m: re.Match) -> str:
        ref = _DEFINE_REF.match(m.group(1))
        if not ref:
            return m.group(0)
        if ref.group(1) not in defines:
            raise SpecError(f"{{{ref.group(1)}:}} is used but not defined; add define({ref.group(1)}: ...)", text)
        return "(" + _substitute(defines[ref.group(1)], defines, text, depth + 1) + ")"
    return _BRACE.sub(repl, expr)


def _translate(expr: str, params: list[str], random: list[RandomEffect], initial: dict[str, float],
               text: str) -> str:
    """Stata expression -> Python: braces to P[...]/U[...], names to D[...], ^ to **."""
    pieces, pos = [], 0
    for m in _BRACE.finditer(expr):
        pieces.append(_names_to_columns(expr[pos:m.start()], text))
        inner = m.group(1)
        rnd, par = _RANDOM.match(inner), _PARAM.match(inner)
        if rnd:
            effect = RandomEffect(rnd.group(1), re.sub(r"\s+", "", rnd.group(2)))
            if effect.name in {r.name for r in random if r.group != effect.group}:
                raise SpecError(f"random effect {effect.name} is used with two grouping variables", text)
            if effect not in random:
                random.append(effect)
            pieces.append(f'U["{effect.name}"]')
        elif par:
            if par.group(1) not in params:
                params.append(par.group(1))
            if par.group(2) is not None:
                initial[par.group(1)] = float(par.group(2))
            pieces.append(f'P["{par.group(1)}"]')
        else:
            raise SpecError(f"cannot read {{{inner}}}: use {{name}}, {{name=#}}, {{U[group]}} or {{name:}}", text)
        pos = m.end()
    pieces.append(_names_to_columns(expr[pos:], text))
    return "".join(pieces)


def _names_to_columns(segment: str, text: str) -> str:
    """Data columns become ``D["name"]``; function names stay; ``^`` becomes ``**``."""
    if re.search(r"[;\[\]{}@$`'\"\\]|__|\blambda\b", segment):
        raise SpecError(f"cannot read '{segment.strip()}' in the menl expression", text)

    def repl(m: re.Match) -> str:
        name = m.group(0)
        after = segment[m.end():].lstrip()
        if after.startswith("("):
            if name not in FUNCTIONS:
                raise SpecError(f"unknown function {name}(); available: {', '.join(sorted(FUNCTIONS))}", text)
            return name
        return f'D["{name}"]'
    return _NAME.sub(repl, segment.replace("^", "**"))
