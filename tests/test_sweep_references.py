"""The sweep of plausible user models (``tests/references/sweep``: lme4, nlme, glmmTMB,
ordinal fits and own R quadrature for survival frailty models) through
``multilevel.fit(stata_command, data).to_dict()``, one test per reported number with
the tolerances of SCHEMA.md, and the shared checker's comparison of each case."""
from __future__ import annotations

import functools
import json
import pathlib

import pytest

from tests.conformance.numbers import params
from tests.conftest import fit_case

SWEEP = pathlib.Path(__file__).parent / "references" / "sweep"
CASES = [json.loads(p.read_text()) for p in sorted(SWEEP.glob("*.json"))]


@functools.lru_cache(maxsize=None)
def fitted(case_id: str) -> dict:
    return fit_case(next(c for c in CASES if c["id"] == case_id))


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", params(CASES))
def test_number(case_id, label, reference, tolerance, getter):
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


@pytest.mark.parametrize("case_id", [c["id"] for c in CASES])
def test_shared_checker(case_id):
    """The shared tool's own comparison (SCHEMA.md) finds nothing wrong."""
    from tests.conformance.conformance_check import compare

    case = next(c for c in CASES if c["id"] == case_id)
    assert compare(case, fitted(case_id)) == []
