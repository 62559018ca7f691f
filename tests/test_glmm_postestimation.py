"""GLMM postestimation against outside references (tests/references/glmm_postestimation/).

The references are made by ``make.R`` there: lme4 / ordinal::clmm for the conditional
modes, their SDs, conditional means and residuals; R's integrate() for the posterior
means and SDs, the marginal means and the Anscombe residuals; numerical Hessians of
lme4's deviance (and clmm's vcov) for the ICC standard errors.  R is not needed here.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.spec.errors import DataError, SpecError

ROOT = pathlib.Path(__file__).parent.parent
REF = json.loads((ROOT / "tests/references/glmm_postestimation/glmm_postestimation.json").read_text())["cases"]
DATA = ROOT / "tests" / "data"


def close(a, b, atol):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=atol)


@pytest.fixture(scope="module")
def bangladesh():
    return pd.read_csv(DATA / "bangladesh.csv")


@pytest.fixture(scope="module")
def logit_laplace(bangladesh):
    return ml.melogit("c_use urban age child1 child2 child3 || district:, intmethod(laplace)", data=bangladesh)


@pytest.fixture(scope="module")
def logit_aghq25(bangladesh):
    return ml.melogit("c_use urban age child1 child2 child3 || district:, intpoints(25)", data=bangladesh)


@pytest.fixture(scope="module")
def nested_logit():
    sim = pd.read_csv(ROOT / REF["nested_logit_laplace"]["dataset_path"])
    return ml.melogit("y x || school: || class:, intmethod(laplace)", data=sim)


@pytest.fixture(scope="module")
def cbpp():
    data = pd.read_csv(DATA / "cbpp.csv")
    return ml.melogit("incidence i.period || herd:, binomial(size) intmethod(laplace)", data=data), data


@pytest.fixture(scope="module")
def grouse():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ml.mepoisson("ticks i.year height_s || location: || brood:, intmethod(laplace)",
                            data=pd.read_csv(DATA / "grouseticks.csv"))


@pytest.fixture(scope="module")
def wine():
    return ml.meologit("rating warm contact || judge:, intmethod(laplace)", data=pd.read_csv(DATA / "wine.csv"))


# --- the fits are the references' fits ---------------------------------------------------------
@pytest.mark.parametrize("fixture, case, tol", [
    ("logit_laplace", "bangladesh_laplace", 1e-6), ("logit_aghq25", "bangladesh_aghq25", 1e-6),
    ("nested_logit", "nested_logit_laplace", 1e-6), ("wine", "wine_clmm_laplace", 1e-6)])
def test_same_optimum_as_reference(request, fixture, case, tol):
    assert abs(request.getfixturevalue(fixture).loglik - REF[case]["loglik"]) < tol


# --- bernoulli logit, Laplace: lme4 -------------------------------------------------------------
def test_ebmodes_and_sds_are_lme4_condvar(logit_laplace):
    c = REF["bangladesh_laplace"]
    tab = logit_laplace.random_effects_table("ebmodes")
    assert [str(g) for g in tab.group] == c["groups"]
    close(tab.estimate, c["ebmodes"], 2e-5)
    close(tab.se, c["ebmodes_sd"], 2e-5)
    re = logit_laplace.predict("reffects", conditional="ebmodes")
    close(re["district:_cons"], np.asarray(c["ebmodes"])[pd.factorize(pd.read_csv(DATA / "bangladesh.csv")
                                                                     .district)[0]], 2e-5)


@pytest.mark.parametrize("kind", ["mu", "eta", "xb", "pearson", "deviance", "anscombe"])
def test_conditional_predictions_logit(logit_laplace, kind):
    c = REF["bangladesh_laplace"]
    close(logit_laplace.predict(kind, conditional="ebmodes"), c[kind], 2e-5)


def test_laplace_ebmeans_are_the_modes_and_fixedonly(logit_laplace):
    c = REF["bangladesh_laplace"]
    close(logit_laplace.predict(), c["mu"], 2e-5)              # default: ebmeans with the fit's 1 point
    close(logit_laplace.predict("mu", fixedonly=True), c["mu_fixedonly"], 2e-5)
    close(logit_laplace.predict("pr", conditional="fixedonly"), c["mu_fixedonly"], 2e-5)


# --- converged ML: posterior means, marginal means, ICC ----------------------------------------
def test_ebmeans_are_posterior_means_and_sds(logit_aghq25):
    c = REF["bangladesh_aghq25"]
    tab = logit_aghq25.random_effects_table()
    close(tab.estimate, c["ebmeans"], 1e-5)
    close(tab.se, c["ebmeans_sd"], 1e-5)
    close(logit_aghq25.predict("reses").iloc[:, 0].groupby(pd.read_csv(DATA / "bangladesh.csv").district)
          .first(), c["ebmeans_sd"], 1e-5)


def test_marginal_mean_is_the_integral(logit_aghq25):
    close(logit_aghq25.predict("mu", marginal=True), REF["bangladesh_aghq25"]["marginal_mu"], 1e-5)


def test_icc_logit_latent_scale(logit_aghq25):
    c = REF["bangladesh_aghq25"]
    icc = logit_aghq25.estat("icc")
    assert icc.levels == ("district",)
    assert abs(icc.icc[0] - c["icc"]) < 1e-6
    assert abs(icc.se[0] / c["icc_se"] - 1) < 2e-3
    v = logit_aghq25.equations[0].cov[0, 0]
    assert icc.icc[0] == pytest.approx(v / (v + np.pi ** 2 / 3), rel=1e-12)
    assert icc.lower[0] < icc.icc[0] < icc.upper[0]
    assert "district |   .0614" in str(icc)


def test_icc_nested_levels_are_conditional(nested_logit):
    c = REF["nested_logit_laplace"]
    icc = nested_logit.estat("icc")
    assert icc.levels == ("school", "class|school")
    close(icc.icc, [c["icc_school"], c["icc_class"]], 1e-5)
    np.testing.assert_allclose(icc.se, [c["icc_school_se"], c["icc_class_se"]], rtol=5e-3)


def test_nested_logit_modes_and_means(nested_logit):
    c = REF["nested_logit_laplace"]
    tab = nested_logit.random_effects_table("ebmodes")
    school, klass = tab[tab.level == "school"], tab[tab.level == "class"]
    close(school.estimate, c["school_ebmodes"], 2e-5)
    close(school.se, c["school_ebmodes_sd"], 2e-5)
    ref = pd.Series(c["class_ebmodes"], index=c["class_groups"])
    sd = pd.Series(c["class_ebmodes_sd"], index=c["class_groups"])
    key = klass.group.str.split(":").str[-1]
    close(klass.estimate, ref[key].to_numpy(), 2e-5)
    close(klass.se, sd[key].to_numpy(), 2e-5)
    close(nested_logit.predict(), c["mu"], 2e-5)


# --- binomial with trials ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pr", "mu", "xb", "pearson", "deviance", "anscombe"])
def test_binomial_predictions(cbpp, kind):
    res, _ = cbpp
    close(res.predict(kind, conditional="ebmodes"), REF["cbpp_laplace"][kind], 2e-5)


def test_binomial_effects_and_marginal(cbpp):
    res, _ = cbpp
    c = REF["cbpp_laplace"]
    modes = res.random_effects_table("ebmodes")
    close(modes.estimate, c["ebmodes"], 2e-5)
    close(modes.se, c["ebmodes_sd"], 2e-5)
    means = res.random_effects_table("ebmeans", intpoints=30)
    close(means.estimate, c["ebmeans"], 1e-5)
    close(means.se, c["ebmeans_sd"], 1e-5)
    close(res.predict("pr", marginal=True), c["marginal_pr"], 2e-5)


# --- Poisson, two nested levels ------------------------------------------------------------------
def test_nested_poisson_modes_and_sds(grouse):
    c = REF["grouseticks_nested_laplace"]
    tab = grouse.random_effects_table("ebmodes")
    for level in ("location", "brood"):
        part = tab[tab.level == level]
        key = part.group.astype(str).str.split(":").str[-1]
        ref = pd.DataFrame({"m": c[f"{level}_ebmodes"], "s": c[f"{level}_ebmodes_sd"]},
                           index=c[f"{level}_groups"]).loc[key]
        close(part.estimate, ref.m, 5e-5)
        close(part.se, ref.s, 5e-5)


@pytest.mark.parametrize("kind", ["mu", "eta", "xb", "pearson", "deviance", "anscombe"])
def test_nested_poisson_predictions(grouse, kind):
    c = REF["grouseticks_nested_laplace"]
    tol = 5e-5 * max(1.0, float(np.max(np.abs(c[kind]))))
    close(grouse.predict(kind, conditional="ebmodes"), c[kind], tol)


def test_nested_poisson_marginal(grouse):
    m = grouse.predict("mu", marginal=True).to_numpy()
    np.testing.assert_allclose(m, REF["grouseticks_nested_laplace"]["marginal_mu"], rtol=5e-5)


# --- ordinal --------------------------------------------------------------------------------------------
def test_ordinal_probabilities(wine):
    c = REF["wine_clmm_laplace"]
    modes = wine.random_effects_table("ebmodes")
    close(modes.estimate, c["ebmodes"], 5e-5)
    close(modes.se, c["ebmodes_sd"], 5e-5)
    pr = wine.predict("pr", conditional="ebmodes")
    assert list(pr.columns) == ["pr1", "pr2", "pr3", "pr4", "pr5"]
    close(pr, c["pr"], 2e-5)
    close(wine.predict("pr", fixedonly=True), c["pr_fixedonly"], 2e-5)
    close(wine.predict("pr", marginal=True), c["marginal_pr"], 2e-5)
    close(wine.predict("pr", outcome=3, conditional="ebmodes"), np.asarray(c["pr"])[:, 2], 2e-5)
    close(wine.predict("pr", outcome="#3", conditional="ebmodes"), np.asarray(c["pr"])[:, 2], 2e-5)


def test_ordinal_icc(wine):
    c = REF["wine_clmm_laplace"]
    icc = wine.estat("icc")
    assert abs(icc.icc[0] - c["icc"]) < 1e-5
    assert abs(icc.se[0] / c["icc_se"] - 1) < 5e-3


# --- new data, estat ic / group, output -------------------------------------------------------------
def test_new_data_known_and_new_groups(logit_laplace, bangladesh):
    new = bangladesh.iloc[:3].copy()
    new.loc[new.index[2], "district"] = 999
    mu = logit_laplace.predict("mu", data=new)
    own = logit_laplace.predict("mu")
    assert mu.iloc[0] == pytest.approx(own.iloc[0], abs=1e-12)
    fixed = logit_laplace.predict("mu", data=new, fixedonly=True)
    assert mu.iloc[2] == pytest.approx(fixed.iloc[2], abs=1e-12)       # a new group: b = 0
    se = logit_laplace.predict("reses", data=new)
    assert se.iloc[2, 0] == pytest.approx(np.sqrt(logit_laplace.equations[0].cov[0, 0]))
    with pytest.raises(DataError, match="child3"):
        logit_laplace.predict("mu", data=new.drop(columns="child3"))


def test_estat_ic_and_group(logit_laplace):
    ic = logit_laplace.estat("ic")
    k = 7
    assert ic.df == k
    assert ic.aic == pytest.approx(-2 * REF["bangladesh_laplace"]["loglik"] + 2 * k, abs=1e-5)
    assert ic.bic == pytest.approx(-2 * REF["bangladesh_laplace"]["loglik"] + k * np.log(1934), abs=1e-5)
    g = logit_laplace.estat("group").to_frame()
    assert g.loc["district"].tolist() == [60, 2, pytest.approx(1934 / 60), 118]
    assert "var(_cons)" in str(logit_laplace.estat("sd", variance=True))


def test_html_has_the_numbers_of_the_text(logit_laplace):
    html, text = logit_laplace._repr_html_(), str(logit_laplace)
    for token in ["-1206.8", "Integration method", "laplace"]:
        assert token in html
    for number in re.findall(r"-?\d*\.\d{5,}", text):
        assert number in html, number


def test_html_eform(cbpp):
    res, _ = cbpp
    from multilevel.output.glmm_html import render_html

    html = render_html(res, **{"or": True})
    text = res.table(**{"or": True})
    assert "Odds ratio" in html and "Odds ratio" in text
    for number in re.findall(r"\d*\.\d{5,}", text):
        assert number in html, number


def test_iteration_log(logit_laplace):
    log = logit_laplace.iteration_log()
    lines = [ln for ln in log.splitlines() if ln.startswith("Iteration")]
    assert log.startswith("Fitting fixed-effects model:")
    assert "Fitting full model:" in log
    values = [float(ln.split("=")[1]) for ln in lines[1:]]
    assert values == sorted(values)                                   # improvements only
    assert values[-1] == pytest.approx(logit_laplace.loglik, abs=1e-3)
    assert float(lines[0].split("=")[1]) == pytest.approx(logit_laplace.ll_fixed_only, abs=1e-3)


# --- bad input ---------------------------------------------------------------------------------------
def test_bad_requests(logit_laplace, wine, grouse, logit_aghq25):
    with pytest.raises(ValueError, match="unknown prediction"):
        logit_laplace.predict("bogus")
    with pytest.raises(SpecError, match="marginal"):
        logit_laplace.predict("eta", marginal=True)
    with pytest.raises(SpecError, match="fixedonly"):
        logit_laplace.predict("reffects", fixedonly=True)
    with pytest.raises(SpecError, match="ordinal"):
        wine.predict("mu")
    with pytest.raises(SpecError, match="ordinal"):
        wine.predict("pearson")
    with pytest.raises(SpecError, match="outcome"):
        wine.predict("pr", outcome=9)
    with pytest.raises(SpecError, match="logit and probit"):
        grouse.estat("icc")
    with pytest.raises(SpecError, match="ebmodes"):
        grouse.predict("reffects", intpoints=7)
    with pytest.raises(SpecError, match="after mixed"):
        logit_aghq25.estat("recovariance")


def test_startvalues_iv_refused(bangladesh):
    with pytest.raises(SpecError, match="startvalues"):
        ml.melogit("c_use urban || district:, startvalues(iv)", data=bangladesh)


def test_docs_page_examples_run():
    from tests.docs_pages import fenced, run_page

    assert len(fenced("glmm.md", "python")) >= 3
    run_page("glmm.md")
