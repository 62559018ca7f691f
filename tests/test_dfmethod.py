"""Small-sample DF against lmerTest (Satterthwaite) and pbkrtest (Kenward–Roger).

References: the ``df_*``/``se_kenwardroger`` entries of the REML conformance cases
(lmerTest 3.1.3, pbkrtest 0.5.2; see each case's "reference"); agreement to 1e-4
relative, as the issue asks.
"""
from __future__ import annotations

import pytest

import multilevel as ml
from tests.conftest import load_cases, load_data

CASES = [c for c in load_cases("lmm") if "df_kenwardroger" in c["results"]["extra"]]
KEYS = ["df_satterthwaite", "df_satterthwaite_eim", "df_kenwardroger", "se_kenwardroger"]


@pytest.fixture(scope="module")
def fits():
    return {c["id"]: ml.fit(c["stata"], data=load_data(c["dataset"])) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
@pytest.mark.parametrize("key", KEYS)
def test_small_sample_df_match_r(fits, case, key):
    res = fits[case["id"]]
    got = dict(zip(res.fixed.names, res.to_dict()["extra"][key]))
    for name, ref in zip(case["results"]["fixed"]["names"], case["results"]["extra"][key]):
        assert got[name] == pytest.approx(ref, rel=1e-4), f"{key} {name}"


def test_dfmethod_kroger_adjusts_se_and_prints_t():
    res = ml.fit("mixed weight week || id:, reml dfmethod(kroger)", data=load_data("pig.csv"))
    ref = next(c for c in CASES if c["id"] == "lmm_pig_ri_reml")["results"]["extra"]
    assert list(res.fixed.se) == pytest.approx(ref["se_kenwardroger"], rel=1e-4)
    assert list(res.df) == pytest.approx(ref["df_kenwardroger"], rel=1e-4)
    text = str(res)
    assert "DF method: Kenward-Roger" in text and "P>|t|" in text and "F(1, 383.00)" in text


def test_dfmethod_satterthwaite_default_is_eim():
    res = ml.fit("mixed yield nitro || block: || variety:, reml dfmethod(satterthwaite)", data=load_data("oats.csv"))
    ref = next(c for c in CASES if c["id"] == "lmm_oats_nested_reml")["results"]["extra"]
    assert list(res.df) == pytest.approx(ref["df_satterthwaite_eim"], rel=1e-4)
    assert res.fixed_effects.loc["nitro", "df"] == pytest.approx(53.0, rel=1e-6)


def test_dfmethod_residual_uses_n_minus_p():
    res = ml.fit("mixed weight week || id:, dfmethod(residual)", data=load_data("pig.csv"))
    assert set(res.df) == {430.0}


def test_dfmethod_needs_reml():
    with pytest.raises(ml.SpecError, match="requires REML"):
        ml.fit("mixed weight week || id:, dfmethod(kroger)", data=load_data("pig.csv"))


# --- tests/references/dfmethod: lmerTest / pbkrtest / own EIM code in R (see its README) ---
import json  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402

from multilevel.inference.small_sample import ftest  # noqa: E402

REFS = [json.loads(p.read_text()) for p in
        sorted((pathlib.Path(__file__).parent / "references" / "dfmethod").glob("*.json"))]


@pytest.fixture(scope="module")
def ref_fits():
    return {c["id"]: ml.fit(c["stata"], data=load_data(c["dataset"])) for c in REFS}


@pytest.mark.parametrize("case", REFS, ids=[c["id"] for c in REFS])
def test_reference_df_t_p(ref_fits, case):
    res = ref_fits[case["id"]]
    fe = res.fixed_effects
    extra = case["results"]["extra"]
    names = case["results"]["fixed"]["names"]
    for key, col in (("df", "df"), ("t", "t"), ("p", "p")):
        got = [fe.loc[n, col] for n in names]
        np.testing.assert_allclose(got, extra[key], rtol=1e-4, err_msg=key)
    if "kroger" in case["id"]:
        np.testing.assert_allclose([fe.loc[n, "se"] for n in names],
                                   case["results"]["fixed"]["se"], rtol=1e-4)


@pytest.mark.parametrize("case", REFS, ids=[c["id"] for c in REFS])
def test_reference_f_tests(ref_fits, case):
    res = ref_fits[case["id"]]
    for ref in case["results"]["extra"]["ftests"]:
        got = ftest(res, ref["terms"])
        assert got["ndf"] == ref["ndf"]
        assert got["F"] == pytest.approx(ref["F"], rel=1e-4), ref["stata"]
        assert got["ddf"] == pytest.approx(ref["ddf"], rel=1e-4), ref["stata"]


def test_dftable_layouts():
    res = ml.fit("mixed yield nitro || block: || variety:, reml dfmethod(kroger)", data=load_data("oats.csv"))
    pvalue = res.table(dftable="pvalue")
    assert "       yield | Coefficient  Std. err.       DF        t    P>|t|" in pvalue
    assert "       nitro |   73.66667    6.78148    53.00    10.86    0.000" in pvalue
    ci = res.table(dftable="ci")
    assert "DF     [95% conf. interval]" in ci and "     5.98     " in ci
