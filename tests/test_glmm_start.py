"""Start values of the GLMM commands: ``startvalues()``, ``startgrid``, ``from()``, ``noestimate``.

* The optimum does not depend on the start: every ``glmm`` conformance case (lme4 / glmmTMB /
  own R quadrature references) is refitted from other starts and compared with the shared
  checker (SCHEMA.md tolerances).
* ``noestimate`` gives the log likelihood at the given values: lme4's deviance function at the
  same (θ, β) (``tests/references/glmm_start``) and a direct dense Laplace computation.
* The iteration log starts at the given values.
"""
from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

import multilevel as ml
from multilevel.spec import SpecError
from tests.conformance.conformance_check import compare
from tests.conftest import load_cases, load_data

CASES = {c["id"]: c for c in load_cases("glmm")}
REF = json.loads((pathlib.Path(__file__).parent / "references" / "glmm_start" / "glmm_start.json").read_text())


def _data(case):
    df = load_data(case["dataset"])
    return df.query(case["subset"]).reset_index(drop=True) if case.get("subset") else df


def _with(cmd: str, options: str) -> str:
    return cmd + ("" if "," in cmd.split("||")[-1] else ",") + " " + options


@pytest.fixture(scope="module")
def grouse() -> pd.DataFrame:
    df = load_data("grouseticks.csv")
    return df.assign(expo=np.exp(df.height_s / 3) + 0.5)


@pytest.fixture(scope="module")
def bangladesh() -> pd.DataFrame:
    return load_data("bangladesh.csv")


