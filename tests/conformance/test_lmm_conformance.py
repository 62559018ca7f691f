"""Every ``lmm`` conformance case (reference fits from lme4/nlme) through the contract
``multilevel.fit(stata_command, data).to_dict()``, one test per reported number,
with the tolerances of SCHEMA.md."""
from __future__ import annotations

import functools

import pytest

from tests.conformance.numbers import params
from tests.conftest import fit_case, load_cases

CASES = load_cases("lmm")


@functools.lru_cache(maxsize=None)
def fitted(case_id: str) -> dict:
    return fit_case(next(c for c in CASES if c["id"] == case_id))


PARAMS = params(CASES)


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", PARAMS)
def test_number(case_id, label, reference, tolerance, getter):
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


def test_shared_checker_passes_every_case():
    """The shared tool's own comparison (SCHEMA.md) finds nothing wrong."""
    from tests.conformance.conformance_check import compare

    for case in CASES:
        assert compare(case, fitted(case["id"])) == [], case["id"]
