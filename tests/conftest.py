"""Shared fixtures: data sets and reference cases shipped with the tests."""
from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

HERE = pathlib.Path(__file__).parent
DATA = HERE / "data"
CASES = HERE / "conformance" / "cases"


def load_data(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name)


def fit_case(case: dict) -> dict:
    """``multilevel.fit(case["stata"], data).to_dict()`` on the case's data set (after its
    ``subset``; mestreg cases with their ``options.stset``)."""
    import multilevel

    df = load_data(case["dataset"])
    if case.get("subset"):
        df = df.query(case["subset"]).reset_index(drop=True)
    stset = (case.get("options") or {}).get("stset")
    return multilevel.fit(case["stata"], data=df, **({"stset": stset} if stset else {})).to_dict()


def load_cases(klass: str) -> list[dict]:
    cases = [json.loads(p.read_text()) for p in sorted(CASES.glob("*.json"))]
    return [c for c in cases if c["class"] == klass]


@pytest.fixture(scope="session")
def pig() -> pd.DataFrame:
    return load_data("pig.csv")