# --- the optimum does not depend on the start -----------------------------------------------
@pytest.mark.parametrize("case_id", sorted(CASES))
@pytest.mark.parametrize("start", ["startvalues(zero)", "startvalues(constantonly)"])
def test_optimum_does_not_depend_on_the_start(case_id, start):
    case = CASES[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ml.fit(_with(case["stata"], start), _data(case))
    assert compare(case, res.to_dict()) == [], (case_id, start)


@pytest.mark.parametrize("case_id", ["glmm_grouseticks_poisson_nested_laplace", "glmm_epilepsy_nbinom2_ri_laplace",
                                     "glmm_wine_ologit_ri_aghq7"])
def test_startgrid_and_from_a_previous_fit_reach_the_same_optimum(case_id):
    case = CASES[case_id]
    df = _data(case)
    grid = ml.fit(_with(case["stata"], "startgrid(0.01 1 100)"), df)
    assert compare(case, grid.to_dict()) == []
    command, rest = case["stata"].split(None, 1)
    warm = getattr(ml, command)(rest, df, from_=grid)
    assert compare(case, warm.to_dict()) == []
    if "laplace" in case["stata"]:     # the one-factor quadrature fit logs its Laplace stage first
        assert warm.optsummary.fitlog[0][1] == pytest.approx(-2 * grid.loglik, rel=1e-6)


def test_from_dict_overrides_the_method_and_keeps_the_optimum(bangladesh):
    case = CASES["glmm_bangladesh_logit_ri_laplace"]
    formula = case["stata"].split(None, 1)[1].split(",")[0]
    start = {"urban": 2.0, "_cons": 1.0, "var(_cons[district])": 4.0}
    res = ml.melogit(formula, bangladesh, intmethod="laplace", from_=start)
    assert compare(case, res.to_dict()) == []
    x0 = res.optsummary.fitlog[0][0]
    names = list(res.fixed.names)
    assert x0[names.index("urban")] == 2.0 and x0[names.index("_cons")] == 1.0
    assert x0[-1] ** 2 == pytest.approx(4.0)


def test_from_a_fit_of_another_model_uses_the_matching_names(bangladesh):
    big = ml.melogit("c_use urban age child1 || district:", bangladesh)
    small = ml.melogit("c_use urban || district:", bangladesh, from_=big, noestimate=True)
    assert small.fixed.coef[0] == big.fixed.coef[0]
    assert small.equations[0].cov[0, 0] == pytest.approx(big.equations[0].cov[0, 0], rel=1e-12)


# --- noestimate: the log likelihood at the given values ---------------------------------------
def _from_text(point) -> str:
    items = {("_cons" if k == "(Intercept)" else k): v for k, v in point["beta"].items()}
    items.update({f"var(_cons[{ {'brood:location': 'location>brood'}.get(k, k) }])": v
                  for k, v in point["vars"].items()})
    return " ".join(f"{k}={v!r}" for k, v in items.items())


@pytest.mark.parametrize("point", REF["points"], ids=[p["id"] for p in REF["points"]])
def test_noestimate_loglik_equals_lme4_devfun(point, bangladesh, grouse):
    df = bangladesh if point["id"].startswith("bangladesh") else grouse
    res = ml.fit(point["stata"] + f" noestimate from({_from_text(point)})", df)
    # lme4's PIRLS (tolPwrss 1e-12) leaves ~1e-5 in the nested Poisson case; the direct
    # computation below agrees to 1e-10
    assert res.loglik == pytest.approx(point["loglik"], abs=2e-5 if "nested" in point["id"] else 1e-8)
    assert res.fixed.coef[list(res.fixed.names).index("_cons")] == point["beta"]["(Intercept)"]
    assert res.optsummary.n_evals == 1 and "noestimate" in " ".join(res.warnings)


def _dense_laplace(eta0, y, Z, loglik) -> float:
    """Laplace approximation by Newton on the joint mode of u ~ N(0, I), dense algebra."""
    u = np.zeros(Z.shape[1])
    for _ in range(100):
        mu = np.exp(eta0 + Z @ u)
        H = Z.T @ (Z * mu[:, None]) + np.eye(len(u))
        u = u + np.linalg.solve(H, Z.T @ (y - mu) - u)
    mu = np.exp(eta0 + Z @ u)
    H = Z.T @ (Z * mu[:, None]) + np.eye(len(u))
    return loglik(eta0 + Z @ u) - 0.5 * u @ u - 0.5 * np.linalg.slogdet(H)[1]


def test_noestimate_nested_poisson_equals_a_direct_laplace(grouse):
    point = next(p for p in REF["points"] if "nested" in p["id"])
    res = ml.fit(point["stata"] + f" noestimate from({_from_text(point)})", grouse)
    eta0 = 0.2 - 1.0 * grouse.height_s.to_numpy() + np.log(grouse.expo.to_numpy())
    y = grouse.ticks.to_numpy(dtype=float)
    loc = pd.factorize(grouse.location)[0]
    brood = pd.factorize(grouse.location.astype(str) + ":" + grouse.brood.astype(str))[0]
    Z = np.zeros((len(y), loc.max() + brood.max() + 2))
    Z[np.arange(len(y)), loc] = np.sqrt(point["vars"]["location"])
    Z[np.arange(len(y)), loc.max() + 1 + brood] = np.sqrt(point["vars"]["brood:location"])
    direct = _dense_laplace(eta0, y, Z, lambda eta: np.sum(y * eta - np.exp(eta) - special.gammaln(y + 1)))
    assert res.loglik == pytest.approx(direct, abs=1e-9)


# --- the iteration log starts at the given values ---------------------------------------------
def _first_full_iteration(res) -> float:
    log = res.iteration_log().split("Fitting full model:")[1]
    return float(log.split("log likelihood =")[1].split()[0])


@pytest.mark.filterwarnings("ignore:a random-effects variance is estimated at zero")
def test_iteration_log_starts_at_the_given_values(bangladesh, grouse):
    point = REF["points"][0]                          # one factor, Laplace: the Newton path
    res = ml.fit(point["stata"] + f" from({_from_text(point)})", bangladesh)
    assert _first_full_iteration(res) == pytest.approx(point["loglik"], rel=1e-7)
    nested = "mepoisson ticks height_s || location: || brood:, exposure(expo)"   # adaptive quadrature
    given = "from(_cons=0.2 height_s=-1 var(_cons[location])=0.2 var(_cons[brood])=1.5)"
    at = ml.fit(f"{nested} noestimate {given}", grouse)
    fitted = ml.fit(f"{nested} {given}", grouse)
    assert _first_full_iteration(fitted) == pytest.approx(at.loglik, rel=1e-7)
    assert fitted.loglik > at.loglik


# --- the zero-variance warning names the right levels -------------------------------------------
def test_zero_variance_warning_names_only_that_level(grouse):
    with pytest.warns(RuntimeWarning, match=r"estimated at zero \(levels: location\)"):
        res = ml.fit("mepoisson ticks height_s || location: || brood:, exposure(expo)", grouse)
    var = {e.label: e.cov[0, 0] for e in res.equations}
    assert var["location"] < 1e-8 and var["brood"] == pytest.approx(1.724, abs=2e-3)
    assert res.fixed.se[0] == pytest.approx(0.14063, rel=1e-3)


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,message", [
    ("startvalues(iv)", "startvalues\\(iv\\) is not available"),
    ("startvalues(bogus)", "not valid"),
    ("startgrid(-1 2)", "positive"),
    ("from(urban=1 nosuch=2)", "unknown parameter.*nosuch"),
    ("from(urban)", "name=value"),
    ("from(var(_cons[district])=-1)", "not positive definite"),
])
def test_bad_start_options(options, message, bangladesh):
    with pytest.raises((SpecError, ValueError), match=message):
        ml.fit(f"melogit c_use urban || district:, {options}", bangladesh)


