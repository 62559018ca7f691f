"""R's number formatting (``format(x, digits=)``, ``print``), for the lme4-style summary.

R formats a numeric vector with one common layout: enough digits that every
element shows ``digits`` significant digits (trailing zeros dropped), the
same number of decimals for all, and fixed notation unless scientific is
narrower (``formatReal`` and ``scientific`` in R's ``src/main/format.c``).
Long-double arithmetic is used where R uses it, so that ties round as in R.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

_KP_MAX = 27
_TEN = np.longdouble(10)
WIDTH = 80                        # getOption("width")


def _scientific(x: float, digits: int) -> tuple[int, int, int, bool]:
    """(neg, kpower, nsig, roundingwidens) of ``x`` shown with ``digits`` significant digits."""
    if x == 0:
        return 0, 0, 1, False
    neg, r = int(x < 0), abs(x)
    kp = math.floor(math.log10(r)) - digits + 1
    r_prec = np.longdouble(r)
    if abs(kp) < 10:
        r_prec = r_prec / _TEN ** kp if kp > 0 else r_prec * _TEN ** (-kp)
    else:
        r_prec = r_prec / np.longdouble(10.0 ** kp)
    if r_prec < _TEN ** (digits - 1):
        r_prec *= 10
        kp -= 1
    alpha = float(np.rint(r_prec))         # nearbyintl: ties to even
    nsig = digits
    for _ in range(digits):
        alpha /= 10.0
        if alpha != math.floor(alpha):
            break
        nsig -= 1
    if nsig == 0 and digits > 0:
        nsig, kp = 1, kp + 1
    kpower = kp + digits - 1
    rgt = min(max(digits - kpower, 0), _KP_MAX)
    fuzz = 0.5 / 10 ** rgt
    widens = 0 < kpower <= _KP_MAX and r < 10.0 ** kpower - fuzz
    return neg, kpower, nsig, widens


def _layout(values: Sequence[float], digits: int, nsmall: int) -> tuple[int, int, int]:
    """(width, decimals, exponent digits; 0 = fixed) as R's ``formatReal``."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0, 0, 0
    neg = rgt = mxns = 0
    mxl = mxsl = -10**9
    mnl = 10**9
    for v in finite:
        sneg, kpower, nsig, widens = _scientific(v, digits)
        left = kpower + 1 - int(widens)
        sleft = sneg + (1 if left <= 0 else left)
        rgt = max(rgt, nsig - left)
        neg = max(neg, sneg)
        mxl, mnl, mxsl, mxns = max(mxl, left), min(mnl, left), max(mxsl, sleft), max(mxns, nsig)
    if mxl < 0:
        mxsl = 1 + neg
    rgt = max(rgt, 0)
    w_fixed = mxsl + rgt + (rgt != 0)
    e = 2 if (mxl > 100 or mnl <= -99) else 1
    d = mxns - 1
    w_sci = neg + (d > 0) + d + 4 + e
    if w_fixed <= w_sci:                   # getOption("scipen") = 0
        rgt = max(rgt, nsmall)
        return mxsl + rgt + (rgt != 0), rgt, 0
    return w_sci, d, e


def _one(v: float, d: int, e: int) -> str:
    if math.isnan(v):
        return "NA"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return f"{v:.{d}e}" if e else f"{v:.{d}f}"     # C's %e: at least two exponent digits


def format_num(values: Sequence[float], digits: int = 7, nsmall: int = 0) -> list[str]:
    """R's ``format(x, digits = digits, nsmall = nsmall)``: strings of one common width."""
    values = [float(v) for v in values]
    _, d, e = _layout(values, digits, nsmall)
    out = [_one(v, d, e) for v in values]
    width = max(map(len, out), default=0)
    return [s.rjust(width) for s in out]


def r_round(x, digits: float):
    """R's ``round(x, digits)`` (non-integer ``digits`` rounded half up, as R does)."""
    return np.round(np.asarray(x, dtype=float), int(math.floor(digits + 0.5)))


def zapsmall(x, digits: int) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest magnitude."""
    x = np.asarray(x, dtype=float)
    mx = np.max(np.abs(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else 0.0
    return r_round(x, max(0.0, digits - math.log10(mx)) if mx > 0 else digits)


def print_named(names: Sequence[str], cells: Sequence[str]) -> list[str]:
    """R's print of a named vector: right-justified columns of one width, a space after each."""
    width = max(max(map(len, names), default=0), max(map(len, cells), default=0))
    per_line = max(1, WIDTH // (width + 1))
    lines = []
    for start in range(0, len(cells), per_line):
        chunk = range(start, min(start + per_line, len(cells)))
        lines.append("".join(names[i].rjust(width) + " " for i in chunk))
        lines.append("".join(cells[i].rjust(width) + " " for i in chunk))
    return lines


def print_matrix(rownames: Sequence[str], colnames: Sequence[str], cells: Sequence[Sequence[str]],
                 right: bool = False) -> list[str]:
    """R's ``print(<character matrix>, quote = FALSE, right = right)``.

    Row names are left-justified; each column is preceded by one space and
    justified as ``right`` says (headers too); columns that do not fit in
    the line width continue in a further block, as R does.
    """
    rw = max(map(len, rownames), default=0)
    ncol = len(colnames)
    widths = [max([len(colnames[j])] + [len(row[j]) for row in cells]) for j in range(ncol)]
    just = str.rjust if right else str.ljust
    lines: list[str] = []
    j = 0
    while j < ncol or (ncol == 0 and not lines):
        total, end = rw, j
        while end < ncol and (end == j or total + 1 + widths[end] <= WIDTH):
            total += 1 + widths[end]
            end += 1
        cols = range(j, end)
        lines.append(" " * rw + "".join(" " + just(colnames[c], widths[c]) for c in cols))
        lines += [rownames[i].ljust(rw) + "".join(" " + just(cells[i][c], widths[c]) for c in cols)
                  for i in range(len(rownames))]
        j = end
        if ncol == 0:
            break
    return lines


def abbreviate(names: Sequence[str], minlength: int) -> list[str]:
    """R's ``abbreviate(names, minlength)`` (method ``"left.kept"``, unique results)."""
    x = list(names)
    todo = list(range(len(names)))
    while True:
        for i in todo:
            x[i] = _strip(names[i], minlength)
        dup = {i for i in range(len(x)) if x[i] in x[:i]}
        if not dup:
            return x
        minlength += 1
        clash = {x[i] for i in dup}
        todo = [i for i in range(len(x)) if x[i] in clash]


def _strip(name: str, minlen: int) -> str:
    """R's C ``stripchars``: drop lower-case vowels, then lower-case letters, from the end."""
    s = list(name.strip())
    if len(s) <= minlen:
        return "".join(s)

    def first(i):  # the first character of a word
        return s[i - 1].isspace()

    def last(i):   # the last character of a word
        return not s[i - 1].isspace() and (i + 1 == len(s) or s[i + 1].isspace())

    def done():
        return len(s) - sum(c.isspace() for c in s) <= minlen

    rules = [lambda i: s[i] in "aeiou" and last(i), lambda i: s[i] in "aeiou" and not first(i),
             lambda i: s[i].islower() and last(i), lambda i: s[i].islower() and not first(i),
             lambda i: not first(i) and not s[i].isspace()]
    for rule in rules:
        for i in range(len(s) - 1, 0, -1):
            if i < len(s) and rule(i):
                del s[i]
            if done():
                return "".join(c for c in s if not c.isspace())
    return "".join(c for c in s if not c.isspace())
