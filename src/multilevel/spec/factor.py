"""Stata factor-variable notation <-> formulaic formulas and column names.

All translation between Stata's names (``2.x``, ``1.male#c.age``, ``_cons``)
and formulaic's (``C(x)[T.2]``, ``C(male)[T.1]:age``, ``Intercept``) lives
here, so the rest of the package speaks Stata names only.
"""
from __future__ import annotations

import collections
import itertools
import re

from .errors import SpecError

_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
_PREFIX = re.compile(rf"^(?:(c|i|ib(\d+|\(\d+\))|ibn)\.)?({_VAR})$")
_POWER_COL = re.compile(rf"^I\(({_VAR})\s*\*\*\s*(\d+)\)$")
_FACTOR_COL = re.compile(r"^C\((?P<var>[^,)]+)(?:,[^\]]*)?\)\[(?:T\.)?(?P<lvl>[^\]]+)\]$")


def stata_to_formulaic(tokens: list[str], text: str = "") -> str:
    """Translate Stata fixed-effect tokens (``i.a##c.b``) to a formulaic RHS.

    Unprefixed variables are continuous on their own and categorical inside
    an interaction, as in Stata ([U] 11.4.3 Factor variables).
    """
    return " + ".join(_token(tok, text) for tok in tokens)


def _token(token: str, text: str) -> str:
    """``a##b`` is ``a b a#b`` (every non-empty subset, lowest order first); in ``a#b`` a
    continuous variable repeated is a power (``c.x#c.x`` -> ``I(x ** 2)``: formulaic's
    ``x:x`` would be ``x`` again)."""
    factorial = "##" in token
    pieces = token.split("##") if factorial else token.split("#")
    if any(not p for p in pieces):
        raise SpecError(f"malformed factor-variable term '{token}'", text, max(text.find(token), 0))
    in_interaction = len(pieces) > 1
    coded = [_piece(p, in_interaction, token, text) for p in pieces]
    subsets = ([c for k in range(1, len(coded) + 1) for c in itertools.combinations(coded, k)]
               if factorial else [tuple(coded)])
    terms = [_product(subset) for subset in subsets]
    return " + ".join(dict.fromkeys(terms))


def _product(pieces: tuple[str, ...]) -> str:
    """formulaic's product of coded pieces, a repeated continuous variable as its power."""
    counts = collections.Counter(pieces)
    return ":".join(p if counts[p] == 1 or p.startswith("C(") else f"I({p} ** {counts[p]})"
                    for p in dict.fromkeys(pieces))


def _piece(piece: str, in_interaction: bool, token: str, text: str) -> str:
    m = _PREFIX.match(piece)
    if not m:
        raise SpecError(f"cannot read '{token}' as a variable or factor variable", text,
                        max(text.find(token), 0))
    prefix, base, var = m.group(1), m.group(2), m.group(3)
    if prefix == "c" or (prefix is None and not in_interaction):
        return var
    if prefix == "ibn":
        raise SpecError(f"'{piece}': ibn. (no base level) is not supported", text, max(text.find(piece), 0))
    if base:
        return f"C({var}, contr.treatment(base={base.strip('()')}))"
    return f"C({var})"


def lme4_to_formulaic(rhs: str) -> str:
    """R's ``factor(x)`` / ``as.factor(x)`` become formulaic's ``C(x)``; R's power
    ``^`` inside ``I()`` becomes Python's ``**`` (in Python ``^`` is exclusive or)."""
    return _r_power_in_I(re.sub(r"\b(?:as\.)?factor\s*\(", "C(", rhs))


def _r_power_in_I(rhs: str) -> str:
    out, i = [], 0
    for m in re.finditer(r"\bI\s*\(", rhs):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(rhs) and depth:
            depth += {"(": 1, ")": -1}.get(rhs[j], 0)
            j += 1
        out += [rhs[i:m.start()], rhs[m.start():j].replace("^", "**")]
        i = j
    return "".join(out) + rhs[i:]


def stata_name(column: str) -> str:
    """Stata name of a formulaic column (``C(male)[T.1]:age`` -> ``1.male#c.age``)."""
    if column == "Intercept":
        return "_cons"
    pieces = _split_interaction(column)
    named = [_stata_piece(p, len(pieces) > 1) for p in pieces]
    return "#".join(named)


def _split_interaction(column: str) -> list[str]:
    out, depth, start = [], 0, 0
    for i, ch in enumerate(column):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ":" and depth == 0:
            out.append(column[start:i])
            start = i + 1
    out.append(column[start:])
    return out


def _stata_piece(piece: str, in_interaction: bool) -> str:
    m = _FACTOR_COL.match(piece)
    if m:
        return f"{level_label(m.group('lvl'))}.{m.group('var').strip()}"
    power = _POWER_COL.match(piece)
    if power:                   # I(x ** 2) is Stata's c.x#c.x
        return "#".join([f"c.{power.group(1)}"] * int(power.group(2)))
    return f"c.{piece}" if in_interaction else piece


def level_label(level: str) -> str:
    """Stata's label of a factor level: ``2.0`` -> ``2``."""
    if re.fullmatch(r"-?\d+\.0+", level):
        return level.split(".")[0]
    return level
