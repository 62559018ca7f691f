"""``mestreg``: the ``surv`` conformance cases (exact-quadrature references), the fixed-only
models against R ``survival::survreg`` (tests/references/survival), derivatives of every
family, PH/AFT equivalence, a brute-force marginal likelihood, output and bad input."""
from __future__ import annotations

import functools
import json
import pathlib

import numpy as np
import pytest
from scipy import special

import multilevel
from multilevel.glmm.glm import fit_glm
from multilevel.spec import SpecError
from multilevel.spec.errors import DataError
from multilevel.survival.families import make_survival_family
from tests.conformance.numbers import params
from tests.conftest import load_cases, load_data

CASES = load_cases("surv")
SURVREG = json.loads((pathlib.Path(__file__).parent / "references" / "survival" / "survreg.json").read_text())
STSET = "stset time, failure(died)"


@functools.lru_cache(maxsize=None)
def fitted(case_id: str) -> dict:
    case = next(c for c in CASES if c["id"] == case_id)
    return multilevel.fit(case["stata"], data=load_data(case["dataset"]), stset=case["options"]["stset"]).to_dict()


@pytest.mark.parametrize("case_id,label,reference,tolerance,getter", params(CASES))
def test_conformance_number(case_id, label, reference, tolerance, getter):
    got = getter(fitted(case_id))
    assert got == pytest.approx(reference, abs=tolerance), f"{label}: {got} vs reference {reference}"


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


@pytest.mark.parametrize("dist,aft", [("weibull", False), ("weibull", True), ("exponential", False),
                                      ("exponential", True), ("lognormal", True), ("loglogistic", True)])
def test_family_derivatives(dist, aft):
    rng = np.random.default_rng(3)
    t = rng.exponential(2.0, 40)
    d = (rng.random(40) < 0.7).astype(float)
    fam = make_survival_family(dist, t, aft)
    xi = np.full(fam.n_extra, 0.3)
    eta = rng.normal(0, 0.7, 40)
    ll, d1, d2 = fam.derivs(d, eta, xi)
    h = 1e-5
    up, dn = fam.derivs(d, eta + h, xi), fam.derivs(d, eta - h, xi)
    np.testing.assert_allclose(d1, (up[0] - dn[0]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d2, (up[1] - dn[1]) / (2 * h), rtol=1e-6, atol=1e-8)
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
    ("mixed x z || cluster:", STSET, SpecError, "stset"),
])
def test_bad_input(surv, command, stset, error, match):
    with pytest.raises(error, match=match):
        multilevel.fit(command, data=surv, stset=stset)


def test_no_failures(surv):
    with pytest.raises(DataError, match="no failures"):
        multilevel.fit("mestreg x z || cluster:, distribution(weibull)", data=surv.assign(died=0), stset=STSET)


def test_docs_page_runs_and_shows_current_output():
    from tests.docs_pages import run_page, shown_outputs

    ns = run_page("mestreg.md")
    (shown,) = shown_outputs("mestreg.md")
    assert str(ns["res"]) == shown
