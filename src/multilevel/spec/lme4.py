"""Parse an lme4 formula (``y ~ x + (x | g) + (1 | a/b)``) into a :class:`ModelSpec`.

As lme4's ``findbars``/``nobars`` (reformulas package): the bar terms are
split off first, and the fixed part goes to formulaic.  ``(x || g)`` means
uncorrelated effects (Stata's ``covariance(independent)``); ``(x | g)`` with
several columns means ``covariance(unstructured)``.  Bars on the same
grouping factor that are all uncorrelated are merged into one equation, so
``(1 | id) + (0 + week | id)`` is Stata's ``|| id: week``.
"""
from __future__ import annotations

import re

from .errors import SpecError
from .factor import lme4_to_formulaic
from .model import ModelSpec, ReLevel
from .options import split_top

_VAR = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def parse(text: str, command: str = "mixed", method: str = "ml") -> ModelSpec:
    """Parse ``response ~ rhs`` with lme4 random-effects bars."""
    if text.count("~") != 1:
        raise SpecError("an lme4 formula needs exactly one '~'", text, text.find("~") if "~" in text else None)
    lhs, rhs = text.split("~")
    response = lhs.strip()
    if not _VAR.match(response):
        raise SpecError(f"response '{response}' is not a variable name", text, 0)
    fixed_terms, bars = _find_bars(rhs, text, len(lhs) + 1)
    constant, fixed = _fixed(fixed_terms)
    levels = _merge(bars)
    return ModelSpec(command=command, response=response, fixed=lme4_to_formulaic(" + ".join(fixed)),
                     fixed_stata=" ".join(fixed), constant=constant, levels=tuple(levels),
                     method=method, options={}, r_coding=True)


def _find_bars(rhs: str, text: str, offset: int):
    fixed, bars = [], []
    for sign, term in _signed_terms(rhs):
        if term.startswith("(") and term.endswith(")") and len(split_top(term[1:-1], "|")) > 1:
            if sign == "-":
                raise SpecError("cannot subtract a random-effects term", text, text.find(term))
            bars.extend(_bar(split_top(term[1:-1], "|"), term, text))
        elif "|" in term:
            raise SpecError("a random-effects term must be in parentheses: (expr | group)", text,
                            text.find(term))
        elif term:
            fixed.append((sign, term))
    return fixed, bars


def _signed_terms(rhs: str) -> list[tuple[str, str]]:
    """Top-level ``+``/``-`` terms with their signs: ``x - 1`` -> ``[(+, x), (-, 1)]``."""
    out, depth, start, sign = [], 0, 0, "+"
    for i, ch in enumerate(rhs + "+"):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch in "+-" and depth == 0:
            out.append((sign, rhs[start:i].strip()))
            sign, start = ch, i + 1
    return [(s, t) for s, t in out if t]


def _bar(parts: list[str], term: str, text: str) -> list[tuple[tuple[str, ...], str, ReLevel]]:
    double = len(parts) == 3 and parts[1] == ""
    if len(parts) != 2 and not double:
        raise SpecError("malformed random-effects term", text, text.find(term))
    expr, group_text = parts[0], parts[-1].strip()
    constant, slopes = _bar_expr(expr, term, text)
    ncol = len(slopes) + constant
    cov = "independent" if (double or ncol == 1) else "unstructured"
    out = []
    for group, label in _groups(group_text, term, text):
        out.append(ReLevel(group=group, terms=tuple(slopes), constant=constant, covariance=cov, label=label))
    return out


def _bar_expr(expr: str, term: str, text: str) -> tuple[bool, list[str]]:
    constant, slopes = True, []
    for piece in re.split(r"(?=[+-])", expr.replace(" ", "")):
        sign, name = ("-", piece[1:]) if piece.startswith("-") else ("+", piece.lstrip("+"))
        if not name:
            continue
        if name in ("0", "1"):
            constant = (name == "1") == (sign == "+")
        elif sign == "-":
            raise SpecError(f"cannot remove '{name}' from a random-effects term", text, text.find(term))
        elif _VAR.match(name):
            slopes.append(name)
        else:
            raise SpecError(f"random slope '{name}' must be a numeric variable", text, text.find(term))
    if not slopes and not constant:
        raise SpecError("random-effects term has no columns", text, text.find(term))
    return constant, slopes


def _groups(group_text: str, term: str, text: str) -> list[tuple[tuple[str, ...], str]]:
    nested = [g.strip() for g in group_text.split("/")]
    out, path = [], ()
    for g in nested:
        factors = tuple(f.strip() for f in g.split(":"))
        if not all(_VAR.match(f) for f in factors):
            raise SpecError(f"grouping factor '{g}' is not a variable name", text, text.find(term))
        path = path + factors
        label = factors[-1] if len(nested) > 1 else ":".join(factors)
        out.append((path, label))
    return out


def _fixed(terms: list[tuple[str, str]]) -> tuple[bool, list[str]]:
    constant, kept = True, []
    for sign, term in terms:
        if term in ("0", "1"):
            constant = (term == "1") == (sign == "+")
        elif sign == "-":
            raise SpecError(f"cannot remove '{term}' from the fixed part (only -1 is supported)")
        else:
            kept.append(term)
    return constant, kept


def _merge(bars: list[ReLevel]) -> list[ReLevel]:
    """Merge uncorrelated bars on the same grouping factor into one equation."""
    merged: list[ReLevel] = []
    for bar in bars:
        target = next((i for i, m in enumerate(merged) if m.group == bar.group
                       and m.covariance == "independent" and bar.covariance == "independent"), None)
        if target is None:
            merged.append(bar)
            continue
        old = merged[target]
        if old.constant and bar.constant:
            raise SpecError(f"two random intercepts for '{bar.name}'")
        merged[target] = ReLevel(group=old.group, terms=old.terms + bar.terms,
                                 constant=old.constant or bar.constant,
                                 covariance="independent", label=old.label)
    return merged
