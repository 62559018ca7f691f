"""Parse a Stata ``me`` command into a :class:`ModelSpec`.

Grammar ([ME] mixed, Syntax)::

    [mixed] depvar [fe_vars] [if] [in] [weight] [, fe_options]
        [|| levelvar: [re_vars] [, re_options]] ...

Options after the last random-effects equation that are not
random-effects options (``covariance``, ``noconstant``, ...) are global
options, as in Stata.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import SpecError
from .factor import stata_to_formulaic
from .model import ModelSpec, ReLevel
from .options import COV_NAMES, RE_OPTIONS, _ABBREV, resolve, split_top, tokenize_options

COMMANDS = ("mixed", "meglm", "melogit", "meprobit", "mecloglog", "mepoisson", "menbreg",
            "meologit", "meoprobit", "megamma", "mestreg", "menl", "xtmixed")
_WEIGHT = re.compile(r"\[\s*(fw|fweight|pw|pweight|aw|aweight|iw|iweight)\s*=\s*([^\]]+)\]", re.I)
_IN = re.compile(r"\bin\s+(-?\d+|f)\s*(?:/\s*(-?\d+|l|L))?\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse(text: str, command: str | None = None) -> ModelSpec:
    """Parse ``[command] depvar ... || level: ...`` into a :class:`ModelSpec`."""
    segments = split_top(text, "||")
    offsets = _offsets(segments)
    head, head_opts = _split_options(segments[0], text, offsets[0])
    words = head.split()
    if words and words[0].lower() in COMMANDS:
        command = words[0].lower()
        head = head[head.lower().index(command) + len(command):]
    command = "mixed" if command in (None, "xtmixed") else command
    head, if_expr, in_range, weight = _qualifiers(head, text)
    variables = head.split()
    if command == "mestreg":  # no dependent variable: the analysis time _t of stset is the response
        variables = ["_t"] + variables
    if not variables:
        raise SpecError("no dependent variable", text, offsets[0])
    response, fe_tokens = variables[0], variables[1:]
    if not _NAME.match(response):
        raise SpecError(f"dependent variable '{response}' is not a variable name", text, text.find(response))
    options: dict[str, Any] = {}
    constant = True
    for name, arg in head_opts:
        if name == "noconstant":
            constant = False
        else:
            options[name] = arg
    levels, path = [], ()
    for seg, off in zip(segments[1:], offsets[1:]):
        level, path, global_opts = _parse_level(seg, path, text, off)
        levels.append(level)
        level_weights = {**options.get("level_weights", {}), **global_opts.get("level_weights", {})}
        options.update(global_opts)
        if level_weights:
            options["level_weights"] = level_weights
    if weight:
        options["weight"] = weight
    method = _method(options)
    return ModelSpec(command=command, response=response,
                     fixed=stata_to_formulaic(fe_tokens, text),
                     fixed_stata=" ".join(fe_tokens), constant=constant, levels=tuple(levels),
                     method=method, if_expr=if_expr, in_range=in_range, options=options)


def _offsets(segments: list[str]) -> list[int]:
    out, pos = [], 0
    for seg in segments:
        out.append(pos)
        pos += len(seg) + 2
    return out


def _split_options(segment: str, text: str, offset: int) -> tuple[str, list[tuple[str, Any]]]:
    parts = split_top(segment, ",")
    if len(parts) > 2:
        raise SpecError("more than one comma in an equation", text, offset + len(parts[0]) + len(parts[1]) + 1)
    if len(parts) == 1:
        return segment, []
    opt_offset = offset + len(parts[0]) + 1
    raw = tokenize_options(parts[1], text, opt_offset)
    return parts[0], [_normalize_option(n, a, text) for n, a in raw]


def _normalize_option(name: str, arg: str | None, text: str) -> tuple[str, Any]:
    full = resolve(name, _ABBREV, "option", text)
    if full == "covariance":
        if not arg:
            raise SpecError("covariance() needs a structure", text)
        return full, resolve(arg, COV_NAMES, "covariance structure", text)
    if full == "level":
        return full, float(arg) if arg else 95.0
    if full == "intpoints":
        return full, int(arg) if arg else 7
    if full in ("iterate", "emiterate"):
        return full, int(arg) if arg else None
    return full, (arg if arg is not None else True)


def _method(options: dict[str, Any]) -> str:
    reml = bool(options.pop("reml", False))
    ml = bool(options.pop("mle", False) or options.pop("ml", False))
    if reml and ml:
        raise SpecError("options reml and mle may not be combined")
    return "reml" if reml else "ml"


def _qualifiers(head: str, text: str):
    weight = None
    m = _WEIGHT.search(head)
    if m:
        kind = m.group(1).lower()[:2]
        weight = (kind, m.group(2).strip())
        head = head[:m.start()] + head[m.end():]
    in_range = None
    m = _IN.search(head)
    if m:
        first = 1 if m.group(1) == "f" else int(m.group(1))
        last = -1 if m.group(2) in (None, "l", "L") and m.group(2) is not None else int(m.group(2) or first)
        in_range = (first, last)
        head = head[:m.start()]
    if_expr = None
    m = re.search(r"\bif\b", head)
    if m:
        if_expr = head[m.end():].strip()
        if not if_expr:
            raise SpecError("'if' needs an expression", text, text.find(" if") + 1)
        head = head[:m.start()]
    return head, if_expr, in_range, weight


def _parse_level(segment: str, path: tuple[str, ...], text: str, offset: int):
    body, opts = _split_options(segment, text, offset)
    if ":" not in body:
        raise SpecError("random-effects equation needs 'levelvar:'", text, offset + len(segment) - len(segment.lstrip()))
    levelvar, _, varlist = body.partition(":")
    levelvar = levelvar.strip()
    if not _NAME.match(levelvar):
        raise SpecError(f"'{levelvar}' is not a level variable", text, offset)
    terms = tuple(_re_term(v, text) for v in varlist.split())
    re_opts = {n: a for n, a in opts if n in RE_OPTIONS}
    global_opts = {n: a for n, a in opts if n not in RE_OPTIONS}
    if levelvar == "_all" or (path and path[-1] == levelvar):
        group = path  # _all, or a repeated level (block-diagonal covariance)
    else:
        group = path + (levelvar,)
    has_r = any(t.startswith("R.") for t in terms)
    if has_r and levelvar != "_all":
        raise SpecError("R.varname is allowed only in an _all: equation", text, offset)
    constant = not re_opts.get("noconstant", False) and not has_r
    cov = re_opts.get("covariance", "identity" if has_r else "independent")
    level = ReLevel(group=group, terms=terms, constant=constant, covariance=cov,
                    label="_all" if levelvar == "_all" else levelvar)
    extra = {k: v for k, v in re_opts.items() if k in ("fweight", "pweight", "iweight")}
    if extra:
        global_opts.setdefault("level_weights", {})[level.name] = extra
    return level, group, global_opts


def _re_term(token: str, text: str) -> str:
    """A random-effects term: ``x``/``c.x``, ``R.x`` (in ``_all:``), or a factor ``i.x``/``ib#.x``."""
    low = token
    if low.startswith("c."):
        low = low[2:]
    if re.match(r"^(i|ib\d+|ib\(\d+\))\.", low):
        name = low.split(".", 1)[1]
    elif low.startswith("R."):
        name = low[2:]
    else:
        name = low
    if not _NAME.match(name):
        raise SpecError(f"random-effects term '{token}' is not supported (use a variable name or R.var)",
                        text, text.find(token))
    return low