def test_noestimate_far_from_the_optimum_has_missing_standard_errors(bangladesh):
    res = ml.fit("melogit c_use urban || district:, noestimate from(_cons=800)", bangladesh)
    assert np.isfinite(res.loglik) and res.loglik < -1e5
    assert res.fixed.coef[1] == 800


def test_mixed_refuses_glmm_start_options():
    pig = load_data("pig.csv")
    with pytest.raises(SpecError, match="GLMM commands"):
        ml.fit("mixed weight week || id:, from(week=6)", pig)


# --- few-point mean-variance quadrature (a LinAlgError reported on grouseticks with exposure) ---------
def _mv_aghq_direct(eta0, y, groups, sd, points) -> float:
    """Mean–variance adaptive Gauss–Hermite rule per group, started at the mode and curvature and
    iterated to its fixed point, with a plain loop over the groups (Poisson, scalar random intercept)."""
    t, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    total = 0.0
    for g in np.unique(groups):
        e, yy = eta0[groups == g], y[groups == g]
        m = 0.0
        for _ in range(100):                      # start at the mode and curvature
            mu = np.exp(e + sd * m)
            m += (sd * (yy - mu).sum() - m) / (1 + sd ** 2 * mu.sum())
        s = 1.0 / np.sqrt(1.0 + sd ** 2 * np.exp(e + sd * m).sum())
        for _ in range(500):
            u = m + s * t
            eta = e[:, None] + sd * u
            la = np.log(w) + 0.5 * t ** 2 - 0.5 * u ** 2 + (yy[:, None] * eta - np.exp(eta)
                                                              - special.gammaln(yy + 1)[:, None]).sum(0)
            p = np.exp(la - special.logsumexp(la))
            m_new = p @ u
            s_new = np.sqrt(p @ (u - m_new) ** 2)
            done = abs(m_new - m) + abs(s_new - s) < 1e-12
            m, s = m_new, s_new
            if done:
                break
        u = m + s * t
        eta = e[:, None] + sd * u
        la = np.log(w) + 0.5 * t ** 2 - 0.5 * u ** 2 + (yy[:, None] * eta - np.exp(eta)
                                                          - special.gammaln(yy + 1)[:, None]).sum(0)
        total += special.logsumexp(la) + np.log(s)
    return total


def test_few_point_adaptive_quadrature_with_exposure_fits(grouse):
    res = ml.fit("mepoisson ticks height_s || brood:, exposure(expo) intpoints(3)", grouse)
    eta0 = res.fixed.coef[1] + res.fixed.coef[0] * grouse.height_s.to_numpy() + np.log(grouse.expo.to_numpy())
    sd = np.sqrt(res.equations[0].cov[0, 0])
    direct = _mv_aghq_direct(eta0, grouse.ticks.to_numpy(dtype=float), grouse.brood.to_numpy(), sd, 3)
    assert res.loglik == pytest.approx(direct, abs=1e-6)
    assert res.loglik == pytest.approx(-1018.68, abs=2.0)     # near the 15-point value


def test_a_standard_deviation_stuck_at_zero_is_restarted():
    """From the default start the optimizer ends at var(height_s) = 0 (−987.94, a local
    optimum: the likelihood is even in that Cholesky entry at 0); the restart off the boundary
    reaches lme4's singular optimum (corr −1, tests/references/sweep/local_optima), checked with
    the shared checker's tolerances (estimates and log likelihood; SEs are undefined there)."""
    path = (pathlib.Path(__file__).parent / "references" / "sweep" / "local_optima"
            / "glmm_grouseticks_poisson_rs_un_singular_laplace.json")
    case = json.loads(path.read_text())
    case["tolerance"] = {"loglik_abs": 1e-3, "coef_rel": 1e-3, "se_rel": 5e-3, "var_rel": 5e-3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = ml.fit(case["stata"], data=load_data(case["dataset"])).to_dict()
    assert compare(case, got) == []
