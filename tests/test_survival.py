"""``mestreg``: the ``surv`` conformance cases (exact-quadrature references), the fixed-only
models against R ``survival::survreg`` (tests/references/survival), the generalized gamma and
delayed entry / multiple records against R's direct likelihood maximisation
(tests/references/survival/gamma_entry.json), derivatives of every family, PH/AFT equivalence, a
brute-force marginal likelihood, stset, output and bad input."""
from __future__ import annotations

import functools
import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy import special

import multilevel
from multilevel.glmm.glm import fit_glm
from multilevel.spec import SpecError
from multilevel.spec.errors import DataError
from multilevel.survival.families import make_survival_family
from multilevel.survival.stset import parse_stset
from tests.conformance.numbers import params
from tests.conftest import load_cases, load_data

CASES = load_cases("surv")
REFS = pathlib.Path(__file__).parent / "references" / "survival"
SURVREG = json.loads((REFS / "survreg.json").read_text())
GAMMA_ENTRY = json.loads((REFS / "gamma_entry.json").read_text())
R_CASES = GAMMA_ENTRY["cases"]
STSET = "stset time, failure(died)"


@functools.lru_cache(maxsize=None)
def entry_data(view: str) -> pd.DataFrame:
    """The simulated delayed-entry records, or one record per subject (first entry, last exit)."""
    recs = pd.read_csv(REFS / "surv_entry_sim.csv")
    if view == "records":
        return recs
    return recs.groupby("id", as_index=False).agg(cluster=("cluster", "first"), x=("x", "first"), z=("z", "first"),
                                                  enter=("enter", "first"), time=("time", "last"),
                                                  died=("died", "last"))


def r_case_data(case: dict) -> pd.DataFrame:
    if case["dataset"].endswith("surv_entry_sim.csv"):
        return entry_data("subjects" if "subjects" in case["id"] else "records")
    return load_data(case["dataset"])


@functools.lru_cache(maxsize=None)
def fitted(case_id: str) -> dict:
    case = next(c for c in CASES + R_CASES if c["id"] == case_id)
    return multilevel.fit(case["stata"], data=r_case_data(case), stset=case["options"]["stset"]).to_dict()


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", params(CASES) + params(R_CASES))
def test_conformance_number(case_id, label, reference, tolerance, getter):
    """Stata's default fit (7-point mvaghermite) against the exact integral, SCHEMA tolerances."""
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


