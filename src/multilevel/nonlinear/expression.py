"""Stata's ``menl`` command text -> a vectorized Python function of the parameters.

``menl y = <expr> [, define(name: <expr>) ... covariance(U1 U2, vartype) reml initial(b1 1 ...)]``
([ME] menl, Syntax).  In the expressions:

- ``{b1}`` (or ``{b1=200}``, with an initial value) is a free parameter (a fixed effect);
- ``{U1[tree]}`` is the random effect ``U1`` of the groups of ``tree``, ``{S0[wafer>site]}`` that of
  the sites nested in wafers (the groups of wafer × site);
- ``{ka:}`` is the expression ``define(ka: ...)``, substituted in parentheses;
- ``{phi1: x1 i.female U1[id] c.x#U2[id]}`` and ``define(phi1: ...)`` of the same list are a
  linear combination {phi1:x1}·x1 + {phi1:1.female}·1.female + {phi1:_cons} + U1[id] + U2[id]·x
  (factor variables as in ``mixed``; ``, noconstant`` drops ``_cons``; ``, xb`` makes one variable a
  linear combination: ``{phi1: x}`` alone is the parameter ``phi1:x``) ([ME] menl, Substitutable
  expressions);
- other names are data columns; functions are Stata's (``exp ln log sqrt abs invlogit logit
  normal``) and ``^`` is the power.

The expression is compiled once into numpy code evaluated on whole columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..design.fixed import variables as fixed_variables
from ..spec.errors import SpecError
from ..spec.factor import stata_to_formulaic
from ..spec.options import COV_NAMES, resolve, split_top, tokenize_options
from .residuals import MenlResiduals, parse_residuals

FUNCTIONS = {"exp": np.exp, "ln": np.log, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
             "invlogit": special.expit, "logit": special.logit, "normal": special.ndtr,
             "lnnormal": special.log_ndtr, "log10": np.log10, "sin": np.sin, "cos": np.cos}
_BRACE = re.compile(r"\{([^{}]*)\}")
_PARAM = re.compile(r"^\s*([A-Za-z_]\w*(?:\s*:\s*[A-Za-z_]\w*)?)\s*(?:=\s*([-+0-9.eE]+)\s*)?$")
_RANDOM = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[\s*([A-Za-z_]\w*(?:\s*>\s*[A-Za-z_]\w*)*)\s*\]\s*$")
_DEFINE_REF = re.compile(r"^\s*([A-Za-z_]\w*)\s*:\s*$")
_LINCOMB = re.compile(r"^\s*([A-Za-z_]\w*)\s*:(.*\S.*)$", re.S)
_RE_TERM = re.compile(r"^(?:(?:c\.)?([A-Za-z_]\w*)#)?([A-Za-z_]\w*\[[^\[\]]+\])$")
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


@dataclass(frozen=True)
class LinComb:
    """A linear combination ``{name: terms}``: fixed terms in Stata's factor-variable notation
    (their coefficients ``name:x1``, ``name:1.female``, ``name:_cons``) plus random-effect terms."""

    name: str
    terms: tuple[str, ...]      # x1 i.female c.x#i.g
    constant: bool
    random: str                 # the random-effect terms as an expression: {U1[id]} + x*{U2[id]}

    @property
    def formula(self) -> str:
        """The fixed terms as a formulaic right-hand side."""
        return stata_to_formulaic(list(self.terms))


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
    lincombs: dict[str, LinComb] = field(default_factory=dict)  # by name; "name:" in params marks its place

    @property
    def variables(self) -> list[str]:
        """Data columns used: response, covariates, grouping variables."""
        names = [m for m in re.findall(r'D\["(\w+)"\]', self.code)]
        residual = self.residuals.variables if self.residuals else []
        combined = [v for lc in self.lincombs.values() for v in fixed_variables(lc.formula)]
        return list(dict.fromkeys([self.response] + names + combined + [v for r in self.random for v in r.key]
                                  + residual))

    def function(self):
        """f(P, U, D, XB) -> the mean of the response per observation (vectorized); XB holds the
        fixed part of each linear combination."""
        compiled = compile(self.code, "<menl expression>", "eval")
        namespace = {"__builtins__": {}, **FUNCTIONS}

        def f(P: dict, U: dict, D: dict, XB: dict) -> np.ndarray:
            return eval(compiled, namespace, {"P": P, "U": U, "D": D, "XB": XB})  # noqa: S307 - our own translation
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
    lincombs: dict[str, LinComb] = {}
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
            if _is_lincomb(value):
                _add_lincomb(lincombs, _parse_lincomb(key.strip(), value, text), text)
            else:
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
    expr = _inline_lincombs(expr, lincombs, text)
    defines = {name: _inline_lincombs(value, lincombs, text) for name, value in defines.items()}
    code = _translate(_substitute(expr, defines, lincombs, text), params, random, initial, lincombs, text)
    if not params:
        raise SpecError("the menl expression has no free parameters ({name})", text)
    if not random and (residuals is None or residuals.group is None):
        raise SpecError("the menl expression has no random effects ({U1[group]}); fit it with nonlinear "
                        "least squares instead, or give the groups of a marginal model's within-group errors "
                        "in group() of rescovariance(), rescorrelation() or resvariance()", text)
    clash = set(defines) & set(lincombs)
    if clash:
        raise SpecError(f"{', '.join(sorted(clash))} is defined twice", text)
    clash = {name.partition(":")[0] for name in params if ":" in name[:-1]} & set(lincombs)
    if clash:
        raise SpecError(f"{', '.join(sorted(clash))} is both a linear combination and a parameter's equation "
                        "({name:var}); rename one of them", text)
    return MenlSpec(text, response, code, params, random, initial, covariances, method, options, residuals,
                    lincombs)


def _is_lincomb(body: str) -> bool:
    """Is ``body`` (of ``{name: body}`` or ``define(name: body)``) a linear combination?  A list of
    variables, factor variables and random-effect terms with optional ``, noconstant xb``; a single
    variable only with options (``{phi: x}`` is the parameter ``phi:x``, ``define(phi: x)`` is x)."""
    terms, _, opts = body.partition(",")
    words = terms.split()
    if "{" in body or not words or not all(re.fullmatch(r"[\w.#()\[\]>]+", w) for w in words):
        return False
    return bool(opts.strip()) or len(words) > 1 or not re.fullmatch(r"[A-Za-z_]\w*", words[0])


def _parse_lincomb(name: str, body: str, text: str) -> LinComb:
    """``x1 i.female U1[id] c.x#U2[id], noconstant xb`` -> :class:`LinComb`."""
    terms, _, opts = body.partition(",")
    bad = set(opts.split()) - {"noconstant", "xb"}
    if bad:
        raise SpecError(f"{{{name}: {body.strip()}}}: unknown option {' '.join(sorted(bad))} "
                        "(noconstant and xb are allowed)", text)
    fixed, random = [], []
    for word in terms.split():
        effect = _RE_TERM.match(word)
        if effect:
            slope = f"{effect.group(1)}*" if effect.group(1) else ""
            random.append(f"{slope}{{{effect.group(2)}}}")
        elif "[" in word:
            raise SpecError(f"cannot read '{word}' in {{{name}: ...}}: a random-effect term is U[group] "
                            "or c.x#U[group]", text)
        else:
            fixed.append(word)
    lc = LinComb(name, tuple(fixed), "noconstant" not in opts.split(), " + ".join(random))
    stata_to_formulaic(fixed, text)          # SpecError now for a malformed factor-variable term
    if not fixed and not lc.constant:
        raise SpecError(f"{{{name}: ...}} has no fixed-effect terms and no constant", text)
    return lc


