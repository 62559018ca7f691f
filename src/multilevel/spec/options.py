"""Stata option text: split ``name(args)`` tokens and resolve abbreviations."""
from __future__ import annotations

from .errors import SpecError

# option name -> shortest accepted abbreviation (Stata's underlined part)
_ABBREV = {
    "covariance": "cov",
    "noconstant": "noc",
    "variance": "var",
    "stddeviations": "stddev",
    "reml": "reml",
    "mle": "mle",
    "ml": "ml",
    "level": "l",
    "nolog": "nolo",
    "log": "log",
    "noretable": "noretable",
    "nofetable": "nofetable",
    "noheader": "noheader",
    "nogroup": "nogroup",
    "nolrtest": "nolrtest",
    "residuals": "res",
    "vce": "vce",
    "dfmethod": "dfm",
    "iterate": "iter",
    "tolerance": "tol",
    "fweight": "fw",
    "pweight": "pw",
    "iweight": "iw",
    "collinear": "coll",
    "family": "f",
    "link": "li",
    "intmethod": "intm",
    "intpoints": "intp",
    "binomial": "bin",
    "exposure": "exp",
    "offset": "off",
    "or": "or",
    "irr": "irr",
    "eform": "eform",
    "difficult": "difficult",
    "emiterate": "emiter",
    "noestimate": "noestimate",
    "pwscale": "pwscale",
    "dftable": "dftable",
    "dispersion": "disp",
    "distribution": "d",
    "time": "time",
    "nohr": "nohr",
    "tratio": "tr",
    "startvalues": "startv",
    "startgrid": "startgrid",
    "from": "from",
}

COV_NAMES = {
    "independent": "ind",
    "exchangeable": "exc",
    "identity": "id",
    "unstructured": "un",
}

RE_OPTIONS = {"covariance", "noconstant", "collinear", "fweight", "pweight", "iweight"}


def resolve(name: str, table: dict[str, str], what: str, text: str = "") -> str:
    """Full name of an abbreviated Stata keyword (``cov`` -> ``covariance``)."""
    low = name.lower()
    for full, short in table.items():
        if full.startswith(low) and low.startswith(short):
            return full
    raise SpecError(f"unknown {what} '{name}'", text or None)


def split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` where no parenthesis, bracket or brace is open."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(text[start:])
    return parts


def tokenize_options(text: str, full_text: str = "", offset: int = 0) -> list[tuple[str, str | None]]:
    """``cov(un) reml level(90)`` -> ``[("cov", "un"), ("reml", None), ("level", "90")]``."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < n and (text[j].isalnum() or text[j] == "_"):
            j += 1
        if j == i:
            raise SpecError(f"unexpected character {text[i]!r} in options", full_text or text, offset + i)
        name = text[i:j]
        if j < n and text[j] == "(":
            depth, k = 1, j + 1
            while k < n and depth:
                depth += {"(": 1, ")": -1}.get(text[k], 0)
                k += 1
            if depth:
                raise SpecError("unbalanced parentheses in options", full_text or text, offset + j)
            out.append((name, text[j + 1:k - 1].strip()))
            i = k
        else:
            out.append((name, None))
            i = j
    return out
