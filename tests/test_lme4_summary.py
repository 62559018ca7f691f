"""``res.summary(style="lme4")`` against lme4's own printed ``summary()``.

The references in ``tests/references/presentation`` are ``print(summary(m))`` of
lme4 1.1-31 (R 4.2.2) for the same models and data, written by ``make.R`` in
that folder (bobyqa to a tight tolerance, so that lme4 reaches the optimum
our fits reach).  Every line must agree except ``Data:`` and ``Control:``
(our results do not know the data's name), the class in the title, and the
formula where lme4 writes its own expansion of the bars.  R's number
formatting is checked on its own against ``format()`` and ``abbreviate()``.
"""
from __future__ import annotations

import json
import pathlib

import pytest

import multilevel as ml
from multilevel.output.r_fmt import abbreviate, format_num

from .conftest import load_data

REF = pathlib.Path(__file__).parent / "references" / "presentation"

# (reference file, formula as lme4 was given it, data, REML, our formula line when it differs)
CASES = {
    "lme4_pig_ri_ml": ("weight ~ week + (1 | id)", "pig", False, None),
    "lme4_pig_ri_reml": ("weight ~ week + (1 | id)", "pig", True, None),
    "lme4_sleepstudy_rs_reml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", True, None),
    "lme4_sleepstudy_rs_ml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", False, None),
    "lme4_sleepstudy_ind_reml": ("Reaction ~ Days + (Days || Subject)", "sleepstudy", True,
                                 "Reaction ~ Days + (Days || Subject)"),
    "lme4_pastes_nested_ml": ("strength ~ 1 + (1 | batch/cask)", "pastes", False,
                              "strength ~ 1 + (1 | batch) + (1 | cask:batch)"),
    "lme4_penicillin_crossed_reml": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", True, None),
}

# the same models in Stata's syntax
STATA = {
    "lme4_pig_ri_ml": "weight week || id:",
    "lme4_sleepstudy_rs_reml": "Reaction Days || Subject: Days, covariance(unstructured) reml",
    "lme4_sleepstudy_ind_reml": "Reaction Days || Subject: Days, reml",
    "lme4_pastes_nested_ml": "strength || batch: || cask:",
    "lme4_penicillin_crossed_reml": "diameter || _all: R.plate || sample:, reml",
}


def expected(name: str) -> list[str]:
    lines = (REF / f"{name}.txt").read_text().splitlines()
    lines = [ln for ln in lines if not ln.startswith(("   Data:", "Control:"))]
    lines[0] = lines[0].replace("['lmerMod']", "['MixedResults']")
    formula = CASES[name][3]
    if formula:
        lines[1] = f"Formula: {formula}"
    return lines


@pytest.fixture(scope="module")
def fits():
    cache = {}

    def get(name, stata=False):
        if (name, stata) not in cache:
            formula, data, reml, _ = CASES[name]
            frame = load_data(f"{data}.csv")
            cache[name, stata] = (ml.mixed(STATA[name], data=frame) if stata
                                  else ml.mixed(formula, data=frame, reml=reml))
        return cache[name, stata]
    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_matches_lme4(fits, name):
    assert str(fits(name).summary(style="lme4")).splitlines() == expected(name)


@pytest.mark.parametrize("name", sorted(STATA))
def test_stata_syntax_gives_the_same_summary(fits, name):
    assert str(fits(name, stata=True).summary(style="lme4")).splitlines() == expected(name)


def test_summary_styles(fits):
    res = fits("lme4_pig_ri_ml")
    assert str(res.summary()) == res.table() == str(res.summary(style="stata"))
    lme4 = res.summary(style="lme4")
    assert repr(lme4) == str(lme4) and "<pre>" in lme4._repr_html_()
    with pytest.raises(ValueError, match="style"):
        res.summary(style="sas")


def r_format_cases():
    return json.loads((REF / "r_format.json").read_text())


@pytest.mark.parametrize("case", r_format_cases()["format"], ids=lambda c: f"{c['x'][:2]}-{c['digits']}")
def test_r_format(case):
    assert format_num(case["x"], case["digits"]) == case["out"]


@pytest.mark.parametrize("minlength", [4, 6, 11])
def test_r_abbreviate(minlength):
    ref = r_format_cases()["abbreviate"]
    assert abbreviate(ref["names"], minlength) == ref[f"min{minlength}"]


def test_summary_notes_what_lme4_cannot_say(pig):
    weighted = ml.fit("mixed weight week [fw=w] || id:, vce(cluster id)", data=pig.assign(w=1 + pig.week % 3))
    lines = str(weighted.summary(style="lme4")).splitlines()
    assert lines[2] == "Weights: [fw=w]" and lines[-1] == "Std. Error: robust, 48 clusters in id"
    ar = ml.fit("mixed follicles sin1 cos1 || mare:, residuals(ar 1, t(time))", data=load_data("ovary.csv"))
    assert str(ar.summary(style="lme4")).splitlines()[-1].startswith("Residual structure: AR(1)")
    exch = ml.fit("mixed weight week || id: week, covariance(exchangeable)", data=pig)
    text = str(exch.summary(style="lme4"))
    assert "Corr" in text and text.splitlines()[-1].startswith("covariance(exchangeable) for id")
