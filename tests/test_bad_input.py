"""Bad input gets a clear error naming the problem; inputs are never modified."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import DataError, SpecError


def test_unknown_variable_is_named_with_a_suggestion(pig):
    with pytest.raises(DataError, match=r"'wek' \(did you mean 'week'\?\)"):
        ml.mixed("weight wek || id:", data=pig)


def test_unknown_command_is_named(pig):
    with pytest.raises(SpecError, match="unknown command 'meqrlogit'; Stata's current command is melogit"):
        ml.fit("meqrlogit weight week || id:", data=pig)
    with pytest.raises(SpecError, match="unknown command 'mixd'; supported: mixed, meglm"):
        ml.fit("mixd weight week || id:", data=pig)
    with pytest.raises(SpecError, match="needs a full command"):
        ml.fit("weight ~ week + (1 | id)", data=pig)


def test_string_response(pig):
    df = pig.assign(w=pig.weight.astype(str))
    with pytest.raises(DataError, match="dependent variable 'w' must be numeric"):
        ml.mixed("w week || id:", data=df)


def test_string_covariate_suggests_factor_notation(pig):
    df = pig.assign(s=np.where(pig.week > 4, "late", "early"))
    with pytest.raises(DataError, match="use i.s"):
        ml.mixed("weight s || id:", data=df)


def test_no_random_effects(pig):
    with pytest.raises(SpecError, match="no random-effects equation"):
        ml.fit("mixed weight week", data=pig)


def test_single_group(pig):
    with pytest.raises(DataError, match="single group"):
        ml.mixed("weight week || id:", data=pig[pig.id == 1])


def test_constant_response(pig):
    with pytest.raises(DataError, match="constant"):
        ml.mixed("weight week || id:", data=pig.assign(weight=1.0))


def test_empty_sample(pig):
    with pytest.raises(DataError, match="no observations"):
        ml.mixed("weight week || id:", data=pig.assign(weight=np.nan))


def test_malformed_command_reports_position(pig):
    with pytest.raises(SpecError, match="position"):
        ml.mixed("weight week || id", data=pig)
    with pytest.raises(SpecError, match="unbalanced"):
        ml.mixed("weight week || id:, cov(un", data=pig)
    with pytest.raises(SpecError, match="unknown option"):
        ml.mixed("weight week || id:, frobnicate", data=pig)
    with pytest.raises(SpecError, match="unknown covariance"):
        ml.mixed("weight week || id: week, cov(diagonal)", data=pig)


def test_lme4_bar_outside_parentheses(pig):
    with pytest.raises(SpecError, match="parentheses"):
        ml.mixed("weight ~ week + 1 | id", data=pig)


def test_input_frame_is_not_modified(pig):
    df = pig.copy()
    df.loc[3, "weight"] = np.nan
    before = df.copy()
    ml.mixed("weight week || id:", data=df)
    ml.fit("mixed weight i.week if week > 2 || id:", data=df)
    pd.testing.assert_frame_equal(df, before)


def test_missing_values_dropped_listwise_and_counted(pig):
    df = pig.copy()
    df.loc[[0, 5, 9], "weight"] = np.nan
    df.loc[[5, 20], "week"] = np.nan
    res = ml.mixed("weight week || id:", data=df)
    assert res.nobs == len(pig) - 4
    assert "4 observations dropped because of missing values" in res.sample_notes
    full = ml.mixed("weight week || id:", data=df.dropna())
    assert res.loglik == pytest.approx(full.loglik, abs=1e-9)


def test_collinear_covariate_is_omitted_and_reported(pig):
    df = pig.assign(week2=2 * pig.week)
    res = ml.mixed("weight week week2 || id:", data=df)
    assert res.fixed.omitted == ("week2",)
    assert "week2 |          0  (omitted)" in str(res)
    assert res.loglik == pytest.approx(ml.mixed("weight week || id:", data=pig).loglik, abs=1e-8)


def test_if_and_in_qualifiers(pig):
    sub = ml.fit("mixed weight week if week <= 5 || id:", data=pig)
    ref = ml.mixed("weight week || id:", data=pig[pig.week <= 5].reset_index(drop=True))
    assert sub.loglik == pytest.approx(ref.loglik, abs=1e-9) and sub.nobs == ref.nobs
    first = ml.fit("mixed weight week in 1/180 || id:", data=pig)
    ref = ml.mixed("weight week || id:", data=pig.iloc[:180].reset_index(drop=True))
    assert first.loglik == pytest.approx(ref.loglik, abs=1e-9)


def test_boundary_fit_is_reported_and_still_tabled():
    """Within-group-centred noise: the ML group variance is exactly at zero."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 10)
    x = rng.standard_normal(300)
    e = rng.standard_normal(300)
    e -= pd.Series(e).groupby(g).transform("mean").to_numpy()
    df = pd.DataFrame({"y": 1 + x + e, "x": x, "g": g})
    with pytest.warns(RuntimeWarning, match="boundary"):
        res = ml.mixed("y x || g:", data=df)
    assert res.equations[0].cov[0, 0] == 0.0
    assert res.lr.stat == pytest.approx(0.0, abs=1e-8)
    # at the boundary the fit is the linear regression: same β as least squares
    X = np.column_stack([x, np.ones(300)])
    np.testing.assert_allclose(res.fixed.coef, np.linalg.lstsq(X, df.y, rcond=None)[0], rtol=1e-6)
    assert "var(_cons) |          0          ." in str(res)


def test_optimizer_backends_agree(pig):
    a = ml.mixed("weight week || id: week, cov(un)", data=pig)
    b = ml.mixed("weight week || id: week, cov(un)", data=pig, optimizer="scipy")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)
    with pytest.raises(ValueError, match="unknown optimizer backend"):
        ml.mixed("weight week || id:", data=pig, optimizer="nope")


def test_near_zero_variance_is_snapped_to_the_boundary(pig):
    """With AR(1) residuals the pig random intercept goes to 0: reported as exactly 0,
    and the likelihood is that of the marginal AR(1) model without the random intercept."""
    with pytest.warns(RuntimeWarning, match="boundary"):
        res = ml.fit("mixed weight week || id:, residuals(ar 1, t(week))", data=pig)
    assert res.equations[0].cov[0, 0] == 0.0
    marginal = ml.fit("mixed weight week || id:, noconstant residuals(ar 1, t(week))", data=pig)
    assert res.loglik == pytest.approx(marginal.loglik, abs=1e-6)


@pytest.mark.parametrize("options,message", [
    ("|| district:, reml", "reml not allowed"), ("|| district:, residuals(independent, by(urban))", "mixed's")])
def test_glmm_options_it_cannot_honour_are_errors_not_ignored(options, message):
    """GLMMs used to fit these as if the option were absent (the same estimates and SEs); weights
    and vce() are fitted (tests/test_glmm_weights.py)."""
    from tests.conftest import load_data

    d = load_data("bangladesh.csv").assign(w=2)
    with pytest.raises(SpecError, match=message):
        ml.fit(f"melogit c_use urban {options}", data=d)
