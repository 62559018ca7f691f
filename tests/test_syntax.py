"""Both syntaxes mean the same model: every case with an lme4 formula gives an identical fit."""
from __future__ import annotations

import numpy as np
import pytest

import multilevel as ml
from multilevel.spec import parse
from tests.conftest import load_cases, load_data

PAIRS = [c for c in load_cases("lmm") if c.get("lme4")]


@pytest.mark.parametrize("case", PAIRS, ids=[c["id"] for c in PAIRS])
def test_lme4_formula_gives_the_stata_fit(case):
    data = load_data(case["dataset"])
    stata = ml.fit(case["stata"], data=data)
    lme4 = ml.mixed(case["lme4"], data=data, reml=case["options"]["method"] == "reml")
    assert lme4.loglik == pytest.approx(stata.loglik, abs=1e-6)
    assert list(lme4.fixed.names) == list(stata.fixed.names)
    np.testing.assert_allclose(lme4.fixed.coef, stata.fixed.coef, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(lme4.fixed.se, stata.fixed.se, rtol=1e-4)
    got = sorted(np.concatenate([np.ravel(e.cov) for e in lme4.equations]))
    want = sorted(np.concatenate([np.ravel(e.cov) for e in stata.equations]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-8)
    assert lme4.residual_var == pytest.approx(stata.residual_var, rel=1e-5)


@pytest.mark.parametrize("stata,lme4", [
    ("mixed weight week || id: week, covariance(unstructured)", "weight ~ week + (week | id)"),
    ("mixed weight week || id: week", "weight ~ week + (week || id)"),
    ("mixed weight week || id: week", "weight ~ week + (1 | id) + (0 + week | id)"),
    ("mixed weight week || id:", "weight ~ week + (1 | id)"),
    ("mixed weight week, noconstant || id:", "weight ~ 0 + week + (1 | id)"),
    ("mixed weight week, noconstant || id:", "weight ~ week - 1 + (1 | id)"),
    ("mixed yield nitro || block: || variety:", "yield ~ nitro + (1 | block/variety)"),
])
def test_the_same_spec_from_both_syntaxes(stata, lme4):
    a, b = parse(stata), parse(lme4)
    assert (a.response, a.fixed, a.constant, a.method) == (b.response, b.fixed, b.constant, b.method)
    assert [(lv.group, lv.terms, lv.constant, lv.covariance) for lv in a.levels] == \
           [(lv.group, lv.terms, lv.constant, lv.covariance) for lv in b.levels]


def test_reml_option_and_keyword_agree(pig):
    a = ml.fit("mixed weight week || id:, reml", data=pig)
    b = ml.mixed("weight week || id:", data=pig, reml=True)
    c = ml.mixed("weight ~ week + (1 | id)", data=pig, reml=True)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8) == pytest.approx(c.loglik, abs=1e-8)
    assert a.method == b.method == c.method == "reml"


def test_default_is_ml_as_stata(pig):
    assert ml.mixed("weight ~ week + (1 | id)", data=pig).method == "ml"


def test_factor_names_follow_stata():
    res = ml.fit("mixed Reaction i.Days || Subject:", data=load_data("sleepstudy.csv"))
    assert res.fixed.names == tuple(f"{d}.Days" for d in range(1, 10)) + ("_cons",)
    res = ml.fit("mixed Reaction ib3.Days || Subject:", data=load_data("sleepstudy.csv"))
    assert "3.Days" not in res.fixed.names and "0.Days" in res.fixed.names


def test_stata_abbreviations_parse():
    spec = parse("mixed y x || id: x, cov(un) nocons || g: , reml stddev l(90)")
    assert spec.levels[0].covariance == "unstructured" and not spec.levels[0].constant
    assert spec.method == "reml" and spec.options["level"] == 90.0 and spec.options["stddeviations"]


def test_repeated_level_is_block_diagonal(pig):
    """Stata's repeated levels equal lme4's uncorrelated bars on one factor."""
    a = ml.fit("mixed weight week || id: week, nocons || id:", data=pig)
    b = ml.fit("mixed weight week || id: week", data=pig)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)


def test_factor_variables_in_random_slopes():
    d = load_data("sleepstudy.csv")
    d = d.assign(late=(d.Days >= 5).astype(int) + (d.Days >= 8).astype(int))
    a = ml.fit("mixed Reaction Days || Subject: i.late, cov(un)", data=d)
    manual = d.assign(l1=(d.late == 1).astype(float), l2=(d.late == 2).astype(float))
    b = ml.fit("mixed Reaction Days || Subject: l1 l2, cov(un)", data=manual)
    assert a.equations[0].names == ("1.late", "2.late", "_cons")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
    c = ml.fit("mixed Reaction Days || Subject: ib2.late, cov(un)", data=d)
    assert c.equations[0].names == ("0.late", "1.late", "_cons")
    assert c.loglik == pytest.approx(a.loglik, abs=1e-5)  # a reparametrization of the same model


@pytest.mark.parametrize("stata,formula", [
    ("mixed weight week c.week#c.week || id:", "week + I(week ** 2)"),
    ("mixed weight c.week##c.week || id:", "week + I(week ** 2)"),
    ("mixed y c.x##c.x##i.g || id:", "x + C(g) + I(x ** 2) + x:C(g) + I(x ** 2):C(g)"),
    ("mixed y i.a##c.x || id:", "C(a) + x + C(a):x")])
def test_a_continuous_variable_interacted_with_itself_is_its_power(stata, formula):
    """Stata's c.x#c.x is x² ([U] 11.4.3); formulaic's x:x would be x again (the quadratic
    term was silently dropped). The column is named c.x#c.x."""
    from multilevel.spec import parse
    from multilevel.spec.factor import stata_name

    assert parse(stata).fixed == formula
    assert stata_name("C(g)[T.2]:I(x ** 2)") == "2.g#c.x#c.x" and stata_name("I(week ** 2)") == "c.week#c.week"