@pytest.mark.parametrize("case", R_CASES, ids=[c["id"] for c in R_CASES])
def test_converged_integral_matches_r_closely(case):
    """With 30 quadrature points the integral is exact: the optimum agrees to optimizer precision."""
    res = multilevel.fit(case["stata"] + " intpoints(30)", data=r_case_data(case),
                         stset=case["options"]["stset"]).to_dict()
    ref = case["results"]
    assert res["loglik"] == pytest.approx(ref["loglik"], abs=1e-6)
    np.testing.assert_allclose(res["fixed"]["coef"], ref["fixed"]["coef"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(res["fixed"]["se"], ref["fixed"]["se"], rtol=2e-3)
    assert res["random"][0]["cov"][0][0] == pytest.approx(ref["random"][0]["cov"][0][0], rel=1e-4)
    assert res["extra"]["ll_fixed_only"] == pytest.approx(ref["extra"]["ll_fixed_only"], abs=1e-7)
    for name in ("ln_p", "lnsigma", "logs", "kappa"):
        if name in ref["extra"]:
            assert res["extra"][name] == pytest.approx(ref["extra"][name], abs=2e-5)


@pytest.mark.parametrize("case", R_CASES, ids=[c["id"] for c in R_CASES])
def test_fixed_only_model_equals_direct_ml(case):
    """The model without random effects (delayed entry, generalized gamma) against R's direct ML."""
    data, ref = r_case_data(case), case["fixed_only"]
    frame = parse_stset(case["options"]["stset"]).columns(data).dropna(subset=["_t"])
    dist = case["stata"].split("distribution(")[1].split(")")[0]
    family = make_survival_family(dist, frame["_t"].to_numpy(float), case["options"]["metric"] == "aft",
                                  frame["_t0"].to_numpy(float))
    X = np.column_stack([frame[n] for n in ref["fixed"]["names"][:-1]] + [np.ones(len(frame))])
    glm = fit_glm(family, X, frame["_d"].to_numpy(float), np.zeros(len(frame)), ref["fixed"]["names"])
    assert glm.loglik == pytest.approx(ref["loglik"], abs=1e-7)
    np.testing.assert_allclose(glm.beta, ref["fixed"]["coef"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(glm.xi, [ref["extra"][n] for n in family.extra_names], atol=1e-5)


def test_generalized_gamma_survivor_and_density_against_r_pgamma():
    """ln S and ln f of the standardized generalized gamma against R's pgamma(log.p = TRUE): both signs
    of κ, κ near 0 (γ = κ⁻² up to 10⁸) and both tails, including where S underflows."""
    grid = GAMMA_ENTRY["gengamma_grid"]
    kappa, w = np.array(grid["kappa"]), np.array(grid["w"], dtype=float)
    fam = make_survival_family("gamma", np.exp(w), aft=True)
    for k in np.unique(kappa):
        at = kappa == k
        lg, _, _, lsf, _, _ = fam.standard(w[at], [k])
        np.testing.assert_allclose(lsf, np.array(grid["lnS"])[at], rtol=2e-9, atol=2e-9)
        np.testing.assert_allclose(lg - w[at], np.array(grid["lnf"])[at], rtol=1e-11, atol=1e-11)  # ln f = ln g − ln t


def test_generalized_gamma_limits():
    """κ = 1 is the Weibull AFT model with p = 1/σ, κ = 0 the lognormal (record by record)."""
    rng = np.random.default_rng(5)
    t, d, eta = rng.exponential(2.0, 60), (rng.random(60) < 0.6).astype(float), rng.normal(0, 0.5, 60)
    gamma = make_survival_family("gamma", t, aft=True)
    weib = make_survival_family("weibull", t, aft=True).derivs(d, eta, [np.log(1 / 0.7)])
    np.testing.assert_allclose(gamma.derivs(d, eta, [np.log(0.7), 1.0]), weib, rtol=1e-12, atol=1e-12)
    logn = make_survival_family("lognormal", t, aft=True).derivs(d, eta, [0.2])
    np.testing.assert_allclose(gamma.derivs(d, eta, [0.2, 0.0]), logn, rtol=1e-13, atol=1e-13)


@pytest.fixture(scope="module")
def surv():
    return load_data("surv_weibull_sim7.csv")


@pytest.mark.parametrize("dist", ["weibull", "exponential", "lognormal", "loglogistic"])
def test_fixed_only_model_equals_survreg(surv, dist):
    """The model without random effects (mestreg's start and LR comparison) in the AFT metric."""
    ref = SURVREG[dist]
    family = make_survival_family(dist, surv["time"].to_numpy(float), aft=True)
    X = np.column_stack([surv["x"], surv["z"], np.ones(len(surv))])
    glm = fit_glm(family, X, surv["died"].to_numpy(float), np.zeros(len(surv)), ["x", "z", "_cons"])
    assert glm.loglik == pytest.approx(ref["loglik"], abs=1e-7)
    np.testing.assert_allclose(glm.beta, np.roll(ref["coef"], -1), rtol=1e-6, atol=1e-7)
    if family.n_extra:  # survreg's scale is 1/p (Weibull), σ (lognormal), γ (loglogistic)
        log_scale = -glm.xi[0] if dist == "weibull" else glm.xi[0]
        assert log_scale == pytest.approx(ref["log_scale"], abs=1e-6)


@pytest.mark.parametrize("dist,aft,shape", [
    ("weibull", False, ()), ("weibull", True, ()), ("exponential", False, ()), ("exponential", True, ()),
    ("lognormal", True, ()), ("loglogistic", True, ()), ("gamma", True, (0.8,)), ("gamma", True, (-0.6,)),
    ("gamma", True, (0.002,)), ("gamma", True, (-0.004,)), ("gamma", True, (2.5,))])
@pytest.mark.parametrize("delayed", [False, True])
def test_family_derivatives(dist, aft, shape, delayed):
    rng = np.random.default_rng(3)
    t = rng.exponential(2.0, 40)
    d = (rng.random(40) < 0.7).astype(float)
    t0 = np.where(rng.random(40) < 0.5, t * rng.random(40), 0.0) if delayed else None
    fam = make_survival_family(dist, t, aft, t0)
    xi = np.r_[np.full(fam.n_extra - len(shape), 0.3), shape]
    eta = rng.normal(0, 0.7, 40)
    ll, d1, d2 = fam.derivs(d, eta, xi)
    h = 1e-5
    up, dn = fam.derivs(d, eta + h, xi), fam.derivs(d, eta - h, xi)
    np.testing.assert_allclose(d1, (up[0] - dn[0]) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d2, (up[1] - dn[1]) / (2 * h), rtol=1e-6, atol=1e-7)
    # several quadrature nodes per record: η (n, m) with the response as a column
    ll2 = fam.derivs(d[:, None], np.column_stack([eta, eta + 1]), xi)[0]
    np.testing.assert_allclose(ll2[:, 0], ll)


def test_aft_metric_is_the_ph_model_reparametrized(surv):
    """Weibull: β_AFT = −β_PH/p and var_AFT = var_PH/p², the same likelihood."""
    ph = multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=surv, stset=STSET)
    aft = multilevel.fit("mestreg x z || cluster:, distribution(weibull) time", data=surv, stset=STSET)
    p = ph.to_dict()["extra"]["p"]
    assert aft.loglik == pytest.approx(ph.loglik, abs=1e-6)
    np.testing.assert_allclose(aft.fixed.coef, -ph.fixed.coef / p, rtol=1e-4)
    assert aft.equations[0].cov[0, 0] == pytest.approx(ph.equations[0].cov[0, 0] / p ** 2, rel=1e-4)
    assert "Mixed-effects Weibull AFT regression" in str(aft) and "Haz. ratio" not in str(aft)


def _brute_force_loglik(dist, t, d, X, groups, beta, log_scale, var, points=80):
    """Σ_g log ∫ Π_i f(t_i | x_iβ + u) φ(u; 0, var) du by plain Gauss–Hermite (no adaptation)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    u = np.sqrt(var) * nodes
    eta = (X @ beta)[:, None] + u[None, :]
    z = (np.log(t)[:, None] - eta) / np.exp(log_scale)
    s = np.exp(log_scale)
    if dist == "lognormal":
        ll = np.where(d[:, None] > 0, -np.log(s * t)[:, None] - 0.5 * z ** 2 - 0.5 * np.log(2 * np.pi),
                      special.log_ndtr(-z))
    else:
        soft = np.logaddexp(0, z)
        ll = np.where(d[:, None] > 0, z - np.log(s * t)[:, None] - 2 * soft, -soft)
    per_group = np.zeros((groups.max() + 1, points))
    np.add.at(per_group, groups, ll)
    return float(np.sum(special.logsumexp(per_group + np.log(weights / weights.sum()), axis=1)))


@pytest.mark.parametrize("dist", ["lognormal", "loglogistic"])
def test_marginal_likelihood_against_brute_force_quadrature(surv, dist):
    res = multilevel.fit(f"mestreg x z || cluster:, distribution({dist}) intpoints(30)", data=surv, stset=STSET)
    X = np.column_stack([surv["x"], surv["z"], np.ones(len(surv))])
    groups = surv["cluster"].to_numpy() - surv["cluster"].min()
    got = _brute_force_loglik(dist, surv["time"].to_numpy(float), surv["died"].to_numpy(float), X, groups,
                              res.fixed.coef, res.ancillary[0].estimate, res.equations[0].cov[0, 0])
    assert res.loglik == pytest.approx(got, abs=1e-6)


def test_output_header_and_hazard_ratios(surv):
    out = str(multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=surv, stset=STSET))
    assert out.startswith("       Failure _d: died\n Analysis time _t: time\n\nMixed-effects Weibull PH regression")
    assert "          _t |  Haz. ratio" in out and "/ln_p" in out
    assert "LR test vs. Weibull model: chibar2(01) =" in out
    nohr = str(multilevel.fit("mestreg x z || cluster:, distribution(weibull) nohr", data=surv, stset=STSET))
    assert "          _t | Coefficient" in nohr


def test_failure_codes_and_stset_forms(surv):
    coded = surv.assign(status=np.where(surv["died"] > 0, 3, 7))
    a = multilevel.fit("mestreg x z || cluster:, d(exponential)", data=coded, stset="stset time, failure(status==3)")
    b = multilevel.fit("mestreg x z || cluster:, d(exponential)", data=surv, stset="time, f(died)")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)
    assert list(coded.columns) == ["cluster", "id", "x", "z", "time", "died", "status"]  # input untouched


@pytest.mark.parametrize("command,stset,error,match", [
    ("mestreg x z || cluster:, distribution(weibull)", None, SpecError, "stset"),
    ("mestreg x z || cluster:", STSET, SpecError, "distribution"),
    ("mestreg x z || cluster:, distribution(gompertz)", STSET, SpecError, "distribution"),
    ("mestreg x z || cluster:, distribution(lognormal) nohr", STSET, SpecError, "nohr"),
    ("mestreg x z || cluster:, distribution(weibull)", "stset tijd, failure(died)", DataError, "tijd"),
    ("mestreg x z || cluster:, distribution(weibull)", "stset time, failure(died) enter(t0)", SpecError, "enter"),
    ("mestreg x z || cluster:, distribution(weibull)", "stset time, failure(died) origin(time t0)", SpecError,
     "origin"),
    ("mestreg x z || cluster:, distribution(weibull)", "stset time, failure(died) time0(a b)", SpecError, "time0"),
    ("mestreg x z || cluster:, distribution(weibull)", "stset time, failure(died) enter(time t0)", DataError, "t0"),
    ("mestreg x z || cluster:, distribution(gamma) nohr", STSET, SpecError, "nohr"),
    ("mixed x z || cluster:", STSET, SpecError, "stset"),
    # options that would change the estimates but are not implemented: an error, never ignored
    ("mestreg x z [fw=cluster] || cluster:, distribution(weibull)", STSET, SpecError, "weights"),
    ("mestreg x z || cluster:, distribution(weibull) vce(robust)", STSET, SpecError, "vce"),
    ("mestreg x z || cluster:, distribution(weibull) reml", STSET, SpecError, "reml"),
])
def test_bad_input(surv, command, stset, error, match):
    with pytest.raises(error, match=match):
        multilevel.fit(command, data=surv, stset=stset)


def test_stset_entry_times_from_records_and_enter():
    """id(): _t0 is the end of the subject's previous record, moved up to enter(); the same as
    time0(); one record per subject gives the same likelihood when covariates do not vary."""
    recs = entry_data("records")
    by_id = parse_stset("stset time, id(id) failure(died) enter(time enter)").columns(recs)
    np.testing.assert_array_equal(by_id["_t0"], recs["tstart"])
    assert by_id["_t"].notna().all() and list(recs.columns)[-1] == "xt"  # input untouched
    cmd = "mestreg x z || cluster:, distribution(weibull)"
    a = multilevel.fit(cmd, data=recs, stset="stset time, id(id) failure(died) enter(time enter)")
    b = multilevel.fit(cmd, data=recs, stset="stset time, failure(died) time0(tstart)")
    c = multilevel.fit(cmd, data=entry_data("subjects"), stset="stset time, failure(died) enter(time enter)")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9) and a.loglik == pytest.approx(c.loglik, abs=1e-6)
    np.testing.assert_allclose(a.fixed.coef, c.fixed.coef, rtol=1e-5)
    assert a.nobs == len(recs) and c.nobs == len(entry_data("subjects"))


def test_stset_records_after_failure_and_before_entry_are_not_used():
    recs = entry_data("records")
    last = recs.groupby("id").tail(1)
    extra = last[last["died"] == 1].assign(tstart=lambda f: f["time"], time=lambda f: f["time"] + 1.0, died=0)
    more = pd.concat([recs, extra], ignore_index=True).sample(frac=1.0, random_state=1)  # any row order
    st = parse_stset("stset time, id(id) failure(died) enter(time enter)")
    used = st.columns(more)["_t"].notna()
    assert used.sum() == len(recs)
    late = parse_stset("stset time, failure(died) enter(time 3)").columns(recs)
    assert late["_t"].isna().eq(recs["time"] <= 3).all() and (late["_t0"] >= 3).all()


@pytest.mark.parametrize("change,match", [
    (lambda f: f.assign(id=f["id"].astype(float).where(f.index > 0)), "missing"),
    (lambda f: f.assign(time=f["time"].where(f.index != 1, f["time"].iloc[0])), "same time"),
])
def test_stset_bad_records(change, match):
    with pytest.raises(DataError, match=match):
        multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=change(entry_data("records")),
                       stset="stset time, id(id) failure(died)")


def test_laplace_with_delayed_entry_needs_log_concave_records():
    """AFT families with delayed entry: records may have positive curvature, which the Laplace
    approximation here does not allow (clipped); Weibull PH records stay concave."""
    recs, st = entry_data("records"), "stset time, failure(died) time0(tstart)"
    with pytest.raises(SpecError, match="concave"):
        multilevel.fit("mestreg x z || cluster:, distribution(loglogistic) intmethod(laplace)", data=recs, stset=st)
    res = multilevel.fit("mestreg x z || cluster:, distribution(weibull) intmethod(laplace)", data=recs, stset=st)
    assert res.intmethod == "laplace" and np.isfinite(res.loglik)


def test_delayed_entry_header():
    out = str(multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=entry_data("records"),
                             stset="stset time, id(id) failure(died) enter(time enter)"))
    assert out.startswith("        Failure _d: died\n  Analysis time _t: time\n Enter on or after: time enter\n"
                          "       ID variable: id\n\nMixed-effects Weibull PH regression")


def test_no_failures(surv):
    with pytest.raises(DataError, match="no failures"):
        multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=surv.assign(died=0), stset=STSET)


def test_docs_page_runs_and_shows_current_output():
    from tests.docs_pages import run_page, shown_outputs

    ns = run_page("mestreg.md")
    (shown,) = shown_outputs("mestreg.md")
    assert str(ns["res"]) == shown


@pytest.mark.parametrize("dist,aft,xi", [
    ("weibull", False, [0.3]), ("weibull", True, [0.3]), ("exponential", False, []), ("lognormal", True, [-0.2]),
    ("loglogistic", True, [-0.5]), ("gamma", True, [-0.2, 0.7]), ("gamma", True, [-0.1, -0.5]),
    ("gamma", True, [-0.2, 0.002])])
def test_predicted_survival_times_hazard_and_survivor(dist, aft, xi):
    """median: S = ½; mean: ∫₀^∞ S(t) dt; hazard: −d ln S/dt; surv: S(t)/S(t₀) — by quadrature and
    differences of the family's own ln S."""
    from scipy import integrate

    eta = np.array([0.4, -0.3])
    t, t0 = np.array([1.3, 2.2]), np.array([0.0, 0.9])

    def log_s(times, e):
        fam = make_survival_family(dist, np.atleast_1d(times), aft)
        return fam.record(fam.log_t, 0.0, np.atleast_1d(e), xi, 0)[0]

    fam = make_survival_family(dist, t, aft, t0)
    median, mean = fam.predict("median", eta, xi), fam.predict("mean", eta, xi)
    np.testing.assert_allclose(np.exp(log_s(median, eta)), 0.5, rtol=1e-9)
    for i in range(2):
        area = integrate.quad(lambda u: np.exp(log_s(u, eta[i])[0]), 0, np.inf, epsabs=1e-12, epsrel=1e-10)[0]
        assert mean[i] == pytest.approx(area, rel=1e-7)
    h = 1e-6 * t
    slope = -(log_s(t + h, eta) - log_s(t - h, eta)) / (2 * h)
    np.testing.assert_allclose(fam.predict("hazard", eta, xi), slope, rtol=1e-6)
    np.testing.assert_allclose(fam.predict("surv", eta, xi), np.exp(log_s(t, eta) - np.r_[0.0, log_s(t0[1:], eta[1:])]),
                               rtol=1e-12)


def test_predict_after_mestreg(surv):
    res = multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=surv, stset=STSET)
    p = res.to_dict()["extra"]["p"]
    xb = res.predict("xb")
    np.testing.assert_allclose(res.predict("surv", conditional="fixedonly"),
                               np.exp(-surv["time"] ** p * np.exp(xb)), rtol=1e-12)
    np.testing.assert_allclose(res.predict("median"), (np.log(2) * np.exp(-res.predict("eta"))) ** (1 / p),
                               rtol=1e-12)
    assert res.predict("mean", data=surv.head(3)).notna().all()


@pytest.mark.parametrize("kind,options,match", [("mu", {}, "not available after mestreg"),
                                                ("hazard", {"data": True}, "estimation sample"),
                                                ("median", {"marginal": True}, "marginal")])
def test_predict_after_mestreg_bad_requests(surv, kind, options, match):
    res = multilevel.fit("mestreg x z || cluster:, distribution(exponential)", data=surv, stset=STSET)
    with pytest.raises(SpecError, match=match):
        res.predict(kind, **{k: surv if k == "data" else v for k, v in options.items()})
