"""Linear hypotheses on the fixed effects written as Stata writes them.

``"week = 6"``, ``"x1 + x2 = 0"``, ``"2*x1 - x2"`` (``= 0`` implied),
``"_b[week] = 6"``, ``"[weight]week"``; coefficient names are the Stata names
of the fit (``_cons``, ``2.f``, ``1.male#c.age``).  Each equation becomes one
row of R in Rβ = r.
"""
from __future__ import annotations

import re

import numpy as np

from ..spec.errors import SpecError

_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse(text: str, names: tuple[str, ...], depvar: str = "") -> tuple[np.ndarray, float]:
    """One linear equation over the coefficients: (row of R, right-hand side r)."""
    if text.count("=") > 1:
        raise SpecError("a hypothesis has at most one '='", text)
    left, _, right = text.partition("=")
    a, c = _side(left, names, depvar, text)
    if right.strip():
        b, d = _side(right, names, depvar, text)
        a, c = a - b, c - d
    else:
        right = "0"
    if not np.any(a):
        raise SpecError("the hypothesis involves no coefficient of the model", text)
    return a, 0.0 - c


def _side(expr: str, names: tuple[str, ...], depvar: str, text: str) -> tuple[np.ndarray, float]:
    """Σ coefficient × name + constant of one side."""
    row, const = np.zeros(len(names)), 0.0
    pos, sign, expect_term = 0, 1.0, True
    expr = expr.strip()
    if not expr:
        raise SpecError("empty side of the hypothesis", text)
    by_length = sorted(names, key=len, reverse=True)
    while pos < len(expr):
        if expr[pos].isspace():
            pos += 1
            continue
        if not expect_term:
            if expr[pos] not in "+-":
                raise SpecError("expected '+' or '-'", text, text.find(expr) + pos)
            sign = 1.0 if expr[pos] == "+" else -1.0
            pos, expect_term = pos + 1, True
            continue
        if expr[pos] in "+-":
            sign *= 1.0 if expr[pos] == "+" else -1.0
            pos += 1
            continue
        factor = 1.0
        name, end = _name_at(expr, pos, by_length, depvar)
        if name is None:
            m = _NUMBER.match(expr, pos)
            if not m:
                raise SpecError("unknown coefficient (names are those of the fixed-effects table: "
                                + ", ".join(names) + ")", text, text.find(expr) + pos)
            factor, end = float(m.group()), m.end()
            rest = expr[end:].lstrip()
            if rest.startswith("*"):
                star = end + (len(expr[end:]) - len(rest))
                nxt = star + 1 + (len(expr[star + 1:]) - len(expr[star + 1:].lstrip()))
                name, end = _name_at(expr, nxt, by_length, depvar)
                if name is None:
                    raise SpecError("expected a coefficient name after '*'", text, text.find(expr) + nxt)
        if name is None:
            const += sign * factor
        else:
            row[names.index(name)] += sign * factor
        pos, sign, expect_term = end, 1.0, False
    if expect_term:
        raise SpecError("the hypothesis ends with an operator", text)
    return row, const


def _name_at(expr: str, pos: int, by_length: list[str], depvar: str) -> tuple[str | None, int]:
    """A coefficient name at ``pos`` (also ``_b[name]`` and ``[depvar]name``)."""
    m = re.match(r"_b\[\s*([^\]]+?)\s*\]", expr[pos:])
    if m:
        inner = m.group(1).split(":")[-1]
        return (inner if inner in by_length else _unknown(inner, by_length)), pos + m.end()
    m = re.match(r"\[\s*([^\]]*)\s*\]", expr[pos:])
    if m:
        if depvar and m.group(1) != depvar:
            raise SpecError(f"equation [{m.group(1)}] not found; the fixed effects are in [{depvar}]", expr, pos)
        pos += m.end()
    for name in by_length:
        if expr.startswith(name, pos):
            end = pos + len(name)
            if end == len(expr) or not (expr[end].isalnum() or expr[end] in "_.#"):
                return name, end
    return None, pos


def _unknown(name: str, names: list[str]) -> str:
    raise SpecError(f"coefficient '{name}' not found; the fixed effects are {', '.join(sorted(names))}")


def show(row: np.ndarray, rhs: float, names: tuple[str, ...], depvar: str) -> str:
    """Stata's echo of a constraint: ``[weight]week + [weight]_cons = 0``."""
    parts = []
    for a, name in zip(row, names):
        if a == 0:
            continue
        mag = abs(a)
        term = f"[{depvar}]{name}" if mag == 1 else f"{mag:g}*[{depvar}]{name}"
        parts.append(("- " if a < 0 else "+ ") + term)
    text = " ".join(parts)
    text = text[2:] if text.startswith("+ ") else "-" + text[2:]
    return f"{text} = {rhs + 0.0:g}"
