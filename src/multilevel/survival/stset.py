"""Stata's ``stset``: which variable is the analysis time and which the failure indicator.

Accepted: ``stset timevar [, failure(failvar[==numlist])]``.  Without ``failure()`` every
record ends in a failure; with ``failure(d)`` a record fails when ``d`` is neither 0 nor missing,
with ``failure(d==1 3)`` when ``d`` takes one of the listed values ([ST] stset).  Records with a
missing or non-positive time are not used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from ..spec.errors import DataError, SpecError

_STSET = re.compile(r"^\s*(?:stset\s+)?([A-Za-z_]\w*)\s*(?:,\s*(.*))?$", re.I)
_FAILURE = re.compile(r"^([A-Za-z]+)\s*\(\s*([A-Za-z_]\w*)\s*(?:==\s*([^)]*))?\)\s*$")


@dataclass(frozen=True)
class Stset:
    """The survival-time settings: ``time`` variable, ``failure`` variable and failure codes."""

    time: str
    failure: str | None = None
    codes: tuple[float, ...] | None = None  # None: any value other than 0 is a failure

    @property
    def variables(self) -> list[str]:
        return [self.time] + ([self.failure] if self.failure else [])

    def columns(self, data: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``data`` with Stata's ``_t`` and ``_d`` added (the input is not modified)."""
        for name in self.variables:
            if name not in data.columns:
                raise DataError(f"stset: variable '{name}' not found in the data")
        t = pd.to_numeric(data[self.time], errors="coerce").astype(float)
        if self.failure is None:
            d = pd.Series(1.0, index=data.index)
        else:
            raw = pd.to_numeric(data[self.failure], errors="coerce").astype(float)
            hit = raw.isin(self.codes) if self.codes is not None else raw != 0
            d = hit.astype(float).where(raw.notna())
        t = t.where(t > 0)  # Stata does not use records with _t <= 0
        return data.assign(_t=t, _d=d)


def parse_stset(text: str) -> Stset:
    """Parse ``stset time, failure(died)`` (the leading ``stset`` is optional)."""
    m = _STSET.match(text or "")
    if not m:
        raise SpecError("stset must look like 'stset timevar, failure(failvar)'", text)
    time, rest = m.group(1), (m.group(2) or "").strip()
    if not rest:
        return Stset(time)
    f = _FAILURE.match(rest)
    if not f or not "failure".startswith(f.group(1).lower()):
        raise SpecError(f"stset option '{rest}' is not supported; use failure(failvar[==numlist])", text)
    name, values = f.group(2), f.group(3)
    codes = None
    if values is not None:
        try:
            codes = tuple(float(v) for v in values.replace(",", " ").split())
        except ValueError:
            raise SpecError(f"failure({name}=={values}): give numbers", text) from None
        if not codes:
            raise SpecError(f"failure({name}==) needs at least one value", text)
    return Stset(time, name, codes)
