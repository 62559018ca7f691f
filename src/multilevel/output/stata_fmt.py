"""Stata's numeric display formats (``%9.0g``, ``%8.2f``) as strings.

``%w.0g`` shows as many significant digits as fit in ``w`` characters:
trailing zeros are dropped and a leading ``0.`` is written ``.``
([D] format).  Values too large or too small switch to ``e`` notation.
"""
from __future__ import annotations

import math


def fmt_g(x: float, width: int = 9) -> str:
    """``%{width}.0g``, right-aligned in ``width`` characters."""
    return _g(x, width).rjust(width)


def _g(x: float, width: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "."
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    a = abs(x)
    room = width - 1  # Stata keeps one position for the sign
    magnitude = math.floor(math.log10(a))
    if magnitude >= room or magnitude < -5:
        return sign + _exp(a, room - len(sign))
    if a < 1:
        text = f"{a:.{room - 1}f}"
        text = text[1:] if text.startswith("0") else text
    else:
        decimals = max(room - (magnitude + 1) - 1, 0)
        text = f"{a:.{decimals}f}"
        if len(text.split(".")[0]) > room:  # rounding carried into a new digit
            return sign + _exp(a, room)
        if len(text) > room and "." in text:
            text = f"{a:.{max(decimals - (len(text) - room), 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return sign + (text or "0")


def _exp(a: float, room: int) -> str:
    digits = max(room - 6, 0)
    mant, exp = f"{a:.{digits}e}".split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{exp[0]}{int(exp[1:]):02d}"


def fmt_f(x: float, width: int, decimals: int) -> str:
    """``%{width}.{decimals}f``; missing values print as ``.``."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ".".rjust(width)
    return f"{x:{width}.{decimals}f}"
