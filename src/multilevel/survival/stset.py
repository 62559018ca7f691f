"""Stata's ``stset``: the analysis time, the failure indicator and the entry time of each record.

Accepted: ``stset timevar [, failure(failvar[==numlist]) id(idvar) enter(time exp) time0(t0var)]``
([ST] stset).  Without ``failure()`` every record ends in a failure; with ``failure(d)`` a record
fails when ``d`` is neither 0 nor missing, with ``failure(d==1 3)`` when ``d`` takes a listed value.

Entry: a record is at risk on (``_t0``, ``_t``].  ``_t0`` is ``time0()``, or with ``id()`` (several
records per subject, sorted by time) the end of the subject's previous record, else 0; ``enter(time
exp)`` (a variable or a number) moves it up to the subject's entry time.  With ``id()`` the records
after a subject's first failure are not used (Stata's default ``exit(failure)``).  Records with a
missing or non-positive ``_t``, or with ``_t`` ≤ ``_t0``, are not used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec.errors import DataError, SpecError

_STSET = re.compile(r"^\s*(?:stset\s+)?([A-Za-z_]\w*)\s*(?:,\s*(.*))?$", re.I)
_OPTION = re.compile(r"\s*([A-Za-z]\w*)\s*\(([^()]*)\)\s*")
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_FAILURE = re.compile(r"^([A-Za-z_]\w*)\s*(?:==\s*(.*))?$")


@dataclass(frozen=True)
class Stset:
    """The survival-time settings: ``time`` variable, ``failure`` variable and failure codes,
    subject ``id``, entry time ``enter`` (a variable name or a number) and record start ``time0``."""

    time: str
    failure: str | None = None
    codes: tuple[float, ...] | None = None  # None: any value other than 0 is a failure
    id: str | None = None
    enter: str | float | None = None
    time0: str | None = None

    @property
    def variables(self) -> list[str]:
        names = [self.time, self.failure, self.id, self.time0, self.enter if isinstance(self.enter, str) else None]
        return [n for n in names if n]

    def header(self) -> tuple[tuple[str, str], ...]:
        """The lines Stata prints above an st command's output: (label, value)."""
        lines = [("Failure _d", self.failure or "1 (meaning all fail)"), ("Analysis time _t", self.time)]
        if self.enter is not None:
            lines.append(("Enter on or after", f"time {self.enter:g}" if isinstance(self.enter, float)
                          else f"time {self.enter}"))
        if self.id:
            lines.append(("ID variable", self.id))
        return tuple(lines)

    def columns(self, data: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``data`` with Stata's ``_t``, ``_d`` and ``_t0`` added (the input is not modified)."""
        for name in self.variables:
            if name not in data.columns:
                raise DataError(f"stset: variable '{name}' not found in the data")
        def num(name: str) -> pd.Series:
            return pd.to_numeric(data[name], errors="coerce").astype(float)

        t = num(self.time)
        if self.failure is None:
            d = pd.Series(1.0, index=data.index)
        else:
            raw = num(self.failure)
            hit = raw.isin(self.codes) if self.codes is not None else raw != 0
            d = hit.astype(float).where(raw.notna())
        t0 = num(self.time0) if self.time0 else pd.Series(0.0, index=data.index)
        used = t > 0  # Stata does not use records with _t <= 0
        if self.id:
            t0, used = self._records(data, t, d, t0, used)
        if self.enter is not None:
            t0 = np.maximum(t0, num(self.enter) if isinstance(self.enter, str) else self.enter)
        used &= t0.notna() & (t > t0)
        return data.assign(_t=t.where(used), _d=d, _t0=t0)

    def _records(self, data, t, d, t0, used):
        """Several records per subject: ``_t0`` from the previous record (without ``time0()``);
        records after the subject's first failure dropped."""
        if data[self.id].isna().any():
            raise DataError(f"stset: id variable '{self.id}' has missing values")
        frame = pd.DataFrame({"id": data[self.id], "t": t, "fail": (d > 0) & used}).sort_values(["id", "t"],
                                                                                               kind="stable")
        by = frame.groupby("id", sort=False)
        if self.time0 is None:
            t0 = by["t"].shift(1).fillna(0.0).reindex(data.index)
        after_failure = (by["fail"].cumsum() - frame["fail"]).reindex(data.index) > 0
        if self.time0 is None and frame.duplicated(["id", "t"]).any():
            raise DataError(f"stset: two records of the same {self.id} end at the same time")
        return t0, used & ~after_failure


def _failure(text: str, args: str) -> tuple[str, tuple[float, ...] | None]:
    f = _FAILURE.match(args.strip())
    if not f:
        raise SpecError("failure() must be failure(failvar) or failure(failvar==numlist)", text)
    name, values = f.group(1), f.group(2)
    if values is None:
        return name, None
    try:
        codes = tuple(float(v) for v in values.replace(",", " ").split())
    except ValueError:
        raise SpecError(f"failure({name}=={values}): give numbers", text) from None
    if not codes:
        raise SpecError(f"failure({name}==) needs at least one value", text)
    return name, codes


def _enter(text: str, args: str) -> str | float:
    parts = args.split()
    if len(parts) != 2 or parts[0].lower() != "time":
        raise SpecError("enter() is supported as enter(time varname) or enter(time #)", text)
    try:
        return float(parts[1])
    except ValueError:
        if not _NAME.match(parts[1]):
            raise SpecError(f"enter(time {parts[1]}): give a variable name or a number", text) from None
        return parts[1]


def _variable(text: str, option: str, args: str) -> str:
    if not _NAME.match(args.strip()):
        raise SpecError(f"{option}() needs one variable name", text)
    return args.strip()


def parse_stset(text: str) -> Stset:
    """Parse ``stset time, failure(died) id(id) enter(time t0) time0(start)`` (``stset`` optional)."""
    m = _STSET.match(text or "")
    if not m:
        raise SpecError("stset must look like 'stset timevar, failure(failvar)'", text)
    time, rest = m.group(1), (m.group(2) or "").strip()
    settings: dict = {}
    pos = 0
    while pos < len(rest):
        o = _OPTION.match(rest, pos)
        if not o:
            raise SpecError(f"stset option '{rest[pos:].strip()}' is not supported; use failure(), id(), "
                            "enter(time ...) or time0()", text)
        name, args = o.group(1).lower(), o.group(2)
        if "failure".startswith(name):
            settings["failure"], settings["codes"] = _failure(text, args)
        elif name == "enter":
            settings["enter"] = _enter(text, args)
        elif name in ("id", "time0"):
            settings[name] = _variable(text, name, args)
        else:
            raise SpecError(f"stset option '{name}()' is not supported; use failure(), id(), enter(time ...) "
                            "or time0()", text)
        pos = o.end()
    return Stset(time, **settings)