def _add_lincomb(lincombs: dict[str, LinComb], lc: LinComb, text: str) -> None:
    if lincombs.get(lc.name, lc) != lc:
        raise SpecError(f"the linear combination {lc.name} is specified twice, differently", text)
    lincombs[lc.name] = lc


def _inline_lincombs(expr: str, lincombs: dict[str, LinComb], text: str) -> str:
    """Register every ``{name: terms}`` linear combination of ``expr`` and write it ``{name:}``."""
    def repl(m: re.Match) -> str:
        lc = _LINCOMB.match(m.group(1))
        if not lc or not _is_lincomb(lc.group(2)):
            return m.group(0)
        _add_lincomb(lincombs, _parse_lincomb(lc.group(1), lc.group(2), text), text)
        return f"{{{lc.group(1)}:}}"
    return _BRACE.sub(repl, expr)


def _substitute(expr: str, defines: dict[str, str], lincombs: dict[str, LinComb], text: str,
                depth: int = 0) -> str:
    """Replace every ``{name:}`` by ``(define's expression)``, recursively (a linear combination's
    ``{name:}`` stays)."""
    if depth > 20:
        raise SpecError("define() expressions refer to each other in a cycle", text)

    def repl(m: re.Match) -> str:
        ref = _DEFINE_REF.match(m.group(1))
        if not ref or ref.group(1) in lincombs:
            return m.group(0)
        if ref.group(1) not in defines:
            raise SpecError(f"{{{ref.group(1)}:}} is used but not defined; add define({ref.group(1)}: ...)", text)
        return "(" + _substitute(defines[ref.group(1)], defines, lincombs, text, depth + 1) + ")"
    return _BRACE.sub(repl, expr)


def _translate(expr: str, params: list[str], random: list[RandomEffect], initial: dict[str, float],
               lincombs: dict[str, LinComb], text: str) -> str:
    """Stata expression -> Python: braces to P[...]/U[...], names to D[...], ^ to **; a linear
    combination ``{name:}`` to ``(XB["name"] + its random terms)`` with ``name:`` in ``params``."""
    pieces, pos = [], 0
    for m in _BRACE.finditer(expr):
        pieces.append(_names_to_columns(expr[pos:m.start()], text))
        inner = m.group(1)
        rnd, par, ref = _RANDOM.match(inner), _PARAM.match(inner), _DEFINE_REF.match(inner)
        if ref:
            lc = lincombs[ref.group(1)]
            if f"{lc.name}:" not in params:
                params.append(f"{lc.name}:")
            random_part = _translate(lc.random, params, random, initial, lincombs, text) if lc.random else ""
            pieces.append(f'(XB["{lc.name}"]' + (f" + {random_part})" if random_part else ")"))
        elif rnd:
            effect = RandomEffect(rnd.group(1), re.sub(r"\s+", "", rnd.group(2)))
            if effect.name in {r.name for r in random if r.group != effect.group}:
                raise SpecError(f"random effect {effect.name} is used with two grouping variables", text)
            if effect not in random:
                random.append(effect)
            pieces.append(f'U["{effect.name}"]')
        elif par:
            name = re.sub(r"\s+", "", par.group(1))
            if name not in params:
                params.append(name)
            if par.group(2) is not None:
                initial[name] = float(par.group(2))
            pieces.append(f'P["{name}"]')
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
