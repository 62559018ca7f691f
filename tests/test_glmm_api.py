"""GLMM commands: syntax equivalence, glmer, options, output, and bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import DataError, SpecError
from tests.conftest import load_data


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return load_data("cbpp.csv")


@pytest.fixture(scope="module")
def cbpp_laplace(cbpp):
    return ml.fit("meglm incidence i.period || herd:, family(binomial size) link(logit) intmethod(laplace)", cbpp)


@pytest.fixture(scope="module")
def small_binary() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=len(g))
    y = (rng.random(len(g)) < 1 / (1 + np.exp(-(0.5 * x + rng.normal(0, 1, 12)[g])))).astype(float)
    return pd.DataFrame({"g": g, "x": x, "y": y, "n": 3.0, "c": rng.integers(0, 3, len(g))})


def test_glmer_cbind_is_meglm_binomial(cbpp, cbpp_laplace):
    res = ml.glmer("cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", cbpp, family="binomial")
    a, b = res.to_dict(), cbpp_laplace.to_dict()
    assert a["loglik"] == pytest.approx(b["loglik"], abs=1e-6)
    assert np.allclose(a["fixed"]["coef"], b["fixed"]["coef"], rtol=1e-4)
    assert a["fixed"]["names"] == b["fixed"]["names"]


def test_glmer_proportion_with_weights(cbpp, cbpp_laplace):
    df = cbpp.assign(prop=cbpp["incidence"] / cbpp["size"])
    res = ml.glmer("prop ~ factor(period) + (1 | herd)", df, family="binomial", weights="size")
    assert res.loglik == pytest.approx(cbpp_laplace.loglik, abs=1e-6)


def test_lme4_syntax_in_a_stata_command_function(small_binary):
    a = ml.melogit("y x || g:, intmethod(laplace)", small_binary)
    b = ml.melogit("y ~ x + (1 | g)", small_binary, intmethod="laplace")
    c = ml.glmer("y ~ x + (1 | g)", small_binary, family="binomial")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7) == pytest.approx(c.loglik, abs=1e-7)
    assert a.intmethod == "laplace" and c.intmethod == "laplace"


def test_to_dict_has_no_residual_and_reports_the_integration(cbpp_laplace):
    d = cbpp_laplace.to_dict()
    assert d["residual"] is None
    assert d["extra"]["k"] == 5 and d["extra"]["n_groups"] == {"herd": 15}
    assert d["random"][0]["terms"] == ["_cons"]


def test_stata_header_and_lr_line(small_binary):
    text = str(ml.melogit("y x || g:", small_binary))
    assert text.startswith("Mixed-effects logistic regression               Number of obs     =        120")
    assert "Integration method: mvaghermite                 Integration pts.  =          7" in text
    assert "   var(_cons)|" in text
    assert "LR test vs. logistic model: chibar2(01) =" in text


def test_odds_ratio_display_keeps_coefficients(small_binary):
    res = ml.melogit("y x || g:, or intmethod(laplace)", small_binary)
    text = str(res)
    assert "Odds ratio" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("x |"))
    assert float(row.split("|")[1].split()[0]) == pytest.approx(np.exp(res.fixed.coef[0]), rel=1e-5)
    assert res.to_dict()["fixed"]["coef"][0] == pytest.approx(res.fixed.coef[0])


@pytest.mark.filterwarnings("ignore:a random-effects variance")
def test_binomial_trials_as_a_number_and_a_variable(small_binary):
    df = small_binary.assign(s=np.minimum(small_binary["c"], 3.0))
    a = ml.melogit("s x || g:, binomial(3) intmethod(laplace)", df)
    b = ml.melogit("s x || g:, binomial(n) intmethod(laplace)", df)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    assert a.family == "binomial"


def test_exposure_is_a_log_offset():
    ep = load_data("epilepsy.csv").assign(t=2.0, lt=np.log(2.0))
    a = ml.mepoisson("seizures treat lbas || subject:, exposure(t) intmethod(laplace)", ep)
    b = ml.mepoisson("seizures treat lbas || subject:, offset(lt) intmethod(laplace)", ep)
    c = ml.mepoisson("seizures treat lbas || subject:, intmethod(laplace)", ep)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8) == pytest.approx(c.loglik, abs=1e-6)
    i = list(a.fixed.names).index("_cons")
    assert a.fixed.coef[i] == pytest.approx(c.fixed.coef[i] - np.log(2.0), abs=1e-4)


def test_missing_trials_are_dropped_listwise(cbpp):
    df = cbpp.astype({"size": float})
    df.loc[0, "size"] = np.nan
    res = ml.fit("meglm incidence i.period || herd:, family(binomial size) intmethod(laplace)", df)
    assert res.nobs == len(cbpp) - 1


# --- bad input ----------------------------------------------------------------------------------


def test_non_binary_response_to_melogit(cbpp):
    with pytest.raises(DataError, match=r"melogit: the dependent variable must be 0/1.*binomial\(n\)"):
        ml.melogit("incidence i.period || herd:", cbpp)


def test_negative_counts_to_mepoisson(cbpp):
    with pytest.raises(DataError, match="non-negative count"):
        ml.mepoisson("y period || herd:", cbpp.assign(y=cbpp["incidence"] - 3))


def test_non_integer_trials(cbpp):
    with pytest.raises(DataError, match="non-negative integer"):
        ml.meglm("incidence i.period || herd:", cbpp.assign(size=cbpp["size"] + 0.5), family="binomial size")


def test_impossible_family_link_pair(cbpp):
    with pytest.raises(SpecError, match=r"family\(poisson\) cannot be combined with link\(probit\)"):
        ml.fit("meglm incidence i.period || herd:, family(poisson) link(probit)", cbpp)
    with pytest.raises(SpecError, match="does not take family"):
        ml.fit("mepoisson incidence i.period || herd:, family(gamma)", cbpp)


def test_intpoints_too_large_for_the_dimension(small_binary):
    df = small_binary.assign(z=small_binary["x"] ** 2, w=np.cos(small_binary["x"]))
    with pytest.raises(SpecError, match=r"intpoints\(12\) with 4 random effects .* 12\^4 = 20,736"):
        ml.melogit("y x || g: x z w, intpoints(12)", df)
    with pytest.raises(SpecError, match="between 1 and 128"):
        ml.melogit("y x || g:, intpoints(500)", small_binary)


def test_adaptive_quadrature_over_crossed_effects_asks_for_laplace(small_binary):
    with pytest.raises(SpecError, match=r"crossed random effects .* intmethod\(laplace\)"):
        ml.melogit("y x || _all: R.c || g:", small_binary)


def test_unknown_keyword(small_binary):
    with pytest.raises(TypeError, match="unknown keyword"):
        ml.melogit("y x || g:", small_binary, nonsense=1)


def test_zero_variance_is_warned():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(10), 20)
    df = pd.DataFrame({"g": g, "y": rng.poisson(2.0, len(g)).astype(float)})
    df.loc[:, "y"] = np.tile(df["y"].to_numpy()[:20], 10)    # every group identical
    with pytest.warns(RuntimeWarning, match="estimated at zero"):
        res = ml.mepoisson("y || g:, intmethod(laplace)", df)
    assert res.equations[0].cov[0, 0] < 1e-6


def test_separation_is_warned(small_binary):
    df = small_binary.assign(sep=small_binary["y"] * 2.0 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(RuntimeWarning, match="separation"):
            ml.melogit("y sep || g:, intmethod(laplace)", df)


def test_exposure_and_offset_rows_as_stata():
    """Stata lists the constrained exposure/offset variable under the coefficients."""
    g = load_data("grouseticks.csv")
    g = g.assign(expo=np.exp(g["height_s"] / 3) + 0.5)
    out = str(ml.fit("mepoisson ticks height_s, exposure(expo) || brood:", data=g))
    assert "\n    ln(expo) |          1  (exposure)\n" in out
    out = str(ml.fit("mepoisson ticks, offset(height_s) || brood:", data=g))
    assert "\n    height_s |          1  (offset)\n" in out
