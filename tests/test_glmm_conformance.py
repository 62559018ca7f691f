"""Every ``glmm`` conformance case (reference fits from lme4/glmmTMB/ordinal and own
R quadrature) through ``multilevel.fit(stata_command, data).to_dict()``, one test per
reported number with the tolerances of SCHEMA.md; and the random-slope references
of ``tests/references/glmm_slopes`` (two-dimensional adaptive quadrature)."""
from __future__ import annotations

import functools
import json
import os
import pathlib

import pandas as pd
import pytest

import multilevel
from tests.conformance.numbers import checks
from tests.conftest import load_cases, load_data

CASES = load_cases("glmm")
SLOPES = pathlib.Path(__file__).parent / "references" / "glmm_slopes"
# the 30-point (900 nodes per group) "exact" reference takes about a minute: run it with
# MULTILEVEL_SLOW=1
SLOPE_CASES = [json.loads(p.read_text()) for p in sorted(SLOPES.glob("glmm_slopes_*.json"))]


@functools.lru_cache(maxsize=None)
def fitted(case_id: str) -> dict:
    case = next(c for c in CASES + SLOPE_CASES if c["id"] == case_id)
    if case in SLOPE_CASES:
        df = pd.read_csv(SLOPES / "glmm_slopes_sim.csv")
    else:
        df = load_data(case["dataset"])
    if case.get("subset"):
        df = df.query(case["subset"]).reset_index(drop=True)
    return multilevel.fit(case["stata"], data=df).to_dict()


def _params(cases):
    out = []
    for c in cases:
        marks = [pytest.mark.slow, pytest.mark.skipif(not os.environ.get("MULTILEVEL_SLOW"),
                                                      reason="slow: set MULTILEVEL_SLOW=1")] \
            if "intpoints(30)" in c["stata"] else []
        out += [pytest.param(c["id"], label, ref, tol, get, id=f"{c['id']}::{label}", marks=marks)
                for label, ref, tol, get in checks(c)]
    return out


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", _params(CASES))
def test_number(case_id, label, reference, tolerance, getter):
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", _params(SLOPE_CASES))
def test_random_slope_number(case_id, label, reference, tolerance, getter):
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


def test_shared_checker_passes_every_case():
    """The shared tool's own comparison (SCHEMA.md) finds nothing wrong."""
    from tests.conformance.conformance_check import compare

    for case in CASES:
        assert compare(case, fitted(case["id"])) == [], case["id"]
